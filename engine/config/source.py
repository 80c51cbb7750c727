"""The one configuration interface every back-end implements (spec §11.3, D-23).

Lookups are synchronous reads of the current ``ConfigSnapshot`` (the SIP hot
path never awaits configuration). A back-end only knows how to *load* a new
snapshot (``load``) and when to try (``_watch``); this base class owns the
swap: a snapshot replaces the current one only after it validated, an
identical one (same fingerprint) is ignored, and ``on_change`` callbacks run
after each real swap. A failed load is logged and the last good
configuration keeps serving.

Lifecycle::

    source = make_source(settings)          # engine.config.factory
    await source.start()                    # first good config, or ConfigError
    source.on_change(manager.reconcile)     # later swaps
    ... source.get_domain("pbx.example") ...
    await source.reload()                   # SIGHUP
    await source.close()
"""

from __future__ import annotations

import abc
import asyncio
import contextlib
import inspect
from collections.abc import Awaitable, Callable
from typing import Any

from engine.config.matching import IPAddress
from engine.config.model import ConfigSnapshot, Domain, RegHookResult, Trunk
from engine.errors import ConfigError
from engine.log import Logger, get_logger
from engine.settings import Settings

ChangeCallback = Callable[[ConfigSnapshot], Awaitable[None] | None]


