"""Soak: mixed registration + call load through the real daemon; is memory flat?

Runs, for ``--minutes`` (default 10), at the same time:

* ``--reg-rate`` complete digest registrations per second (default 100; REGISTER → 401
  → REGISTER with credentials → 200, users cycling through a CSV of static clients);
* ``--call-rate`` client→client calls per second (default 10; INVITE → 401 → INVITE →
  CallHook on loopback → RTPEngine offer → callee (a SIPp UAS) → 200 → ACK → hold
  ``--hold-ms`` (default 2000) → BYE → RTPEngine delete);
* an event-loop lag probe: an OPTIONS to the daemon every 100 ms over UDP; its
  round trip is the time the daemon took to get round to it (on loopback the wire is
  microseconds). Around each probe the event loop's thread's CPU time is read from
  /proc/PID/schedstat, so a slow reply is told apart: the thread *ran* through it (the
  daemon's own stall: a GC pause, a synchronous call) or *waited for a CPU* (the
  machine busy with other processes, which on 2 shared cores happens).

Every ``--interval`` seconds (default 30) it samples the daemon's RSS (VmRSS of
/proc/PID/status), CPU (utime+stime of /proc/PID/stat over the interval), the share
of the interval its main thread waited for a CPU while runnable (``runq %``) and the
worst OPTIONS round trip (``lag max``) and the longest time the loop's thread ran
during one (``busy``), and prints a row. At the end: the daemon's own account (its
SIGUSR1 ``sizes`` line: longest GC pause, per-call tables) and one verdict line -
PASS when RSS after the first minute grows by less than 5 % to the end of the run and
no stall (``busy``) exceeded 100 ms; FAIL otherwise. The worst raw round trip is
printed beside it.

The daemon logs at LOGLEVEL=info as in production. SIPp, Redis, RTPEngine and the
webhook app share the 2 cores with it, so CPU figures are noisy; RSS is the figure.

    .venv/bin/python bench/bench_soak.py [--minutes 10] [--reg-rate 100]
        [--call-rate 10] [--hold-ms 2000] [--interval 30]
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import socket
import subprocess
import tempfile
import threading
import time
import uuid
from dataclasses import dataclass, field
from pathlib import Path

from bench_calls import CALLEE, CALLER, DOMAIN, register, start_callee
from harness import free_port, services, sipp_stats

HERE = Path(__file__).resolve().parent
USERS = 5000
GROWTH_LIMIT = 0.05
STALL_LIMIT_S = 0.100
PROBE_EVERY_S = 0.100
PROBE_TIMEOUT_S = 3.0


def config() -> dict:
    plan = {"????": "http://127.0.0.1:HOOKPORT/callhook"}
    clients = [{"username": "caller", "password": "pw", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan},
               {"username": CALLEE, "password": "pw", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan},
               {"username": "u*", "password": "pw", "codecs": ["PCMU"],
                "dialplan": plan}]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


def rss_kib(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    return 0


def cpu_seconds(pid: int) -> float:
    # fields after the parenthesised command name; utime and stime are the 14th and 15th
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()
    return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")


def schedstat(pid: int) -> tuple[float, float]:
    """(seconds on a CPU, seconds runnable but waiting for one) of the daemon's main
    thread - the event loop's thread - from /proc/PID/schedstat."""
    try:
        fields = Path(f"/proc/{pid}/schedstat").read_text().split()
        return int(fields[0]) / 1e9, int(fields[1]) / 1e9
    except (OSError, IndexError, ValueError):
        return 0.0, 0.0


