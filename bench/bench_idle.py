"""Idle CPU of the daemon: no traffic, one trunk registration held to a SIPp registrar.

Starts Redis, RTPEngine and the daemon (at LOGLEVEL=info) with one registering
trunk whose registrar is a SIPp UAS (tests/e2e/scenarios/registrar_loop.xml,
grant ``--grant`` s), waits until the trunk is registered, lets it settle, then
reads the daemon's utime + stime from /proc/PID/stat over ``--seconds`` and
prints it as a percentage of one core. Everything the daemon does on its own
(Redis health PINGs, RTPEngine pings, timers, reconciliations) is in the figure.

    .venv/bin/python bench/bench_idle.py [--seconds 30] [--grant 3600]
"""

from __future__ import annotations

import argparse
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from harness import add_loglevel_argument, cpu_seconds, free_port, services

ROOT = Path(__file__).resolve().parent.parent
REGISTRAR = ROOT / "tests" / "e2e" / "scenarios" / "registrar_loop.xml"


def config(registrar_port: int) -> dict:
    trunk = {"id": 3, "label": "itsp", "authType": "registration",
             "regHost": f"127.0.0.1:{registrar_port}", "regUser": "pbxuser",
             "regPass": "regpass", "dialplan": {"*": "http://127.0.0.1:9/x"}}
    clients = [{"username": "alice", "password": "pw", "dialplan": {"*": "http://127.0.0.1:9/x"}}]
    return {"domains": {"pbx.bench": {"domain_id": 1, "clients": clients, "trunks": [trunk]}}}


def registered(redis_port: int) -> bool:
    with socket.create_connection(("127.0.0.1", redis_port), timeout=2) as s:
        s.sendall(b"KEYS regtrunk:*\r\n")
        return not s.recv(256).startswith(b"*0")


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--seconds", type=float, default=30)
    ap.add_argument("--settle", type=float, default=5,
                    help="seconds between the trunk's registration and the measurement")
    ap.add_argument("--grant", type=int, default=3600,
                    help="registration lifetime the registrar grants (s)")
    add_loglevel_argument(ap)
    args = ap.parse_args()
    port = free_port(socket.SOCK_DGRAM)
    run_dir = Path(tempfile.mkdtemp(prefix="bench-idle-"))
    registrar = subprocess.Popen(
        ["sipp", "-sf", str(REGISTRAR), "-i", "127.0.0.1", "-p", str(port), "-m", "1000",
         "-key", "user", "pbxuser", "-key", "pass", "regpass", "-key", "grant", str(args.grant),
         "-nostdin", "-cp", str(free_port(socket.SOCK_DGRAM)),
         "-timeout", f"{int(args.seconds + args.settle + 120)}s"],
        cwd=run_dir, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        with services(config(port), loglevel=args.loglevel) as svc:
            pid = svc["daemon"].proc.pid
            deadline = time.monotonic() + 30
            while not registered(svc["redis_port"]):
                if time.monotonic() > deadline:
                    raise RuntimeError("the trunk did not register")
                time.sleep(0.2)
            time.sleep(args.settle)
            before, started = cpu_seconds(pid), time.monotonic()
            time.sleep(args.seconds)
            used, elapsed = cpu_seconds(pid) - before, time.monotonic() - started
            print(f"idle ({args.loglevel}, one trunk registration, {elapsed:.0f} s): "
                  f"engine CPU {used:.2f} s = {100 * used / elapsed:.2f} % of a core")
    finally:
        registrar.terminate()
        registrar.wait(10)


if __name__ == "__main__":
    main()
