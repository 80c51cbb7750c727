"""Webhook client benchmark: aiohttp, httpx and the engine's own HookClient.

Why: RegHook and CallHook calls sit on the SIP hot path (one per REGISTER, one
per call), so the project picks the HTTP client for ``engine/hooks/client.py``
by measurement, not by habit. This script starts a local aiohttp server in a
child process (so the server's CPU is not charged to the client), then drives
it from one client process with each library, sequentially and with 50
concurrent requests, POSTing a realistic RegHook body and reading the JSON
grant. It prints requests/s, p50/p99 latency and — the figure that matters
when the PBX shares its cores with everything else — the client's own CPU
time per request, plus the cost of serialising the payload with ``json.dumps``.
With 50 concurrent requests the server process is usually the bottleneck, so
compare clients by their CPU per request.

Run: ``.venv/bin/python bench/bench_hooks.py [--seconds 3] [--no-uvloop]``.
Figures depend on the machine and its load; say where they were taken.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import multiprocessing as mp
import socket
import sys
import time
from collections.abc import Awaitable, Callable
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

REG_BODY = {
    "source_address": "192.0.2.10", "source_port": 5060, "method": "REGISTER",
    "expires": 3600, "scheme": "digest", "username": "1000", "realm": "pbx.example.com",
    "nonce": "1712345678.abcdef0123456789abcdef", "uri": "sip:pbx.example.com",
    "response": "6629fae49393a05397450978507c4ef1", "algorithm": "MD5", "qop": "auth",
    "nc": "00000001", "cnonce": "0a4f113b",
}
GRANT = (b'{"status":"ok","expires":3600,"dialplan":{"*":"https://hooks.example.com/call"},'
         b'"codecs":["PCMU","PCMA"]}')


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def _serve(port: int, use_uvloop: bool) -> None:
    from aiohttp import web

    async def hook(request: web.Request) -> web.Response:
        await request.read()
        return web.Response(body=GRANT, content_type="application/json")

    app = web.Application()
    app.router.add_post("/hook", hook)
    if use_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            pass
    web.run_app(app, host="127.0.0.1", port=port, print=None, access_log=None,
                handle_signals=True)


def _wait_port(port: int, timeout: float = 10.0) -> None:
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return
        except OSError:
            time.sleep(0.05)
    raise RuntimeError("bench server did not start")


async def _drive(call: Callable[[], Awaitable[None]], concurrency: int, seconds: float
                 ) -> tuple[int, float, list[float], float]:
    """Run ``call`` from ``concurrency`` workers for ``seconds``.

    Returns count, elapsed, latencies and the process CPU seconds used.
    """
    latencies: list[float] = []
    cpu0 = time.process_time()
    stop_at = time.perf_counter() + seconds

    async def worker() -> None:
        while time.perf_counter() < stop_at:
            t0 = time.perf_counter()
            await call()
            latencies.append(time.perf_counter() - t0)

    start = time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return len(latencies), time.perf_counter() - start, latencies, time.process_time() - cpu0


def _pct(sorted_values: list[float], q: float) -> float:
    if not sorted_values:
        return float("nan")
    idx = min(len(sorted_values) - 1, round(q * (len(sorted_values) - 1)))
    return sorted_values[idx]


async def _bench_aiohttp(url: str, concurrency: int, seconds: float) -> Summary:
    import aiohttp

    body = json.dumps(REG_BODY, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "dragonpbx-bench"}
    connector = aiohttp.TCPConnector(limit=1000, limit_per_host=100, keepalive_timeout=4.0)
    async with aiohttp.ClientSession(connector=connector) as session:

        async def call() -> None:
            async with session.post(url, data=body, headers=headers) as resp:
                json.loads(await resp.read())

        await _drive(call, concurrency, min(0.5, seconds))  # warm-up: pool + caches
        return _summarise(*await _drive(call, concurrency, seconds))


async def _bench_httpx(url: str, concurrency: int, seconds: float) -> Summary:
    import httpx

    body = json.dumps(REG_BODY, separators=(",", ":")).encode()
    headers = {"Content-Type": "application/json", "User-Agent": "dragonpbx-bench"}
    limits = httpx.Limits(max_connections=100, max_keepalive_connections=100)
    async with httpx.AsyncClient(limits=limits) as client:

        async def call() -> None:
            resp = await client.post(url, content=body, headers=headers)
            json.loads(resp.content)

        await _drive(call, concurrency, min(0.5, seconds))
        return _summarise(*await _drive(call, concurrency, seconds))


async def _bench_engine(url: str, concurrency: int, seconds: float) -> Summary:
    """The engine's own HookClient (signing on), i.e. what the hot path really costs."""
    from engine.hooks.client import HookClient

    client = HookClient(user_agent="dragonpbx-bench", secret="bench-secret")
    try:
        async def call() -> None:
            await client.post(url, REG_BODY, timeout=5.0)

        await _drive(call, concurrency, min(0.5, seconds))
        return _summarise(*await _drive(call, concurrency, seconds))
    finally:
        await client.close()


