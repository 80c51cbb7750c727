"""Complete digest registrations per second through the daemon, driven by SIPp.

Each SIPp "call" is REGISTER → 401 → REGISTER with credentials → 200, for a
distinct user from a CSV (so every one is a new Redis binding), against:

* ``static`` — clients with a password in the JSON config;
* ``reghook`` — clients checked by a RegHook on loopback (tools/example_webhooks.py),
  which verifies the digest itself.

For each mode the rate is raised step by step; a step passes when every
registration succeeds over the whole duration (≥ 15 s by default). The
highest passing rate is printed, with the daemon's CPU time per registration
(user+system, from /proc) for every step. SIPp runs on the same 2 cores.

``--api on`` runs the daemon with its HTTP API and metrics (WEBPORT on a free
port) and scrapes ``/metrics`` every second during the runs; ``--api both``
runs off, then on, to measure what metrics cost.

    .venv/bin/python bench/bench_registration.py [--mode static|reghook|both]
        [--rates 500,1000,1500,2000,2500] [--seconds 15] [--api off|on|both]
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
from pathlib import Path

from harness import add_loglevel_argument, run_sipp, services

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


def cpu_seconds(pid: int) -> float:
    """User + system CPU time of ``pid`` so far."""
    fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


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


def bench(mode: str, rates: list[int], seconds: float, loglevel: str,
          api: bool = False) -> int:
    best = 0
    users_file = Path(tempfile.mkdtemp(prefix="bench-users-")) / "users.json"
    users_file.write_text(json.dumps({f"2{i:05d}": f"secret2{i:05d}" for i in range(USERS)}))
    label = f"{mode}/api-{'on' if api else 'off'}"
    with services(config(mode), webhooks=mode == "reghook", loglevel=loglevel,
                  webhook_args=["--users", str(users_file)],
                  env={"WEBPORT": "auto"} if api else None) as svc, \
            (scraping(int(svc["web_port"])) if api else contextlib.nullcontext([0])) as scrapes:
        pid = svc["daemon"].proc.pid
        workdir = svc["workdir"]
        inject = users_csv(workdir, mode)
        # warm-up: connections, caches, JIT-free but allocator-warm
        run_sipp(HERE / "scenarios" / "register_csv.xml", svc["sip"], rate=200, seconds=2,
                 workdir=workdir, keys={"domain": "pbx.bench"}, inject=inject,
                 extra=AUTH)
        for rate in rates:
            cpu0 = cpu_seconds(pid)
            r = run_sipp(HERE / "scenarios" / "register_csv.xml", svc["sip"], rate=rate,
                         seconds=seconds, workdir=workdir, keys={"domain": "pbx.bench"},
                         inject=inject, extra=AUTH)
            # a step passes with no failure and SIPp really offering the rate (a saturated
            # daemon shows as calls completing slower than they are offered)
            passed = (r["failed"] == 0 and r["successful"] == r["created"] > 0
                      and r["achieved"] >= 0.9 * rate)
            cpu_us = (cpu_seconds(pid) - cpu0) / max(1, r["successful"]) * 1e6
            print(f"  {label:15s} {rate:6d}/s for {seconds:g}s: {int(r['successful'])} ok, "
                  f"{int(r['failed'])} failed, {r['achieved']:.0f}/s achieved, "
                  f"daemon CPU {cpu_us:.0f} us/registration "
                  f"{'PASS' if passed else 'FAIL'}", flush=True)
            if not passed:
                break
            best = rate
        if api:
            print(f"  {label}: {scrapes[0]} scrapes of /metrics")
    print(f"{label}: highest rate with 0 failures over {seconds:g}s = {best} registrations/s")
    return best


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("static", "reghook", "both"), default="both")
    ap.add_argument("--rates", default="500,1000,1500,2000,2500,3000")
    ap.add_argument("--seconds", type=float, default=15)
    add_loglevel_argument(ap)
    ap.add_argument("--api", choices=("off", "on", "both"), default="off",
                    help="HTTP API + metrics scraped every second (both: off, then on)")
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    apis = {"off": (False,), "on": (True,), "both": (False, True)}[args.api]
    for mode in (("static", "reghook") if args.mode == "both" else (args.mode,)):
        for api in apis:
            bench(mode, rates, args.seconds, args.loglevel, api)


if __name__ == "__main__":
    main()
