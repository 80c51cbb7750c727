"""``WORKERS=N``: a supervisor process running N engine workers on one SIP port.

Each worker is a fresh ``python -m engine run`` (spawned, not forked: no event
loop, socket or Redis connection is ever inherited) with ``WORKER_INDEX`` set,
which makes its SIP sockets use ``SO_REUSEPORT``; the kernel then spreads
datagrams and TCP connections over the workers by the peer's address. What
the workers must agree on comes through the environment and Redis:

* ``INSTANCE_ID`` — ``<INSTANCE_ID>-w<index>``, the owner name of the worker's
  Redis keys and a field of every log line it writes;
* ``NONCE_SECRET`` — when unset, one random secret generated here for all
  workers, so a challenge issued by one worker is accepted by another;
* ``SIP_PORT`` — ``0`` is resolved here to one free port for all workers;
* ``WEBPORT`` — each worker serves its own HTTP API and metrics: worker *i* on
  ``WEBPORT + i`` (the HTTP port is not shared, so each worker's metrics are
  scraped as their own target and no two workers race for one port).

Before spawning, the supervisor binds SIP_HOST:SIP_PORT (UDP and TCP) *without*
``SO_REUSEPORT``: a port held by anything else — another supervisor's workers
included — fails start-up with exit 2 instead of being shared by accident.

Signals: SIGTERM/SIGINT are forwarded to every worker (each drains), and the
supervisor exits when all have stopped (0 if every worker exited 0); SIGHUP is
forwarded (each worker reloads), and so is SIGUSR1 (each logs its ``sizes``
line). A worker that dies on its own is logged at error with its exit status
and restarted after a backoff (1 s, doubling to 30 s while it keeps dying
within 30 s of its start). ``on_ready`` is the hook
for whoever reports readiness (sd_notify, an HTTP API): it is called once,
when every worker has logged ``ready``.
"""

from __future__ import annotations

import contextlib
import os
import secrets
import signal
import socket
import subprocess
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from engine.errors import ConfigError
from engine.log import configure, get_logger
from engine.settings import Settings, load_settings
from engine.transport.addresses import WILDCARDS, ip_family, strip_brackets

log = get_logger("engine.supervisor")

RESTART_BACKOFF_FIRST = 1.0
RESTART_BACKOFF_CAP = 30.0
STABLE_AFTER = 30.0  # a worker that lived this long restarts without delay next time
# A worker reports that it is ready with this signal (engine/app.py sends it to its
# parent). A real-time signal, because those are queued: two workers ready within one
# turn of the loop are two signals. A standard one (SIGUSR1, as before) is merged while
# pending, and one worker was then never counted, so "workers ready" never came.
WORKER_READY_SIGNAL = signal.SIGRTMIN + 2
HANDLED_SIGNALS = (signal.SIGTERM, signal.SIGINT, signal.SIGHUP, signal.SIGCHLD,
                   signal.SIGUSR1, WORKER_READY_SIGNAL)


@dataclass
class Worker:
    index: int
    instance_id: str
    proc: subprocess.Popen[bytes] | None = None
    started_at: float = 0.0
    restarts: int = 0
    backoff: float = 0.0
    restart_at: float | None = None
    ready: bool = False

    @property
    def pid(self) -> int | None:
        return self.proc.pid if self.proc is not None else None


def check_port_free(host: str, port: int, transports: tuple[str, ...]) -> int:
    """Bind ``host:port`` for each transport without SO_REUSEPORT and release it; returns
    the port (a free one for ``0``). Raises ``ConfigError`` naming what is taken."""
    host = strip_brackets(host)
    family = socket.AF_INET6 if host == "::" else (
        socket.AF_INET if host in WILDCARDS else ip_family(host))
    if family is None:
        raise ConfigError(f"SIP_HOST must be an IP address, not {host!r}")
    bind_host = "0.0.0.0" if host in WILDCARDS and host != "::" else host
    for _attempt in range(1 if port else 20):
        held: list[socket.socket] = []
        try:
            chosen = port
            for transport in transports:
                kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
                sock = socket.socket(family, kind)
                held.append(sock)
                sock.bind((bind_host, chosen))
                chosen = sock.getsockname()[1]
            return chosen
        except OSError as exc:
            if port:
                raise ConfigError(f"SIP port {bind_host}:{port} is in use ({exc.strerror}); "
                                  "workers share a port only among themselves") from None
        finally:
            for sock in held:
                sock.close()
    raise ConfigError("no SIP port free for both UDP and TCP")