@dataclass
class LagProbe:
    """OPTIONS every 100 ms. For each it also reads how long the event loop's thread was
    on a CPU during the round trip: a slow reply while the thread ran (``busy``) is the
    daemon's own stall (GC, a synchronous call); one while it waited for a CPU is the
    machine being busy with other processes. Keeps the worst of each since ``take``."""

    target: tuple[str, int]
    pid: int
    worst: float = 0.0
    worst_busy: float = 0.0
    worst_run: float = 0.0
    worst_busy_run: float = 0.0
    sent: int = 0
    lost: int = 0
    samples: list[float] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)
    _stop: threading.Event = field(default_factory=threading.Event)

    def _options(self, port: int, seq: int) -> bytes:
        call_id = uuid.uuid4().hex
        host, dport = self.target
        return (f"OPTIONS sip:{host}:{dport} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{port};branch=z9hG4bK{call_id[:16]}\r\n"
                f"From: <sip:probe@127.0.0.1>;tag={seq}\r\nTo: <sip:{host}:{dport}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: {seq} OPTIONS\r\nMax-Forwards: 70\r\n"
                f"Content-Length: 0\r\n\r\n").encode()

    def run(self) -> None:
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
            sock.bind(("127.0.0.1", 0))
            port = sock.getsockname()[1]
            seq = 0
            while not self._stop.is_set():
                seq += 1
                on_cpu, _ = schedstat(self.pid)
                started = time.monotonic()
                sock.sendto(self._options(port, seq), self.target)
                self.sent += 1
                rtt = self._wait_reply(sock, f"CSeq: {seq} OPTIONS".encode(), started)
                busy = min(rtt, schedstat(self.pid)[0] - on_cpu)
                with self._lock:
                    self.worst = max(self.worst, rtt)
                    self.worst_run = max(self.worst_run, rtt)
                    self.worst_busy = max(self.worst_busy, busy)
                    self.worst_busy_run = max(self.worst_busy_run, busy)
                    self.samples.append(rtt)
                self._stop.wait(max(0.0, PROBE_EVERY_S - (time.monotonic() - started)))

    def _wait_reply(self, sock: socket.socket, cseq: bytes, started: float) -> float:
        deadline = started + PROBE_TIMEOUT_S
        while (left := deadline - time.monotonic()) > 0:
            sock.settimeout(left)
            try:
                data = sock.recv(65535)
            except TimeoutError:
                break
            if cseq in data:
                return time.monotonic() - started
        self.lost += 1
        return PROBE_TIMEOUT_S

    def take(self) -> tuple[float, float]:
        """(worst round trip, worst time the loop's thread ran during one) since the
        last call."""
        with self._lock:
            worst, self.worst = self.worst, 0.0
            busy, self.worst_busy = self.worst_busy, 0.0
        return worst, busy

    def stop(self) -> None:
        self._stop.set()


def start_sipp(scenario: Path, target: str, *, rate: float, total: int, workdir: Path,
               extra: list[str], keys: dict[str, str], limit: int) -> tuple[subprocess.Popen,
                                                                              Path]:
    run_dir = Path(tempfile.mkdtemp(prefix="sipp-", dir=workdir))
    argv = ["sipp", "-sf", str(scenario), target, "-i", "127.0.0.1", "-p",
            str(free_port(socket.SOCK_DGRAM)), "-cp", str(free_port(socket.SOCK_DGRAM)),
            "-r", str(rate), "-rp", "1000", "-m", str(total), "-l", str(limit),
            "-nostdin", "-buff_size", "4194304", "-trace_stat", "-stf", "stat.csv",
            "-fd", "5", "-max_recv_loops", "10000", "-max_sched_loops", "10000",
            "-timeout", f"{int(total / rate) + 120}s"]
    for k, v in keys.items():
        argv += ["-key", k, v]
    argv += extra
    proc = subprocess.Popen(argv, cwd=run_dir, stdout=subprocess.DEVNULL,
                            stderr=subprocess.DEVNULL, start_new_session=True)
    return proc, run_dir


def counts(run_dir: Path) -> tuple[int, int]:
    try:
        stats = sipp_stats(run_dir / "stat.csv")
    except (OSError, IndexError):
        return 0, 0
    return (int(float(stats.get("SuccessfulCall(C)", 0) or 0)),
            int(float(stats.get("FailedCall(C)", 0) or 0)))


