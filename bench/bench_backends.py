"""Registrations per second through each SIP backend (embedded, drachtio), one run.

The backend comparison of ``bench_registration.py`` (which has the workers and
HTTP-API options): complete digest registrations per second through the daemon,
driven by SIPp.

Each SIPp "call" is REGISTER → 401 → REGISTER with credentials → 200, for a
distinct user from a CSV (so every one is a new Redis binding), against:

* ``static`` — clients with a password in the JSON config;
* ``reghook`` — clients checked by a RegHook on loopback (tools/example_webhooks.py),
  which verifies the digest itself.

For each mode the rate is raised step by step; a step passes when every
registration succeeds over the whole duration (≥ 15 s by default). The
highest passing rate is printed. SIPp runs on the same 2 cores.

``--backend`` runs the same steps against the embedded stack, against the daemon behind
the vendored drachtio-server (``SIP_BACKEND=drachtio``; SIPp talks to drachtio's SIP
port), or both one after the other (default), and prints for each step the engine's
CPU time per registration (user+system of the daemon process, from /proc) beside
drachtio-server's, so the backends' costs can be compared from one run.

    .venv/bin/python bench/bench_backends.py [--mode static|reghook|both]
        [--backend embedded|drachtio|both] [--rates 500,1000,1500,2000,2500] [--seconds 15]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path

from harness import (
    add_loglevel_argument,
    backend_env,
    cpu_seconds,
    machine,
    print_backend_comparison,
    run_sipp,
    services,
    sip_target,
)

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


def bench(mode: str, rates: list[int], seconds: float, loglevel: str,
          backend: str = "embedded") -> tuple[int, dict[int, float]]:
    """The highest passing rate, and the engine's CPU ms per registration at each rate."""
    best = 0
    cpu_per_reg: dict[int, float] = {}
    tmp = Path(tempfile.mkdtemp(prefix="bench-users-"))
    users_file = tmp / "users.json"
    users_file.write_text(json.dumps({f"2{i:05d}": f"secret2{i:05d}" for i in range(USERS)}))
    label = f"{mode}/{backend}"
    with backend_env(backend, tmp / "drachtio") as (env, server), \
            services(config(mode), webhooks=mode == "reghook", loglevel=loglevel, env=env,
                     webhook_args=["--users", str(users_file)]) as svc:
        workdir = svc["workdir"]
        target = sip_target(svc, server)
        engine_pid = svc["daemon"].proc.pid
        inject = users_csv(workdir, mode)
        # warm-up: connections, caches, JIT-free but allocator-warm
        run_sipp(HERE / "scenarios" / "register_csv.xml", target, rate=200, seconds=2,
                 workdir=workdir, keys={"domain": "pbx.bench"}, inject=inject,
                 extra=AUTH)
        for rate in rates:
            engine0 = cpu_seconds(engine_pid)
            server0 = cpu_seconds(server.service.proc.pid) if server else 0.0
            r = run_sipp(HERE / "scenarios" / "register_csv.xml", target, rate=rate,
                         seconds=seconds, workdir=workdir, keys={"domain": "pbx.bench"},
                         inject=inject, extra=AUTH)
            ok = max(1.0, r["successful"])
            engine_ms = (cpu_seconds(engine_pid) - engine0) * 1000 / ok
            server_ms = ((cpu_seconds(server.service.proc.pid) - server0) * 1000 / ok
                         if server else 0.0)
            cpu_per_reg[rate] = engine_ms
            # a step passes with no failure and SIPp really offering the rate (a saturated
            # daemon shows as calls completing slower than they are offered)
            passed = (r["failed"] == 0 and r["successful"] == r["created"] > 0
                      and r["achieved"] >= 0.9 * rate)
            drachtio = f", drachtio {server_ms:.3f} ms" if server else ""
            print(f"  {label:17s} {rate:6d}/s for {seconds:g}s: {int(r['successful'])} ok, "
                  f"{int(r['failed'])} failed, {r['achieved']:.0f}/s achieved, engine CPU "
                  f"{engine_ms:.3f} ms/registration{drachtio} "
                  f"{'PASS' if passed else 'FAIL'}", flush=True)
            if not passed:
                break
            best = rate
    print(f"{label}: highest rate with 0 failures over {seconds:g}s = {best} registrations/s",
          flush=True)
    return best, cpu_per_reg


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--mode", choices=("static", "reghook", "both"), default="both")
    ap.add_argument("--backend", choices=("embedded", "drachtio", "both"), default="both")
    ap.add_argument("--rates", default="500,1000,1500,2000,2500,3000")
    ap.add_argument("--seconds", type=float, default=15)
    add_loglevel_argument(ap)
    args = ap.parse_args()
    rates = [int(r) for r in args.rates.split(",")]
    backends = ("embedded", "drachtio") if args.backend == "both" else (args.backend,)
    print(f"machine: {machine()}; LOGLEVEL={args.loglevel}", flush=True)
    for mode in (("static", "reghook") if args.mode == "both" else (args.mode,)):
        results = {b: bench(mode, rates, args.seconds, args.loglevel, b) for b in backends}
        print_backend_comparison(mode, results, "registration", "ms", 3)


if __name__ == "__main__":
    main()
