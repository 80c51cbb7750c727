"""Complete digest registrations per second through the daemon, driven by SIPp.

Each SIPp "call" is REGISTER → 401 → REGISTER with credentials → 200, for a
distinct user from a CSV (so every one is a new Redis binding), against:

* ``static`` — clients with a password in the JSON config;
* ``reghook`` — clients checked by a RegHook on loopback (tools/example_webhooks.py),
  which verifies the digest itself.

For each mode the rate is raised step by step; a step passes when every
registration succeeds over the whole duration (≥ 15 s by default). The
highest passing rate is printed with the engine's CPU per registration (all
its processes, from /proc/PID/stat). SIPp runs on the same 2 cores.

``--workers N`` runs the daemon with WORKERS=N (a supervisor and N engine
processes on one SIP port); ``--many-ports`` makes SIPp use one UDP socket per
registration (``-t un``) so the kernel can spread them over the workers — with
a single source port every REGISTER would reach the same worker.
``--sipp N`` splits the offered rate over N SIPp processes (N source ports; cheaper
for SIPp than ``-t un``).

``--api on`` runs the daemon with its HTTP API and metrics (WEBPORT on a free
port) and scrapes ``/metrics`` every second during the runs; ``--api both``
runs off, then on, to measure what metrics cost.

    .venv/bin/python bench/bench_registration.py [--mode static|reghook|both]
        [--rates 500,1000,1500,2000,2500] [--seconds 15] [--loglevel info]
        [--workers N] [--many-ports] [--sipp N] [--api off|on|both]
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import tempfile
import threading
import urllib.request
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from harness import add_loglevel_argument, run_sipp, services, wait_for

HERE = Path(__file__).resolve().parent
USERS = 20000
AUTH = ["-au", "[field0]", "-ap", "[field1]"]


def config(mode: str) -> dict:
    clients = ([{"username": "u*", "password": "pw", "codecs": ["PCMU"],
                 "dialplan": {"*": "http://127.0.0.1:9/call"}}] if mode == "static"
               else [{"username": "2*", "reghook": "http://127.0.0.1:HOOKPORT/reghook"}])
    return {"domains": {"pbx.bench": {"domain_id": 1, "clients": clients, "trunks": []}}}


def users_csv(workdir: Path, mode: str) -> Path:
    path = workdir / f"users-{mode}.csv"
    lines = ["SEQUENTIAL"]
    for i in range(USERS):
        user = f"u{i:05d}" if mode == "static" else f"2{i:05d}"
        lines.append(f"{user};pw" if mode == "static" else f"{user};secret{user}")
    path.write_text("\n".join(lines) + "\n")
    return path


def _family(pid: int) -> list[int]:
    """``pid`` and its children (a supervisor's workers)."""
    try:
        children = Path(f"/proc/{pid}/task/{pid}/children").read_text().split()
    except OSError:
        children = []
    return [pid, *(int(c) for c in children)]


def cpu_seconds(pid: int) -> float:
    """User + system CPU of ``pid`` and its children so far (dead workers are not
    counted: a step's figure assumes none died during it)."""
    return sum(cpu_split(pid))


def cpu_split(pid: int) -> tuple[float, float]:
    """(user, system) CPU seconds of ``pid`` and its children so far."""
    user = system = 0
    for p in _family(pid):
        try:
            fields = Path(f"/proc/{p}/stat").read_text().rsplit(")", 1)[1].split()
        except OSError:
            continue
        user += int(fields[11])
        system += int(fields[12])
    tick = os.sysconf("SC_CLK_TCK")
    return user / tick, system / tick


@contextlib.contextmanager
def scraping(web_port: int) -> Iterator[list[int]]:
    """GET /metrics every second while the block runs (what Prometheus would do)."""
    stop = threading.Event()
    scrapes = [0]

    def run() -> None:
        while not stop.wait(1.0):
            with contextlib.suppress(OSError), urllib.request.urlopen(
                    f"http://127.0.0.1:{web_port}/metrics", timeout=5) as resp:
                resp.read()
                scrapes[0] += 1

    thread = threading.Thread(target=run, daemon=True)
    thread.start()
    try:
        yield scrapes
    finally:
        stop.set()
        thread.join(10)


def run_split(sipps: int, rate: int, **kw: object) -> dict[str, float]:
    """``run_sipp`` over ``sipps`` parallel SIPp processes sharing ``rate``; totals."""
    if sipps == 1:
        return run_sipp(rate=rate, **kw)  # type: ignore[arg-type]
    with ThreadPoolExecutor(sipps) as pool:
        parts = list(pool.map(lambda _i: run_sipp(rate=rate / sipps, **kw),  # type: ignore[arg-type]
                              range(sipps)))
    total = {k: sum(p[k] for p in parts) for k in ("created", "successful", "failed")}
    elapsed = max(p["elapsed"] for p in parts)
    return {**total, "rate": rate, "elapsed": elapsed,
            "achieved": total["successful"] / elapsed if elapsed else 0.0}


def bench(mode: str, rates: list[int], seconds: float, *, loglevel: str = "info",
          workers: int = 1, many_ports: bool = False, sipps: int = 1,
          api: bool = False) -> int:
    best = 0
    env = {"LOGLEVEL": loglevel, "WORKERS": str(workers)}
    if api:
        env["WEBPORT"] = "auto"
    label = f"{mode}/api-{'on' if api else 'off'}"
    ports = ["-t", "un", "-max_socket", "10000"] if many_ports else []
    users_file = Path(tempfile.mkdtemp(prefix="bench-users-")) / "users.json"
    users_file.write_text(json.dumps({f"2{i:05d}": f"secret2{i:05d}" for i in range(USERS)}))
    with services(config(mode), webhooks=mode == "reghook", env=env,
                  webhook_args=["--users", str(users_file)]) as svc, \
            (scraping(int(svc["web_port"])) if api else contextlib.nullcontext([0])) as scrapes:
        workdir = svc["workdir"]
        daemon = svc["daemon"]
        if workers > 1:
            wait_for(lambda: b"workers ready" in daemon.log.read_bytes(), 30, "workers")
        inject = users_csv(workdir, mode)
        # warm-up: connections, caches, JIT-free but allocator-warm
        run_sipp(HERE / "scenarios" / "register_csv.xml", svc["sip"], rate=200, seconds=2,
                 workdir=workdir, keys={"domain": "pbx.bench"}, inject=inject,
                 extra=AUTH + ports)
        for rate in rates:
            user0, sys0 = cpu_split(daemon.proc.pid)
            r = run_split(sipps, rate, scenario=HERE / "scenarios" / "register_csv.xml",
                          target=svc["sip"], seconds=seconds, workdir=workdir,
                          keys={"domain": "pbx.bench"}, inject=inject, extra=AUTH + ports)
            user1, sys1 = cpu_split(daemon.proc.pid)
            cpu = user1 - user0 + sys1 - sys0
            kernel = (sys1 - sys0) / cpu * 100 if cpu else 0.0
            per_reg = cpu / r["successful"] * 1e6 if r["successful"] else 0.0
            # a step passes with no failure and SIPp really offering the rate (a saturated
            # daemon shows as calls completing slower than they are offered)
            passed = (r["failed"] == 0 and r["successful"] == r["created"] > 0
                      and r["achieved"] >= 0.9 * rate)
            print(f"  {label:15s} {rate:6d}/s for {seconds:g}s: {int(r['successful'])} ok, "
                  f"{int(r['failed'])} failed, {r['achieved']:.0f}/s achieved, engine CPU "
                  f"{per_reg:.0f} µs/registration ({kernel:.0f} % in the kernel) "
                  f"{'PASS' if passed else 'FAIL'}", flush=True)
            if not passed:
                break
            best = rate
        if api:
            print(f"  {label}: {scrapes[0]} scrapes of /metrics")
    print(f"{label} (WORKERS={workers}, LOGLEVEL={loglevel}, "
          f"{'a source port per registration' if many_ports else f'{sipps} source port(s)'}"
          f"): highest rate with "
          f"0 failures over {seconds:g}s = {best} registrations/s")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("static", "reghook", "both"), default="both")
    ap.add_argument("--rates", default="500,1000,1500,2000,2500,3000")
    ap.add_argument("--seconds", type=float, default=15)
    add_loglevel_argument(ap)
    ap.add_argument("--api", choices=("off", "on", "both"), default="off",
                    help="HTTP API + metrics scraped every second (both: off, then on)")
    ap.add_argument("--workers", type=int, default=1, help="WORKERS for the daemon")
    ap.add_argument("--many-ports", action="store_true",
                    help="one SIPp UDP socket per registration (-t un)")
    ap.add_argument("--sipp", type=int, default=1, help="SIPp processes sharing the rate")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    apis = {"off": (False,), "on": (True,), "both": (False, True)}[args.api]
    for mode in (("static", "reghook") if args.mode == "both" else (args.mode,)):
        for api in apis:
            bench(mode, rates, args.seconds, loglevel=args.loglevel, workers=args.workers,
                  many_ports=args.many_ports, sipps=args.sipp, api=api)


if __name__ == "__main__":
    main()