class Supervisor:
    def __init__(self, settings: Settings, *, environ: dict[str, str] | None = None,
                 on_ready: Callable[[], None] | None = None):
        self.settings = settings
        self.environ = dict(os.environ if environ is None else environ)
        self.on_ready = on_ready
        self.workers = [Worker(i, f"{settings.instance_id}-w{i}")
                        for i in range(settings.workers)]
        self.stopping = False
        self.failed_start = False
        self._ready_reported = False
        self._shared: dict[str, str] = {}

    # ------------------------------------------------------------------ set-up
    def prepare(self) -> None:
        s = self.settings
        port = check_port_free(s.sip_host, s.sip_port, tuple(s.sip_transports))
        self._shared["SIP_PORT"] = str(port)
        # One secret for every worker: a nonce issued by one verifies on another. Never
        # logged; it lives only in the workers' environment.
        self._shared["NONCE_SECRET"] = s.nonce_secret or secrets.token_hex(32)

    def _env(self, worker: Worker) -> dict[str, str]:
        web = self.settings.webport
        return {**self.environ, **self._shared, "WORKER_INDEX": str(worker.index),
                "INSTANCE_ID": worker.instance_id,
                "WEBPORT": str(web + worker.index if web else 0),
                "DRAGONPBX_SUPERVISOR_PID": str(os.getpid())}

    def spawn(self, worker: Worker) -> None:
        """Start ``worker``; it writes its log lines to our stdout/stderr directly."""
        worker.ready = False
        worker.proc = subprocess.Popen([sys.executable, "-m", "engine", "run"],
                                       env=self._env(worker),
                                       preexec_fn=_in_child)  # noqa: PLW1509 - no threads here
        worker.started_at = time.monotonic()
        worker.restart_at = None
        log.info("worker started", worker=worker.index, pid=worker.pid,
                 instance=worker.instance_id)

    # ------------------------------------------------------------------ signals
    def forward(self, sig: int) -> None:
        for worker in self.workers:
            if worker.proc is not None and worker.proc.poll() is None:
                with contextlib.suppress(ProcessLookupError):
                    worker.proc.send_signal(sig)

    def _on_signal(self, sig: int, pid: int = 0) -> None:
        if sig in (signal.SIGTERM, signal.SIGINT):
            if not self.stopping:
                log.milestone("draining workers", workers=len(self.workers))
            self.stopping = True
            self.forward(signal.SIGTERM)
        elif sig == WORKER_READY_SIGNAL:
            for worker in self.workers:
                if worker.pid == pid:
                    worker.ready = True
        elif sig == signal.SIGUSR1:  # each worker logs its table sizes
            self.forward(signal.SIGUSR1)
        elif sig == signal.SIGHUP:
            log.info("reload forwarded to workers", workers=len(self.workers))
            self.forward(signal.SIGHUP)

    def take_signal(self, timeout: float) -> None:
        """Act on one of the (blocked) signals we handle, waiting up to ``timeout`` s for
        it; SIGCHLD only wakes us (``_reap`` looks at every child)."""
        info = signal.sigtimedwait(HANDLED_SIGNALS, timeout)
        if info is not None and info.si_signo != signal.SIGCHLD:
            self._on_signal(info.si_signo, info.si_pid)

    # ------------------------------------------------------------------ children
    def _reap(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            proc = worker.proc
            if proc is None or proc.poll() is None:
                continue
            if self.stopping:
                continue
            status = proc.returncode
            if status == 2 and not worker.ready:  # start-up failure: restarting won't help
                log.error("worker failed to start; stopping", worker=worker.index,
                          pid=proc.pid, exit_status=status)
                self.failed_start = True
                self._on_signal(signal.SIGTERM)
                continue
            lived = now - worker.started_at
            worker.backoff = 0.0 if lived >= STABLE_AFTER else min(
                RESTART_BACKOFF_CAP, max(RESTART_BACKOFF_FIRST, worker.backoff * 2))
            worker.restart_at = now + worker.backoff
            worker.proc = None
            worker.restarts += 1
            log.error("worker died; restarting", worker=worker.index, pid=proc.pid,
                      exit_status=status, signal=_signal_name(status),
                      lived_secs=round(lived, 1), restart_in=worker.backoff,
                      restarts=worker.restarts)

    def _restart_due(self) -> None:
        now = time.monotonic()
        for worker in self.workers:
            if worker.proc is None and worker.restart_at is not None and now >= worker.restart_at:
                self.spawn(worker)

    def _check_ready(self) -> None:
        if self._ready_reported or not all(w.ready for w in self.workers):
            return
        self._ready_reported = True
        log.milestone("workers ready", workers=len(self.workers),
                      pids=[w.pid for w in self.workers])
        if self.on_ready is not None:
            self.on_ready()

    def all_stopped(self) -> bool:
        return all(w.proc is None or w.proc.poll() is not None for w in self.workers)

    # ------------------------------------------------------------------ main loop
    def run(self) -> int:
        self.prepare()
        signal.pthread_sigmask(signal.SIG_BLOCK, HANDLED_SIGNALS)
        try:
            log.milestone("supervisor starting", workers=len(self.workers),
                          port=int(self._shared["SIP_PORT"]))
            for worker in self.workers:
                self.spawn(worker)
            while not (self.stopping and self.all_stopped()):
                self.take_signal(0.2)
                self._reap()
                if not self.stopping:
                    self._restart_due()
                    self._check_ready()
        finally:
            signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)
        codes = {w.index: w.proc.returncode if w.proc is not None else None
                 for w in self.workers}
        failed = {i: c for i, c in codes.items() if c not in (0, None)}
        log.milestone("workers stopped", exit_status=codes)
        if self.failed_start:
            return 2
        return 1 if failed else 0


def _in_child() -> None:
    """In the child before exec: unblock the signals the supervisor waits for (a blocked
    mask is inherited), and get SIGTERM if the supervisor dies (even by SIGKILL), so no
    orphaned worker keeps the port."""
    import ctypes

    signal.pthread_sigmask(signal.SIG_UNBLOCK, HANDLED_SIGNALS)

    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _signal_name(status: int | None) -> str | None:
    if status is None or status >= 0:
        return None
    with contextlib.suppress(ValueError):
        return signal.Signals(-status).name
    return None


def run_supervisor(settings: Settings | None = None) -> int:
    try:
        settings = settings or load_settings()
    except ConfigError as exc:
        print(f"dragonpbx: {exc}", file=sys.stderr)
        return 2
    configure(settings.loglevel, settings.log_format)
    try:
        return Supervisor(settings).run()
    except ConfigError as exc:
        log.error("start-up failed", error=str(exc))
        return 2