class ConfigSource(abc.ABC):
    """Abstract configuration source; see the module docstring for the lifecycle."""

    kind: str = "abstract"

    def __init__(self, settings: Settings, *, precedence: str | None = None):
        self.settings = settings
        self.precedence = precedence or settings.dialplan_precedence
        self._snapshot: ConfigSnapshot | None = None
        self._callbacks: list[ChangeCallback] = []
        self._swap_lock = asyncio.Lock()
        self._task: asyncio.Task[None] | None = None
        # the last load failure (None after a good load): watch loops back off on it and a
        # health endpoint can show it
        self.last_error: ConfigError | None = None
        self.log: Logger = get_logger(f"engine.config.{self.kind}")

    # ------------------------------------------------------------------ what back-ends provide

    @property
    @abc.abstractmethod
    def description(self) -> str:
        """Where the configuration comes from, without credentials (for logs)."""

    @abc.abstractmethod
    async def load(self) -> ConfigSnapshot:
        """Fetch and validate a snapshot without installing it. Raises ``ConfigError``."""

    @abc.abstractmethod
    async def _watch(self) -> None:
        """Run until cancelled, calling ``refresh()`` whenever the config may have changed."""

    async def _initial_load(self) -> ConfigSnapshot:
        """First load for ``start()``; back-ends with a remote peer retry here."""
        return await self.load()

    async def _close_resources(self) -> None:
        """Release clients/connections (after the watch task has stopped)."""

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Load the first valid configuration (or raise ``ConfigError``), then watch it."""
        if self._task is not None:
            return
        snapshot = await self._initial_load()
        self.last_error = None
        await self._install(snapshot)
        self._task = asyncio.create_task(self._watch_forever(), name=f"config-{self.kind}")

    async def close(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            try:
                await task
            except asyncio.CancelledError:
                current = asyncio.current_task()
                if current is not None and current.cancelling():
                    raise  # we are being cancelled ourselves: propagate
        await self._close_resources()

    async def reload(self) -> bool:
        """Load now (SIGHUP). True if a new snapshot was installed, False if unchanged.

        Invalid content raises ``ConfigError`` after logging it; the current
        snapshot stays.
        """
        try:
            snapshot = await self.load()
        except ConfigError as exc:
            self.last_error = exc
            self._log_refused(exc, "reload")
            raise
        self.last_error = None
        return await self._install(snapshot)

    async def refresh(self, reason: str) -> bool:
        """Load and install, logging (not raising) failures: what watch loops call."""
        try:
            snapshot = await self.load()
        except ConfigError as exc:
            self.last_error = exc
            self._log_refused(exc, reason)
            return False
        except Exception as exc:  # a back-end bug must not stop the watch loop
            self.last_error = ConfigError(f"{self.description}: {type(exc).__name__}: {exc}")
            self.log.exception("config load failed", source=self.description, reason=reason,
                               error=str(exc))
            return False
        self.last_error = None
        return await self._install(snapshot)

    async def _watch_forever(self) -> None:
        try:
            await self._watch()
        except asyncio.CancelledError:
            raise
        except Exception:
            self.log.exception("config watcher stopped", source=self.description)

    def _log_refused(self, exc: ConfigError, reason: str) -> None:
        self.log.error("config refused, keeping the last good one", source=self.description,
                       reason=reason, error=str(exc),
                       diagnostics=[str(d) for d in exc.diagnostics[:50]])

    async def _install(self, snapshot: ConfigSnapshot) -> bool:
        async with self._swap_lock:
            old = self._snapshot
            if old is not None and old.fingerprint == snapshot.fingerprint:
                return False
            self._snapshot = snapshot
            self.log.info("config loaded", source=self.description, initial=old is None,
                          **snapshot.counts())
            for warning in snapshot.warnings[:50]:
                self.log.warning("config warning", source=self.description, diagnostic=str(warning))
            if old is not None:
                await self._notify(snapshot)
            return True

    async def _notify(self, snapshot: ConfigSnapshot) -> None:
        for callback in list(self._callbacks):
            try:
                result = callback(snapshot)
                if inspect.isawaitable(result):
                    await result
            except asyncio.CancelledError:
                raise
            except Exception:
                self.log.exception("config change callback failed",
                                   callback=getattr(callback, "__qualname__", repr(callback)))

    def on_change(self, callback: ChangeCallback) -> Callable[[], None]:
        """Call ``callback(new_snapshot)`` after each swap (not for the first load).

        The callback may be sync or async; exceptions are logged. Returns a
        function that unsubscribes.
        """
        self._callbacks.append(callback)

        def unsubscribe() -> None:
            with contextlib.suppress(ValueError):
                self._callbacks.remove(callback)

        return unsubscribe

    # ------------------------------------------------------------------ current snapshot

    @property
    def ready(self) -> bool:
        return self._snapshot is not None

    @property
    def snapshot(self) -> ConfigSnapshot:
        """The current snapshot; ``ConfigError`` before ``start()`` succeeded (D-22)."""
        if self._snapshot is None:
            raise ConfigError(f"configuration from {self.description} is not loaded yet")
        return self._snapshot

    # ------------------------------------------------------------------ spec §11.3 lookups

    def get_domain(self, domain: str | None) -> Domain | None:
        return self.snapshot.get_domain(domain)

    def list_domains(self) -> list[str]:
        return self.snapshot.list_domains()

    def get_reg_hook(self, domain: str | None, user: str | None) -> RegHookResult:
        return self.snapshot.get_reg_hook(domain, user)

    def get_trunk_by_ip(self, domain: str | None, ip: str | IPAddress | None) -> Trunk | None:
        return self.snapshot.get_trunk_by_ip(domain, ip)

    def get_trunk_by_id(self, domain: str | None, trunk_id: Any) -> Trunk | None:
        return self.snapshot.get_trunk_by_id(domain, trunk_id)

    def get_trunk_by_name(self, domain: str | None, name: str | None) -> Trunk | None:
        return self.snapshot.get_trunk_by_name(domain, name)

    def get_auth_trunks(self, domain: str | None) -> tuple[Trunk, ...]:
        return self.snapshot.get_auth_trunks(domain)

    def get_reg_trunks(self, domain: str | None) -> tuple[Trunk, ...]:
        return self.snapshot.get_reg_trunks(domain)


async def sleep_backoff(attempt: int, base: float, cap: float) -> None:
    """Exponential backoff: base, 2·base, 4·base … capped."""
    await asyncio.sleep(min(cap, base * (2 ** max(0, attempt - 1))))


__all__ = ["ChangeCallback", "ConfigSource", "sleep_backoff"]
