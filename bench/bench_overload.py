"""Overload: what callers and a load balancer see when far more registrations are offered
than the daemon can serve (README "Health and faults" → "Overload").

The daemon (LOGLEVEL=info, static-password clients) gets SIPp digest registrations at
``--rate`` per second for ``--seconds`` while an OPTIONS prober asks every 200 ms.
Printed: offered vs answered, the 503 share, p50/p99/max response time of every
request (from its first transmission, so retransmissions count as lateness), the slowest
OPTIONS answer, kernel UDP drops, CPU, and RSS before, at the end of the burst and
after ``--settle`` seconds.

    .venv/bin/python bench/bench_overload.py [--rate 3600] [--seconds 20] [--settle 40]
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from harness import services

from tests.fixtures.overload import (
    OptionsProber,
    cpu_secs,
    overload_config,
    rss_kib,
    run_register_load,
    udp_drops,
)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--rate", type=int, default=3600, help="registrations/s offered")
    ap.add_argument("--seconds", type=float, default=20)
    ap.add_argument("--settle", type=float, default=40,
                    help="seconds after the burst before RSS is read again")
    ap.add_argument("--warmup", type=int, default=300, help="registrations/s for 5 s first")
    args = ap.parse_args()
    env = {"LOGLEVEL": "info"}
    with services(overload_config(), env=env) as svc:
        daemon = svc["daemon"]
        pid = daemon.proc.pid  # type: ignore[attr-defined]
        port = int(str(svc["sip"]).rsplit(":", 1)[1])
        workdir = svc["workdir"]
        run_register_load(str(svc["sip"]), rate=args.warmup, seconds=5,
                          workdir=workdir)  # type: ignore[arg-type]
        time.sleep(2)
        rss_before, drops_before, cpu_before = rss_kib(pid), udp_drops(port), cpu_secs(pid)
        prober = OptionsProber(port).start()
        r = run_register_load(str(svc["sip"]), rate=args.rate, seconds=args.seconds,
                              workdir=workdir)  # type: ignore[arg-type]
        probes = prober.stop()
        rss_end, cpu = rss_kib(pid), cpu_secs(pid) - cpu_before
        drops = udp_drops(port) - drops_before
        time.sleep(args.settle)
        rss_after = rss_kib(pid)
        answered = [p.answered for p in probes if p.answered is not None]
        print(f"offered {args.rate}/s for {args.seconds:g}s: {r.calls} registrations started, "
              f"{r.completed} answered throughout, {r.failed} with an unanswered request")
        total = r.shed + r.registered
        print(f"  200 OK {r.registered}, 503 {r.shed} "
              f"({100 * r.shed / max(1, total + r.calls - r.registered - r.shed):.0f}% of "
              f"registrations shed), {r.registered / args.seconds:.0f} registrations/s served")
        print(f"  response time over {len(r.responses)} requests: "
              f"p50 {r.percentile(50) * 1000:.0f} ms, p99 {r.percentile(99) * 1000:.0f} ms, "
              f"max {max(r.responses, default=0) * 1000:.0f} ms")
        print(f"  OPTIONS: {len(answered)}/{len(probes)} answered, slowest "
              f"{max(answered, default=0) * 1000:.0f} ms, "
              f"503 {sum(p.status == 503 for p in probes)}")
        print(f"  kernel UDP drops {drops}, daemon CPU {cpu:.1f} s over {r.elapsed:.1f} s")
        print(f"  RSS before {rss_before / 1024:.0f} MiB, end of burst {rss_end / 1024:.0f} "
              f"MiB, {args.settle:g} s later {rss_after / 1024:.0f} MiB")
        if daemon.proc.poll() is not None:  # type: ignore[attr-defined]
            print("  DAEMON DIED")


if __name__ == "__main__":
    main()
