"""The composition root and the daemon lifecycle.

Components start in dependency order (configuration, state store, webhooks,
media, machines, SIP, trunk registrations, HTTP API); one ``ready`` line is
logged when everything serves. SIGTERM/SIGINT drain: every component refuses
new work (new INVITEs get 503), live work may finish for
``SHUTDOWN_GRACE_SECS``, then components stop in reverse order (trunk
registrations send ``Expires: 0``) and the process exits 0. SIGHUP reloads
configuration and machines.
"""

from __future__ import annotations

import asyncio
import contextlib
import gc
import signal
import sys
from collections.abc import Callable
from typing import Any

from engine.errors import ConfigError, DefinitionError, EngineError
from engine.fdlimit import raise_nofile_limit
from engine.log import configure, get_logger
from engine.settings import Settings, load_settings

log = get_logger("engine.app")


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

    async def stop(self) -> None:
        return None

    async def reload(self) -> None:
        return None

    def summary(self) -> dict[str, Any]:
        return {}


class App:
    def __init__(self, settings: Settings, components: list[Component]):
        self.settings = settings
        self.components = components
        self._stop = asyncio.Event()
        self._reload_requested = False
        self.started: list[Component] = []
        self.draining = False

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
        log.milestone("ready", **summary)

    async def _stop_started(self) -> None:
        for component in reversed(self.started):
            try:
                await component.stop()
            except Exception as exc:
                log.error("component stop failed", component=component.name, error=repr(exc))
        self.started.clear()

    def request_stop(self) -> None:
        self._stop.set()

    async def reload(self) -> None:
        log.info("reloading configuration and machines")
        for component in self.started:
            try:
                await component.reload()
            except Exception as exc:
                log.error("reload failed", component=component.name, error=repr(exc))

    async def serve(self, install_signals: bool = True) -> None:
        """Start, serve until SIGTERM/SIGINT (or ``request_stop``), then drain and stop."""
        loop = asyncio.get_running_loop()
        if install_signals:
            loop.add_signal_handler(signal.SIGTERM, self.request_stop)
            loop.add_signal_handler(signal.SIGINT, self.request_stop)
            loop.add_signal_handler(signal.SIGHUP,
                                    lambda: loop.create_task(self.reload()))
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
        for component in self.started:
            component.refuse_new_work()
        deadline = asyncio.get_running_loop().time() + grace
        while asyncio.get_running_loop().time() < deadline:
            busy = sum(c.busy() for c in self.started)
            if not busy:
                break
            await asyncio.sleep(0.2)
        else:
            log.warning("grace period over; ending remaining work",
                        busy=sum(c.busy() for c in self.started))
        await self._stop_started()
        log.milestone("stopped")


ComponentFactory = Callable[[Settings], list[Component]]


def run_daemon(factory: ComponentFactory | None = None) -> int:
    try:
        settings = load_settings()
    except ConfigError as exc:
        print(f"dragonpbx: {exc}", file=sys.stderr)
        return 2
    configure(settings.loglevel, settings.log_format)
    raise_nofile_limit()  # before any socket: inbound TCP caps are derived from it
    for warning in settings.default_secret_warnings():
        log.warning("default secret in use", detail=warning)
    if factory is None:
        from engine.components import build_components

        factory = build_components

    async def main() -> int:
        try:
            app = App(settings, factory(settings))
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
