"""Shared plumbing for the benchmarks: start Redis, RTPEngine, a webhook app and the
daemon on free loopback ports, run SIPp at a given rate, read its statistics."""

from __future__ import annotations

import argparse
import contextlib
import csv
import json
import os
import platform
import signal
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent

# Benchmarks run the daemon at the level operators run it (README "Logs"), so the
# figures include the cost of its log lines; --loglevel measures another level.
LOGLEVELS = ("debug", "info", "warning", "error")
DEFAULT_LOGLEVEL = "info"


def add_loglevel_argument(parser: argparse.ArgumentParser) -> None:
    """``--loglevel`` (default info): the LOGLEVEL the benchmarked daemon runs at."""
    parser.add_argument("--loglevel", choices=LOGLEVELS, default=DEFAULT_LOGLEVEL,
                        help="LOGLEVEL of the daemon under test (default: %(default)s, "
                             "what operators run)")


def free_port(kind: int = socket.SOCK_STREAM) -> int:
    with socket.socket(socket.AF_INET, kind) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def free_sip_port() -> int:
    for _ in range(50):
        port = free_port(socket.SOCK_DGRAM)
        with contextlib.suppress(OSError), socket.socket() as t:
            t.bind(("127.0.0.1", port))
            return port
    raise RuntimeError("no free port")


@dataclass
class Proc:
    name: str
    proc: subprocess.Popen
    log: Path

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(15)
            except subprocess.TimeoutExpired:
                os.killpg(self.proc.pid, signal.SIGKILL)


def spawn(name: str, argv: list[str], workdir: Path, env: dict[str, str] | None = None) -> Proc:
    log = workdir / f"{name}.log"
    with open(log, "wb") as fh:
        proc = subprocess.Popen(argv, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, env=env, cwd=workdir)
    return Proc(name, proc, log)


def wait_for(check, timeout: float, what: str) -> None:  # type: ignore[no-untyped-def]
    end = time.monotonic() + timeout
    while time.monotonic() < end:
        with contextlib.suppress(Exception):
            if check():
                return
        time.sleep(0.05)
    raise RuntimeError(f"{what} did not start")


@contextlib.contextmanager
def services(config: dict, *, env: dict[str, str] | None = None, webhooks: bool = False,
             webhook_args: list[str] | None = None, rtp_ports: int = 2000,
             loglevel: str = DEFAULT_LOGLEVEL) -> Iterator[dict[str, object]]:
    """Redis, RTPEngine, optionally the example webhook app, and the daemon (at
    ``loglevel``; ``env`` may still override any variable)."""
    workdir = Path(tempfile.mkdtemp(prefix="bench-"))
    procs: list[Proc] = []
    try:
        redis_port = free_port()
        procs.append(spawn("redis", ["redis-server", "--bind", "127.0.0.1", "--port",
                                     str(redis_port), "--save", "", "--appendonly", "no"],
                           workdir))
        ng = free_port(socket.SOCK_DGRAM)
        base = 30000
        procs.append(spawn("rtpengine", [
            "rtpengine", "--config-file=none", "--table=-1", "--foreground", "--log-stderr",
            "--log-level=3", "--interface=127.0.0.1", f"--listen-ng=127.0.0.1:{ng}",
            f"--port-min={base}", f"--port-max={base + rtp_ports - 1}", "--delete-delay=0",
            "--timeout=600"], workdir))
        hook_port = None
        if webhooks:
            hook_port = free_port()
            procs.append(spawn("webhooks", [sys.executable, str(ROOT / "tools" /
                                                                "example_webhooks.py"),
                                            "--port", str(hook_port),
                                            *(webhook_args or [])], workdir))
            wait_for(lambda: socket.create_connection(("127.0.0.1", hook_port), 0.2),
                     10, "webhooks")
        text = json.dumps(config).replace("HOOKPORT", str(hook_port or 0))
        (workdir / "config.json").write_text(text)
        for _ in range(3):  # a free port may be taken by another process meanwhile
            sip_port = free_sip_port()
            daemon_env = {**os.environ, "DATA_SOURCE": "json",
                          "CONFIG_FILE": str(workdir / "config.json"),
                          "REDIS_URL": f"redis://127.0.0.1:{redis_port}/0",
                          "RTPENGINE_HOST": f"127.0.0.1:{ng}", "SIP_HOST": "127.0.0.1",
                          "SIP_PORT": str(sip_port), "LOGLEVEL": loglevel,
                          "NONCE_SECRET": "bench", "FILE_PATH": str(workdir),
                          # the HTTP API is off unless a bench asks (WEBPORT=auto: a free
                          # port); benches run beside other daemons, so never the default
                          "WEBPORT": "0", **(env or {})}
            if daemon_env["WEBPORT"] == "auto":
                daemon_env["WEBPORT"] = str(free_port())
            # BENCH_CPROFILE=path: the daemon runs under cProfile and writes its stats there
            # when it exits (py-spy cannot read every interpreter build)
            profile = os.environ.get("BENCH_CPROFILE")
            argv = [sys.executable, *(["-m", "cProfile", "-o", profile] if profile else []),
                    "-m", "engine", "run"]
            daemon = spawn("pbx", argv, workdir, daemon_env)
            procs.append(daemon)
            wait_for(lambda d=daemon: b'"ready"' in d.log.read_bytes()
                     or d.proc.poll() is not None, 30, "daemon")
            if daemon.proc.poll() is None or b"already in use" not in daemon.log.read_bytes():
                break
        if daemon.proc.poll() is not None:
            raise RuntimeError(daemon.log.read_text()[-3000:])
        yield {"workdir": workdir, "sip": f"127.0.0.1:{sip_port}", "daemon": daemon,
               "redis_port": redis_port, "ng": ng,
               "web_port": int(daemon_env["WEBPORT"])}
    finally:
        for p in reversed(procs):
            p.stop()