Summary = tuple[float, float, float, float]


def _summarise(count: int, elapsed: float, lat: list[float], cpu: float) -> Summary:
    """req/s, p50 ms, p99 ms, client CPU µs per request."""
    lat.sort()
    return (count / elapsed, _pct(lat, 0.50) * 1000, _pct(lat, 0.99) * 1000,
            cpu / max(count, 1) * 1e6)


def _json_cost() -> float:
    n = 20000
    t0 = time.perf_counter()
    for _ in range(n):
        json.dumps(REG_BODY, separators=(",", ":"), ensure_ascii=False).encode()
    return (time.perf_counter() - t0) / n * 1e6


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--seconds", type=float, default=3.0, help="measuring time per case")
    parser.add_argument("--concurrency", type=int, nargs="+", default=[1, 50])
    parser.add_argument("--no-uvloop", action="store_true",
                        help="run the client on the default asyncio loop")
    args = parser.parse_args()

    use_uvloop = not args.no_uvloop
    if use_uvloop:
        try:
            import uvloop

            uvloop.install()
        except ImportError:
            use_uvloop = False

    port = _free_port()
    ctx = mp.get_context("spawn")
    server = ctx.Process(target=_serve, args=(port, True), daemon=True)
    server.start()
    try:
        _wait_port(port)
        url = f"http://127.0.0.1:{port}/hook"
        loop_name = "uvloop" if use_uvloop else "asyncio"
        print(f"client loop: {loop_name}; {args.seconds:g}s per case; server: aiohttp "
              f"(child process); json.dumps of a RegHook body: {_json_cost():.1f} µs")
        print(f"{'client':<22}{'conc':>5}{'req/s':>10}{'p50 ms':>9}{'p99 ms':>9}"
              f"{'CPU µs/req':>12}")
        results: dict[tuple[str, int], Summary] = {}
        cases = (("aiohttp.ClientSession", _bench_aiohttp), ("httpx.AsyncClient", _bench_httpx),
                 ("engine HookClient", _bench_engine))
        for name, bench in cases:
            for conc in args.concurrency:
                results[(name, conc)] = got = asyncio.run(bench(url, conc, args.seconds))
                rate, p50, p99, cpu = got
                print(f"{name:<22}{conc:>5}{rate:>10.0f}{p50:>9.2f}{p99:>9.2f}{cpu:>12.0f}",
                      flush=True)
        top = max(args.concurrency)
        engine = results[("engine HookClient", top)]
        aio = results[("aiohttp.ClientSession", top)]
        print(f"at {top} concurrent: engine HookClient (engine/hooks/http1.py, signing on) "
              f"{engine[0]:.0f} req/s at {engine[3]:.0f} µs CPU/request; "
              f"aiohttp {aio[0]:.0f} req/s at {aio[3]:.0f} µs CPU/request")
    finally:
        server.terminate()
        server.join(5)


if __name__ == "__main__":
    main()