def users_csv(workdir: Path) -> Path:
    path = workdir / "users.csv"
    path.write_text("SEQUENTIAL\n" + "".join(f"u{i:05d};pw\n" for i in range(USERS)))
    return path


def soak(minutes: float, reg_rate: int, call_rate: int, hold_ms: int, interval: float,
         env: dict[str, str]) -> bool:
    seconds = minutes * 60
    with services(config(), webhooks=True, rtp_ports=4000,
                  env={"LOGLEVEL": "info", "CALLHOOK_TIMEOUT": "3", **env}) as svc:
        workdir = svc["workdir"]
        pid = svc["daemon"].proc.pid
        uas_port = free_port(socket.SOCK_DGRAM)
        register(svc["sip"], workdir, CALLEE, uas_port)
        register(svc["sip"], workdir, "caller", free_port(socket.SOCK_DGRAM))
        callee = start_callee(workdir, uas_port, 1000)
        host, port = svc["sip"].split(":")
        probe = LagProbe((host, int(port)), pid)
        prober = threading.Thread(target=probe.run, daemon=True)
        prober.start()
        reg, reg_dir = start_sipp(
            HERE / "scenarios" / "register_csv.xml", svc["sip"], rate=reg_rate,
            total=int(reg_rate * seconds), workdir=workdir, limit=max(200, reg_rate * 4),
            keys={"domain": DOMAIN}, extra=["-au", "[field0]", "-ap", "[field1]",
                                            "-inf", str(users_csv(workdir))])
        calls, call_dir = start_sipp(
            HERE / "scenarios" / "uac_call.xml", svc["sip"], rate=call_rate,
            total=int(call_rate * seconds), workdir=workdir,
            limit=max(200, call_rate * (hold_ms // 1000 + 10)),
            keys={"domain": DOMAIN, "caller": "caller"},
            extra=[*CALLER, "-d", str(hold_ms)])
        print(f"soak: {reg_rate} REG/s + {call_rate} calls/s (hold {hold_ms} ms) for "
              f"{minutes:g} min; daemon pid {pid}; env {env or '{}'}", flush=True)
        print(f"{'t(s)':>6} {'RSS MiB':>8} {'CPU %':>6} {'runq %':>6} {'lag max ms':>10} "
              f"{'busy ms':>7} "
              f"{'reg ok':>8} {'reg fail':>8} {'call ok':>8} {'call fail':>9}", flush=True)
        rows: list[tuple[float, int, int]] = []
        started = time.monotonic()
        last_cpu, last_t, last_wait = cpu_seconds(pid), started, schedstat(pid)[1]
        try:
            next_sample = started + interval
            while True:
                finished = reg.poll() is not None and calls.poll() is not None
                overdue = time.monotonic() - started > seconds + 120
                if not (finished or overdue or time.monotonic() >= next_sample):
                    time.sleep(0.5)
                    continue
                next_sample += interval
                now, cpu = time.monotonic(), cpu_seconds(pid)
                rss = rss_kib(pid)
                wait = schedstat(pid)[1]
                cpu_pct = 100 * (cpu - last_cpu) / max(1e-3, now - last_t)
                wait_pct = 100 * (wait - last_wait) / max(1e-3, now - last_t)
                last_cpu, last_t, last_wait = cpu, now, wait
                (rok, rfail), (cok, cfail) = counts(reg_dir), counts(call_dir)
                rows.append((now - started, rss, cok))
                lag, busy = probe.take()
                print(f"{now - started:6.0f} {rss / 1024:8.1f} {cpu_pct:6.1f} {wait_pct:6.1f} "
                      f"{lag * 1000:10.1f} {busy * 1000:7.1f} {rok:8d} {rfail:8d} {cok:8d} "
                      f"{cfail:9d}", flush=True)
                if finished or overdue:
                    break
        finally:
            for proc in (reg, calls):
                if proc.poll() is None:
                    proc.terminate()
                    proc.wait(10)
            probe.stop()
            prober.join(PROBE_TIMEOUT_S + 1)
            callee.terminate()
        # idle: is the memory given back once the load is gone?
        time.sleep(5)
        idle_rss = rss_kib(pid)
        (rok, rfail), (cok, cfail) = counts(reg_dir), counts(call_dir)
        print_daemon_view(svc["daemon"].log, pid)
    return verdict(rows, idle_rss, probe, (rok, rfail, cok, cfail))


def print_daemon_view(log: Path, pid: int) -> None:
    """The daemon's own account (SIGUSR1 ``sizes`` line): its longest GC pause and its
    per-call tables 5 s after the load (transactions still in their 32 s timers)."""
    start = len(log.read_bytes())
    os.kill(pid, signal.SIGUSR1)
    end = time.monotonic() + 5
    while time.monotonic() < end:
        for line in log.read_bytes()[start:].decode(errors="replace").splitlines():
            if '"msg": "sizes"' in line:
                sizes = json.loads(line)
                long_gcs = log.read_text(errors="replace").count("long garbage collection")
                keep = {k: v for k, v in sizes.items()
                        if k not in ("time", "level", "logger", "msg")}
                print(f"daemon: longest GC pause {sizes.get('gc_max_pause_ms')} ms, "
                      f"{long_gcs} GC pauses >= 100 ms logged; sizes {keep}")
                return
        time.sleep(0.1)
    print("daemon: no sizes line after SIGUSR1")


def verdict(rows: list[tuple[float, int, int]], idle_rss: int, probe: LagProbe,
            totals: tuple[int, int, int, int]) -> bool:
    after_minute = [row for row in rows if row[0] >= 60] or rows
    (_, base, base_calls), (_, end, end_calls) = after_minute[0], rows[-1]
    growth = (end - base) / base if base else 0.0
    rok, rfail, cok, cfail = totals
    per_call = (end - base) / max(1, end_calls - base_calls)
    stalls = sorted(probe.samples)
    p99 = stalls[int(len(stalls) * 0.99)] * 1000 if stalls else 0.0
    ok = growth < GROWTH_LIMIT and probe.worst_busy_run <= STALL_LIMIT_S
    print(f"registrations {rok} ok / {rfail} failed; calls {cok} ok / {cfail} failed; "
          f"OPTIONS probes {probe.sent} (lost {probe.lost}), p99 {p99:.1f} ms; "
          f"RSS 5 s after the load {idle_rss / 1024:.1f} MiB; "
          f"~{per_call:.2f} KiB per call after the first minute")
    print(f"verdict: {'PASS' if ok else 'FAIL'} — RSS {base / 1024:.1f} MiB at 1 min → "
          f"{end / 1024:.1f} MiB at end ({growth * 100:+.1f} %, limit +5 %); longest stall "
          f"{probe.worst_busy_run * 1000:.0f} ms (the event loop's thread running through "
          f"one OPTIONS round trip; limit 100 ms); worst round trip "
          f"{probe.worst_run * 1000:.0f} ms (includes waiting for a CPU)", flush=True)
    return ok


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--minutes", type=float, default=10)
    ap.add_argument("--reg-rate", type=int, default=100)
    ap.add_argument("--call-rate", type=int, default=10)
    ap.add_argument("--hold-ms", type=int, default=2000)
    ap.add_argument("--interval", type=float, default=30)
    ap.add_argument("--env", action="append", default=[], metavar="NAME=VALUE",
                    help="extra environment for the daemon (e.g. to compare allocators)")
    args = ap.parse_args()
    env = dict(item.split("=", 1) for item in args.env)
    ok = soak(args.minutes, args.reg_rate, args.call_rate, args.hold_ms, args.interval, env)
    raise SystemExit(0 if ok else 1)


if __name__ == "__main__":
    main()