@contextlib.contextmanager
def backend_env(backend: str, workdir: Path) -> Iterator[tuple[dict[str, str], Any]]:
    """The daemon's environment for SIP ``backend`` (embedded or drachtio), and the
    vendored drachtio-server started for it on free loopback ports (None for embedded).
    With drachtio, SIPp talks to ``server.sip_port``; the daemon's own SIP port is unused."""
    if backend == "embedded":
        yield {}, None
        return
    if str(ROOT) not in sys.path:
        sys.path.insert(0, str(ROOT))  # tests.fixtures.drachtio starts drachtio-server
    from tests.fixtures.drachtio import launch_drachtio

    server = launch_drachtio(workdir, "drachtio-bench")
    try:
        yield {"SIP_BACKEND": "drachtio", "DRACHTIO_HOST": server.host,
               "DRACHTIO_PORT": str(server.admin_port), "DRACHTIO_SECRET": server.secret}, \
            server
    finally:
        server.kill()


def sip_target(svc: dict[str, Any], server: Any) -> str:
    """Where SIPp sends: the daemon's SIP address, or the drachtio-server's."""
    return str(svc["sip"]) if server is None else f"{server.host}:{server.sip_port}"


def machine() -> str:
    """The CPU model and core count, printed beside every figure."""
    model = next((line.split(":", 1)[1].strip()
                  for line in Path("/proc/cpuinfo").read_text().splitlines()
                  if line.startswith("model name")), platform.processor() or "?")
    return f"{model}, {os.cpu_count()} cores"


def print_backend_comparison(label: str, results: dict[str, tuple[int, dict[int, float]]],
                             what: str, unit: str, digits: int) -> None:
    """For a run on both backends (``results[backend] = (best rate, CPU per operation by
    rate)``): the best rates and, at each rate both ran, the engine's CPU per ``what``."""
    if len(results) != 2:
        return
    (best_e, cpu_e), (best_d, cpu_d) = results["embedded"], results["drachtio"]
    print(f"{label}: embedded {best_e}/s, drachtio {best_d}/s")
    for rate in sorted(set(cpu_e) & set(cpu_d)):
        ratio = cpu_d[rate] / cpu_e[rate] if cpu_e[rate] else float("nan")
        print(f"  at {rate}/s engine CPU per {what}: embedded {cpu_e[rate]:.{digits}f} {unit}, "
              f"drachtio {cpu_d[rate]:.{digits}f} {unit} ({ratio:.2f}x)")


CLOCK_TICKS = os.sysconf("SC_CLK_TCK")


