"""REGISTER throughput of the embedded SIP stack, driven by SIPp.

    .venv/bin/python bench/bench_register_embedded.py [--rates 2000,4000,6000,8000,10000]
        [--duration 15] [--transport udp] [--profile] [--profile-rate 4000]

A trivial application (``EmbeddedSipPort`` on uvloop, one handler answering
every REGISTER 200 with the Contact and ``expires=300``) runs in a child
process; SIPp sends REGISTERs from distinct users (``[call_number]``) at each
rate for ``--duration`` seconds. A rate is *sustained* when every call
succeeded (0 failed, 0 timed out), SIPp finished within 10 % (+2 s) of the
planned duration and retransmitted at most ``--max-retrans-pct`` of the
REGISTERs, i.e. the stack kept up. Each rate gets a fresh application; a UDP
transaction lives 32 s after its answer (timer J), so runs longer than that
include the cost of expiring them (steady state). The highest sustained rate is
printed, and for every rate the application's CPU per REGISTER (utime + stime of
its process from /proc/PID/stat over the run, divided by the REGISTERs answered):
the SIP stack's own cost (transport, parse, transaction, response, send) with no
machine, Redis or digest behind it — the floor under the daemon's CPU per
registration, which handles two REGISTERs.

``--profile`` runs one extra pass at ``--profile-rate`` with the application
under cProfile and prints the top functions by own time (cProfile slows the
application down about 2x, so pick a rate it can still carry).

Benchmarks are figures, not tests: nothing here asserts.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import cProfile
import csv
import gc
import os
import pstats
import shutil
import signal
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

from harness import DEFAULT_LOGLEVEL, add_loglevel_argument, cpu_seconds

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

SCENARIO = ROOT / "tests" / "e2e" / "scenarios" / "register_uac.xml"


# --------------------------------------------------------------------------- the application


def serve(port: int, transport: str, profile_out: str | None, loglevel: str) -> None:
    """Child process: answer REGISTER 200 until stdin closes."""
    from engine.log import configure
    from engine.transport import EmbeddedSipPort

    configure(level=loglevel, fmt="json")  # as the daemon logs (README "Logs")
    try:
        import uvloop

        uvloop.install()
        loop_name = "uvloop"
    except ImportError:
        loop_name = "asyncio"

    async def main() -> None:
        sip = EmbeddedSipPort(host="127.0.0.1", port=port, transports=(transport,))

        async def register(req):  # type: ignore[no-untyped-def]
            contact = req.header("contact") or ""
            await req.reply(200, headers=[("Contact", f"{contact};expires=300")])

        sip.on_request("REGISTER", register)
        await sip.start()
        # as the daemon does once started (engine/app.py): keep start-up objects out of
        # GC scans and collect the young generation less often
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        loop = asyncio.get_running_loop()
        done = loop.create_future()
        loop.add_reader(sys.stdin.fileno(), lambda: done.done() or done.set_result(None))
        print(f"ready {sip.port} {loop_name}", flush=True)
        await done
        await sip.close()

    prof = cProfile.Profile() if profile_out else None
    if prof is not None:
        prof.enable()
    asyncio.run(main())
    if prof is not None:
        prof.disable()
        prof.dump_stats(profile_out)


# --------------------------------------------------------------------------- the driver


def free_port() -> int:
    for _ in range(50):
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as u:
            u.bind(("127.0.0.1", 0))
            port = u.getsockname()[1]
        with contextlib.suppress(OSError), socket.socket() as t:
            t.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port")


class App:
    def __init__(self, transport: str, profile_out: str | None = None,
                 loglevel: str = DEFAULT_LOGLEVEL):
        self.port = free_port()
        argv = [sys.executable, __file__, "--serve", str(self.port), "--transport", transport,
                "--loglevel", loglevel]
        if profile_out:
            argv += ["--profile-out", profile_out]
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE,
                                     text=True)
        line = self.proc.stdout.readline() if self.proc.stdout else ""
        if not line.startswith("ready"):
            raise RuntimeError(f"application did not start: {line!r}")
        self.loop_name = line.split()[2]

    def stop(self) -> None:
        if self.proc.stdin:
            self.proc.stdin.close()
        try:
            self.proc.wait(60)
        except subprocess.TimeoutExpired:
            self.proc.send_signal(signal.SIGKILL)
            self.proc.wait()


def run_sipp(port: int, rate: int, duration: float, transport: str) -> dict[str, Any]:
    sipp = shutil.which("sipp")
    if not sipp:
        raise SystemExit("sipp is not installed")
    total = int(rate * duration)
    workdir = Path(tempfile.mkdtemp(prefix="bench-reg-"))
    argv = [sipp, "-sf", str(SCENARIO), f"127.0.0.1:{port}", "-i", "127.0.0.1",
            "-p", str(free_port()), "-cp", str(free_port()), "-nostdin",
            "-t", {"udp": "u1", "tcp": "t1"}[transport],
            "-r", str(rate), "-rp", "1000", "-m", str(total), "-l", str(max(1000, rate * 4)),
            "-buff_size", "4194304", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
            "-trace_stat", "-stf", "stat.csv", "-fd", "1", "-trace_err",
            "-timeout", f"{int(duration * 2 + 30)}s", "-timeout_error"]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=workdir, capture_output=True, text=True, check=False)
    elapsed = time.monotonic() - start
    stats: dict[str, str] = {}
    path = workdir / "stat.csv"
    if path.exists():
        rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
        if len(rows) >= 2:
            stats = dict(zip(rows[0], rows[-1], strict=False))
    if proc.returncode == 0:
        shutil.rmtree(workdir, ignore_errors=True)
    else:
        print(f"  (SIPp output kept in {workdir})")

    def stat(name: str) -> int:
        return int(stats.get(f"{name}(C)", "0") or 0)

    reasons = {k[6:-3]: int(v) for k, v in stats.items()
               if k.startswith("Failed") and k.endswith("(C)") and k != "FailedCall(C)"
               and v.isdigit() and int(v)}
    return {"rc": proc.returncode, "total": total, "ok": stat("SuccessfulCall"),
            "failed": stat("FailedCall"), "retrans": stat("Retransmissions"),
            "elapsed": elapsed, "reasons": reasons}


def sustained(r: dict[str, Any], duration: float, max_retrans_pct: float) -> bool:
    return (r["failed"] == 0 and r["ok"] == r["total"] and r["rc"] == 0
            and r["elapsed"] <= duration * 1.1 + 2
            and r["retrans"] <= r["total"] * max_retrans_pct / 100)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--rates", default="2000,4000,6000,8000,10000",
                    help="comma list of REGISTER/s to try, ascending")
    ap.add_argument("--duration", type=float, default=15.0, help="seconds per rate")
    ap.add_argument("--transport", default="udp", choices=("udp", "tcp"))
    ap.add_argument("--max-retrans-pct", type=float, default=0.1,
                    help="SIPp retransmissions allowed, in %% of calls (a stack that falls "
                         "behind by T1 = 500 ms is not keeping up)")
    ap.add_argument("--profile", action="store_true", help="profile the application once")
    ap.add_argument("--profile-rate", type=int, default=3000)
    ap.add_argument("--profile-duration", type=float, default=10.0)
    ap.add_argument("--serve", type=int, help=argparse.SUPPRESS)
    ap.add_argument("--profile-out", help=argparse.SUPPRESS)
    add_loglevel_argument(ap)
    args = ap.parse_args()
    if args.serve is not None:
        serve(args.serve, args.transport, args.profile_out, args.loglevel)
        return

    rates = [int(r) for r in args.rates.split(",") if r.strip()]
    best = 0
    print(f"{os.cpu_count()} cores, transport {args.transport}, {args.duration:g} s per rate, "
          f"a fresh application per rate (steady state needs > 32 s: timer J)")
    for rate in rates:
        app = App(args.transport, loglevel=args.loglevel)
        try:
            cpu0 = cpu_seconds(app.proc.pid)
            r = run_sipp(app.port, rate, args.duration, args.transport)
            cpu = cpu_seconds(app.proc.pid) - cpu0
        finally:
            app.stop()
        ok = sustained(r, args.duration, args.max_retrans_pct)
        per = f"{cpu / r['ok'] * 1e6:.0f} µs CPU/REGISTER" if r["ok"] else "no REGISTER answered"
        print(f"  {rate:>6}/s on {app.loop_name}: {r['ok']}/{r['total']} ok, {r['failed']} failed, "
              f"{r['retrans']} retransmissions, {r['elapsed']:.1f} s, {per} "
              f"-> {'sustained' if ok else 'NOT sustained'}"
              + (f" {r['reasons']}" if r["reasons"] else ""), flush=True)
        if not ok:
            break
        best = rate
    print(f"highest sustained REGISTER rate: {best}/s")

    if args.profile:
        out = tempfile.mktemp(suffix=".prof")
        app = App(args.transport, profile_out=out, loglevel=args.loglevel)
        try:
            r = run_sipp(app.port, args.profile_rate, args.profile_duration, args.transport)
        finally:
            app.stop()
        print(f"\nprofile at {args.profile_rate}/s for {args.profile_duration:g} s "
              f"({r['ok']}/{r['total']} ok): top functions by own time")
        stats = pstats.Stats(out)
        stats.sort_stats("tottime").print_stats(25)
        stats.sort_stats("cumulative").print_stats(15)
        os.unlink(out)


if __name__ == "__main__":
    main()
