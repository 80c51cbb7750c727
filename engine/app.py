"""The composition root and the daemon lifecycle.

Components start in dependency order (configuration, state store, webhooks,
media, machines, SIP, trunk registrations, HTTP API); one ``ready`` line is
logged when everything serves, and systemd is told (``READY=1`` through
``NOTIFY_SOCKET``; ``STOPPING=1`` when draining, ``RELOADING=1`` on reload).
SIGTERM/SIGINT drain: every component refuses new work (new INVITEs get 503),
live work may finish for ``SHUTDOWN_GRACE_SECS``; calls still up are then told to end
(``app.shutdown``: BYE both sides, RTPEngine session and ``call:*`` record removed) and
get up to ``ENDING_SECS`` for it; then components stop in reverse order (trunk
registrations send ``Expires: 0``) and the process exits 0. SIGHUP reloads
configuration and machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import logging
import os
import signal
import sys
import time
from collections.abc import Callable
from typing import Any

from engine.errors import ConfigError, DefinitionError, EngineError
from engine.fdlimit import raise_nofile_limit
from engine.log import configure, get_logger
from engine.sdnotify import monotonic_usec, notify
from engine.settings import Settings, load_settings

log = get_logger("engine.app")

# After the grace period, how long calls told to end (BYE both sides, RTPEngine delete,
# record removed) may take before the components stop regardless: a BYE answered at
# all is answered in milliseconds, and a peer that never answers must not hold the exit.
ENDING_SECS = 5.0


class Component:
    """A part of the daemon with a lifecycle. Subclasses override what they need."""

    name = "component"

    async def start(self) -> None:
        return None

    def refuse_new_work(self) -> None:
        """Draining has begun: answer new work with a refusal (503 for INVITEs)."""
        return None

    def busy(self) -> int:
        """Live work that shutdown should wait for (e.g. calls in progress)."""
        return 0

    def end_remaining_work(self) -> None:
        """The drain's grace period is over: have live work end properly (calls hang up
        both sides and clean up) before the components stop."""
        return None

    async def stop(self) -> None:
        return None

    async def reload(self) -> None:
        """Re-read what this component loads; raise ``EngineError`` (after logging it) to
        report a refused reload — the previous state stays."""
        return None

    def attach(self, app: App) -> None:
        """Told the ``App`` it belongs to (the HTTP API triggers reloads through it)."""
        return None

    def summary(self) -> dict[str, Any]:
        return {}

    def sizes(self) -> dict[str, int]:
        """Counts of the per-call/per-transaction tables it owns (logged on SIGUSR1)."""
        return {}


class GcPauseWatch:
    """Times every garbage collection (``gc.callbacks``): the longest pause so far is in
    the SIGUSR1 ``sizes`` line, and one over ``warn_ms`` is logged at warning - a
    collection stops the event loop, so a long one is a stall every call feels."""

    def __init__(self, warn_ms: float = 100.0):
        self.warn_ms = warn_ms
        self.max_ms = 0.0
        self.collections = 0
        self._started = 0.0

    def __call__(self, phase: str, info: dict[str, int]) -> None:
        if phase == "start":
            self._started = time.perf_counter()
            return
        ms = (time.perf_counter() - self._started) * 1000
        self.collections += 1
        self.max_ms = max(self.max_ms, ms)
        if ms >= self.warn_ms:
            log.warning("long garbage collection", ms=round(ms, 1),
                        generation=info.get("generation"), collected=info.get("collected"))

    def install(self) -> None:
        if self not in gc.callbacks:
            gc.callbacks.append(self)

    def uninstall(self) -> None:
        with contextlib.suppress(ValueError):
            gc.callbacks.remove(self)


class App:
    def __init__(self, settings: Settings, components: list[Component]):
        self.settings = settings
        self.components = components
        self._stop = asyncio.Event()
        self.started: list[Component] = []
        self.draining = False
        self._reloading = asyncio.Lock()
        for component in components:
            component.attach(self)
        self.on_ready: Callable[[], None] | None = None  # e.g. tell the supervisor
        self.gc_watch = GcPauseWatch()

    async def start(self) -> None:
        for component in self.components:
            try:
                await component.start()
            except BaseException:
                await self._stop_started()
                raise
            self.started.append(component)
        summary: dict[str, Any] = {}
        for component in self.components:
            summary.update(component.summary())
        # Everything loaded so far lives for the whole run: keep it out of GC scans, and
        # collect the young generation less often (tens of thousands of short-lived
        # transactions per second would otherwise trigger a collection every few ms).
        gc.freeze()
        gc.set_threshold(50_000, 20, 20)
        self.gc_watch.install()
        log.milestone("ready", **summary)
        notify("READY=1", "STATUS=serving")
        if self.on_ready is not None:
            self.on_ready()

    def log_sizes(self) -> None:
        """One ``sizes`` line: every per-call table, RSS and GC counters (leak checks;
        with no traffic the per-call tables return to their idle sizes)."""
        from engine.sizes import process_sizes

        sizes: dict[str, Any] = process_sizes()
        sizes["gc_max_pause_ms"] = round(self.gc_watch.max_ms, 1)
        for component in self.started:
            try:
                sizes.update(component.sizes())
            except Exception as exc:  # diagnostics must never take the daemon down
                sizes[f"{component.name}_error"] = repr(exc)
        log.info("sizes", **sizes)

    async def _idle_within(self, seconds: float) -> bool:
        """Wait up to ``seconds`` for no component to be busy; True once none is."""
        loop = asyncio.get_running_loop()
        deadline = loop.time() + seconds
        while sum(c.busy() for c in self.started):
            if loop.time() >= deadline:
                return False
            await asyncio.sleep(0.2)
        return True

    async def _stop_started(self) -> None:
        for component in reversed(self.started):
            try:
                await component.stop()
            except Exception as exc:
                log.error("component stop failed", component=component.name, error=repr(exc))
        self.started.clear()

    def request_stop(self) -> None:
        self._stop.set()

    async def reload(self) -> list[Exception]:
        """SIGHUP and ``POST /api/v1/reload``: every component reloads; returns the
        refusals (empty: all reloaded). One reload at a time."""
        async with self._reloading:
            log.info("reloading configuration and machines")
            notify("RELOADING=1", monotonic_usec())
            failures: list[Exception] = []
            for component in self.started:
                try:
                    await component.reload()
                except EngineError as exc:  # the component logged why
                    failures.append(exc)
                except Exception as exc:
                    log.error("reload failed", component=component.name, error=repr(exc))
                    failures.append(exc)
            notify("READY=1", "STATUS=serving")
            return failures

    async def serve(self, install_signals: bool = True) -> None:
        """Start, serve until SIGTERM/SIGINT (or ``request_stop``), then drain and stop."""
        loop = asyncio.get_running_loop()
        if install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: loop.create_task(self.reload()))
            loop.add_signal_handler(signal.SIGUSR1, self.log_sizes)
        # a SIGTERM while a component waits for its dependency (e.g. drachtio) ends the
        # start-up: the components started so far are stopped in reverse order
        starting = asyncio.ensure_future(self.start())
        stopping = asyncio.ensure_future(self._stop.wait())
        await asyncio.wait((starting, stopping), return_when=asyncio.FIRST_COMPLETED)
        if not starting.done():
            starting.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await starting
            log.milestone("stopped")
            return
        stopping.cancel()
        starting.result()
        await self._stop.wait()
        await self.shutdown()

    async def shutdown(self) -> None:
        self.draining = True
        grace = self.settings.shutdown_grace_secs
        log.milestone("draining", grace_secs=grace)
        notify("STOPPING=1")
        for component in self.started:
            component.refuse_new_work()
        if not await self._idle_within(grace):
            log.warning("grace period over; ending remaining work",
                        busy=sum(c.busy() for c in self.started))
            for component in self.started:
                component.end_remaining_work()
            if not await self._idle_within(ENDING_SECS):
                log.warning("work still running after being told to end; stopping anyway",
                            busy=sum(c.busy() for c in self.started), waited=ENDING_SECS)
        await self._stop_started()
        self.gc_watch.uninstall()
        log.milestone("stopped")


ComponentFactory = Callable[[Settings], list[Component]]


def run_daemon(factory: ComponentFactory | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"dragonpbx: {exc}", file=sys.stderr)
        return 2
    configure(settings.loglevel, settings.log_format)
    if settings.worker_index is not None:
        _as_worker(settings.instance_id)
    raise_nofile_limit()  # before any socket: inbound TCP caps are derived from it
    for warning in settings.default_secret_warnings():
        log.warning("default secret in use", detail=warning)
    if factory is None:
        from engine.components import build_components

        factory = build_components

    async def main() -> int:
        try:
            app = App(settings, factory(settings))
            supervisor = os.environ.get("DRAGONPBX_SUPERVISOR_PID", "")
            if settings.worker_index is not None and supervisor == str(os.getppid()):
                # the supervisor counts ready workers (never signal an unrelated parent)
                from engine.supervisor import WORKER_READY_SIGNAL

                app.on_ready = lambda: os.kill(int(supervisor), WORKER_READY_SIGNAL)
            await app.serve()
        except (ConfigError, DefinitionError) as exc:
            log.error("start-up failed", error=str(exc))
            return 2
        except EngineError as exc:
            log.error("start-up failed", error=str(exc))
            return 2
        return 0

    runner: Callable[[Any], int] = asyncio.run
    try:  # ~2x the packet rate of the default loop on this machine kind
        import uvloop

        runner = uvloop.run
    except ImportError:
        pass
    with contextlib.suppress(KeyboardInterrupt):
        return runner(main())
    return 0


def _as_worker(instance_id: str) -> None:
    """A worker of ``engine.supervisor``: every log line names its instance, so the
    workers' interleaved output stays readable."""

    def tag(record: logging.LogRecord) -> bool:
        fields = getattr(record, "fields", None)
        if not fields:
            record.fields = {"instance": instance_id}
        elif "instance" in fields:  # e.g. an RTPEngine instance: keep both
            record.fields = {"engine_instance": instance_id, **fields}
        else:
            record.fields = {"instance": instance_id, **fields}
        return True

    for handler in logging.getLogger().handlers:
        handler.addFilter(tag)