def cpu_times(pid: int) -> tuple[float, float]:
    """(utime, stime) of process ``pid`` so far, from /proc/PID/stat (seconds)."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    fields = stat[stat.rindex(")") + 2:].split()  # after "pid (comm) "; comm may hold spaces
    return int(fields[11]) / CLOCK_TICKS, int(fields[12]) / CLOCK_TICKS  # stat(5) 14, 15


def cpu_seconds(pid: int) -> float:
    """utime + stime of process ``pid`` so far (seconds). CPU per operation from this
    holds on a shared machine, where wall-clock rates do not."""
    return sum(cpu_times(pid))


@contextlib.contextmanager
def _profiled(pid: int | None) -> Iterator[None]:
    """With BENCH_PYSPY=path.txt in the environment, samples ``pid`` with py-spy
    (``pip install py-spy``) while it holds the GIL (CPU in Python, not waits in the
    event loop) while the block runs, and writes its collapsed stacks
    (one "frame;frame;... count" line each) to that path, one file per step."""
    out = os.environ.get("BENCH_PYSPY")
    if not out or not pid:
        yield
        return
    path = Path(out)
    step = 0
    while (target := path.with_name(f"{path.stem}-{step}{path.suffix}")).exists():
        step += 1
    spy = subprocess.Popen([str(Path(sys.executable).with_name("py-spy")), "record",
                            "--pid", str(pid), "--format", "raw", "--rate", "200",
                            "--nonblocking", "--gil", "-o", str(target)],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        yield
    finally:
        spy.send_signal(signal.SIGINT)
        spy.wait(30)


def sipp_stats(path: Path) -> dict[str, str]:
    rows = list(csv.reader(path.read_text(errors="replace").splitlines(), delimiter=";"))
    return dict(zip(rows[0], rows[-1], strict=False)) if len(rows) > 1 else {}


def run_sipp(scenario: Path, target: str, *, rate: float, seconds: float, workdir: Path,
             extra: list[str] | None = None, keys: dict[str, str] | None = None,
             inject: Path | None = None, cpu_pid: int | None = None) -> dict[str, float]:
    """Run SIPp at ``rate`` calls/s for ``seconds``; returns created/successful/failed,
    the achieved rate and, with ``cpu_pid``, that process's CPU over the run (``cpu_s``)
    and per successful call (``cpu_us_per_op``, µs)."""
    run_dir = Path(tempfile.mkdtemp(prefix="sipp-", dir=workdir))
    total = int(rate * seconds)
    argv = ["sipp", "-sf", str(scenario), target, "-i", "127.0.0.1", "-p",
            str(free_port(socket.SOCK_DGRAM)), "-cp", str(free_port(socket.SOCK_DGRAM)),
            "-r", str(int(rate)), "-rp", "1000", "-m", str(total), "-l", str(max(200, total)),
            "-nostdin", "-buff_size", "4194304", "-trace_stat", "-trace_err", "-stf", "stat.csv",
            "-fd", "1", "-timeout", f"{int(seconds * 3 + 30)}s", "-max_recv_loops", "10000",
            "-max_sched_loops", "10000"]
    for k, v in (keys or {}).items():
        argv += ["-key", k, v]
    if inject is not None:
        argv += ["-inf", str(inject)]
    argv += extra or []
    user0, sys0 = cpu_times(cpu_pid) if cpu_pid else (0.0, 0.0)
    started = time.monotonic()
    with _profiled(cpu_pid):
        subprocess.run(argv, cwd=run_dir, capture_output=True, check=False,
                       timeout=seconds * 3 + 60)
    elapsed = time.monotonic() - started
    if cpu_pid:
        time.sleep(0.5)  # the last transactions' and RTPEngine deletes' work lands
    user1, sys1 = cpu_times(cpu_pid) if cpu_pid else (0.0, 0.0)
    cpu_s, sys_s = user1 - user0 + sys1 - sys0, sys1 - sys0
    stats = sipp_stats(run_dir / "stat.csv")
    ok = float(stats.get("SuccessfulCall(C)", 0) or 0)
    failed = float(stats.get("FailedCall(C)", 0) or 0)
    return {"rate": rate, "created": float(stats.get("OutgoingCall(C)", 0) or 0),
            "successful": ok, "failed": failed, "elapsed": elapsed,
            "achieved": ok / elapsed if elapsed else 0.0, "cpu_s": cpu_s,
            "cpu_us_per_op": cpu_s * 1e6 / ok if ok else 0.0,
            "sys_share": sys_s / cpu_s if cpu_s else 0.0}
