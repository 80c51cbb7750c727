"""The daemon's components, each wiring one adapter from settings into ``Services``.

Start order (``build_components``) is dependency order: configuration, state
store, webhooks, media, machines, SIP, trunk registrations, HTTP API (when
``WEBPORT`` is not 0; with it the metrics hooks are wired into the SIP core,
the runtime, the webhook client and the RTPEngine client); shutdown runs in
reverse. Every component adds what it owns to the shared ``Services`` object,
which is what actions see as ``ctx.services``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from engine.app import Component
from engine.clock import LoopClock
from engine.drain_events import SHUTDOWN_EVENT
from engine.errors import ConfigError, DefinitionError, MediaError, StoreError
from engine.health import REDIS, RTPENGINE, SIP, Health, Watcher
from engine.log import get_logger
from engine.overload import Overload
from engine.ports import Clock, MediaPort, SipPort, StateStore
from engine.settings import Settings

if TYPE_CHECKING:  # the adapters import much; Services only names their types
    from engine.abuse.guard import AbuseGuard
    from engine.api.metrics import Metrics
    from engine.config.source import ConfigSource
    from engine.dispatch import SipDispatcher
    from engine.drachtio.peers import SharedServerPresence
    from engine.fsm.runtime import Runtime
    from engine.hooks.callhook import CallHook
    from engine.hooks.client import HookClient
    from engine.hooks.reghook import RegHook
    from engine.hooks.statushook import StatusHook
    from engine.hooks.templates import CallTemplates
    from engine.lease import Leases
    from engine.sip.digest import DigestAuthenticator
    from engine.trunks import TrunkRegistrations

log = get_logger("engine.components")


class _Unwired:
    """Stands in for a port until its component wires it (components start in dependency
    order): any use names the port instead of failing later on ``None``."""

    __slots__ = ("_port",)

    def __init__(self, port: str) -> None:
        self._port = port

    def __getattr__(self, name: str) -> Any:
        raise RuntimeError(f"services.{self._port}.{name}: the {self._port} port is not "
                           "wired (its component is not built yet, or not in this process)")

    def __repr__(self) -> str:
        return f"<unwired {self._port}>"


def _unwired(port: str) -> Callable[[], Any]:
    return lambda: _Unwired(port)


@dataclass
class Services:
    """The ports and helpers actions use (``ctx.services``).

    Ports are typed with their Protocols (``engine.ports``) so an action depends on the
    interface, not on an adapter; helpers with one implementation keep their class.
    The optional ones are None while the feature is off (no abuse guard, no trunk
    registrations or leases outside the daemon, no metrics without the HTTP API)."""

    settings: Settings
    clock: Clock = field(default_factory=LoopClock)
    config: ConfigSource = field(default_factory=_unwired("config"))
    store: StateStore = field(default_factory=_unwired("store"))
    digest: DigestAuthenticator = field(default_factory=_unwired("digest"))
    hook_client: HookClient = field(default_factory=_unwired("hook_client"))
    reghook: RegHook = field(default_factory=_unwired("reghook"))
    callhook: CallHook = field(default_factory=_unwired("callhook"))
    statushook: StatusHook = field(default_factory=_unwired("statushook"))
    templates: CallTemplates = field(default_factory=_unwired("templates"))
    media: MediaPort = field(default_factory=_unwired("media"))
    sip: SipPort = field(default_factory=_unwired("sip"))
    runtime: Runtime = field(default_factory=_unwired("runtime"))
    dispatcher: SipDispatcher = field(default_factory=_unwired("dispatcher"))
    trunks: TrunkRegistrations | None = None
    leases: Leases | None = None  # who keeps each trunk registration
    health: Health = field(default_factory=Health)
    abuse: AbuseGuard | None = None
    metrics: Metrics | None = None  # while the HTTP API is on


class ConfigComponent(Component):
    """The configuration data source (json, api or pg)."""

    name = "config"

    def __init__(self, services: Services):
        from engine.config.factory import make_source

        self.source = services.config = make_source(services.settings)

    async def start(self) -> None:
        await self.source.start()

    async def reload(self) -> None:
        try:
            await self.source.reload()
        except ConfigError as exc:
            log.error("configuration reload refused; the previous configuration stays",
                      error=str(exc))
            raise

    async def stop(self) -> None:
        await self.source.close()

    def summary(self) -> dict[str, Any]:
        return {"config": self.source.description, "domains": self.source.list_domains()}


class StoreComponent(Component):
    """Redis (REDIS_URL) and the digest authenticator whose nonce counts live there."""

    name = "store"

    def __init__(self, services: Services):
        from engine.sip.digest import DigestAuthenticator, StoreNonceCounter
        from engine.store.redis import RedisStore

        self.settings = settings = services.settings
        self.store = services.store = RedisStore.from_settings(settings)
        if not settings.nonce_secret:
            log.warning("NONCE_SECRET is not set: digest nonces are only valid on this "
                        "instance (set one shared secret on every instance)")
        services.digest = DigestAuthenticator(
            settings.nonce_secret, ttl=settings.nonce_ttl,
            counter=StoreNonceCounter(self.store))
        self.health = services.health
        from engine.abuse.guard import AbuseGuard

        services.abuse = AbuseGuard.from_settings(settings, self.store, services.config)

    async def start(self) -> None:
        try:
            await self.store.ping()
        except StoreError as exc:
            raise ConfigError(f"REDIS_URL: Redis is not reachable ({exc})") from exc
        self.health.report(REDIS, True)
        s = self.settings
        self.store.watch_health(self.health, interval=s.health_ping_interval,
                                timeout=s.health_ping_timeout)

    async def stop(self) -> None:
        await self.store.close()

    def sizes(self) -> dict[str, int]:
        from engine.sizes import store_sizes

        return store_sizes(self.store)


class HooksComponent(Component):
    """The shared webhook client and the RegHook/CallHook/StatusHook callers."""

    name = "hooks"

    def __init__(self, services: Services):
        from engine.hooks.breaker import Breakers
        from engine.hooks.callhook import CallHook
        from engine.hooks.client import HookClient, safe_url
        from engine.hooks.reghook import RegHook
        from engine.hooks.statushook import StatusHook
        from engine.hooks.templates import CallTemplates

        s = services.settings
        self.client = services.hook_client = HookClient.from_settings(s)
        # one breaker per webhook URL, shared by RegHook and CallHook calls (defect 9)
        breakers = Breakers(threshold=s.hook_breaker_threshold,
                            cooldown=s.hook_breaker_cooldown, display=safe_url)
        services.reghook = RegHook(_timed(services, self.client, "reghook"),
                                   timeout=s.reghook_timeout, breakers=breakers)
        services.callhook = CallHook(_timed(services, self.client, "callhook"),
                                     timeout=s.callhook_timeout, breakers=breakers)
        self.statushook = services.statushook = StatusHook.from_settings(
            _timed(services, self.client, "statushook"), s)
        services.templates = CallTemplates.from_settings(s)

    async def stop(self) -> None:
        await self.statushook.close()
        await self.client.close()

    def sizes(self) -> dict[str, int]:
        from engine.sizes import hooks_sizes

        return hooks_sizes(self.client)


class MediaComponent(Component):
    """RTPEngine (RTPENGINE_HOST) and media files; the default ringtone must exist (D-18)."""

    name = "media"

    def __init__(self, services: Services):
        from engine.media.files import check_default_ringtone
        from engine.media.port import RtpEngineMedia

        self.ringtone = check_default_ringtone(services.settings)
        self.media = services.media = RtpEngineMedia.from_settings(services.settings)
        if services.metrics is not None:
            from engine.api.metrics import TimedNgClient

            self.media.client = TimedNgClient(self.media.client, services.metrics)
        # The client pings its instances itself; this only turns "every instance down"
        # into the rtpengine dependency's state (read-only, so it costs nothing).
        self.watcher = Watcher(services.health, RTPENGINE, self._any_instance_usable,
                               interval=services.settings.health_ping_interval, timeout=1.0)

    async def _any_instance_usable(self) -> None:
        statuses = self.media.statuses()
        if statuses and all(s.state == "down" for s in statuses):
            raise MediaError("every instance down: " + "; ".join(
                f"{s.endpoint} ({s.last_error})" for s in statuses))

    async def start(self) -> None:
        await self.media.start()
        await self.watcher.run_once()
        self.watcher.start()

    async def stop(self) -> None:
        await self.watcher.stop()
        await self.media.close()

    def summary(self) -> dict[str, Any]:
        return {"rtpengine": {s.endpoint: s.state for s in self.media.statuses()}}

    def sizes(self) -> dict[str, int]:
        from engine.sizes import media_sizes

        return media_sizes(self.media)


class MachinesComponent(Component):
    """Loads and validates every machine, and the runtime that runs their instances."""

    name = "machines"

    def __init__(self, services: Services):
        from engine.fsm.loader import MachineLibrary
        from engine.fsm.runtime import Runtime
        from engine.vocabulary import load_vocabulary

        load_vocabulary()

        self.library = MachineLibrary(services.settings.machines_path)
        self.runtime = services.runtime = Runtime(self.library, services, services.clock,
                                                  trace_ignored=False)
        if services.metrics is not None:
            self.runtime.finish_observers.append(services.metrics.instance_finished)

    async def start(self) -> None:
        for warning in self.library.load():
            log.warning("machine warning", finding=str(warning))

    async def reload(self) -> None:
        try:
            self.library.load()
        except DefinitionError as exc:
            log.error("machine reload refused; previous versions stay",
                      findings=[str(d) for d in exc.diagnostics])
            raise

    def busy(self) -> int:
        return sum(1 for i in self.runtime.live.values() if i.machine.name == "inbound_call")

    def end_remaining_work(self) -> None:
        """Post ``app.shutdown`` to every live call whose state handles it;
        machines/inbound_call.yaml decides what ending the call means. A call in
        another state is already ending, or ends at ``stop`` (killed)."""
        for inst in list(self.runtime.live.values()):
            if (inst.machine.name == "inbound_call" and not inst.done
                    and SHUTDOWN_EVENT in inst.machine.handled[inst.state]):
                inst.post(SHUTDOWN_EVENT, {"by": "shutdown"})

    async def stop(self) -> None:
        for inst in list(self.runtime.live.values()):
            inst.kill("shutdown")
        await self.runtime.wait_background()

    def summary(self) -> dict[str, Any]:
        return {"machines": self.library.versions()}

    def sizes(self) -> dict[str, int]:
        from engine.sizes import runtime_sizes

        return runtime_sizes(self.runtime)


class SipComponent(Component):
    """The SIP backend (SIP_BACKEND: embedded, or drachtio) and the dispatcher to machines."""

    name = "sip"

    def __init__(self, services: Services):
        from engine.dispatch import SipDispatcher

        settings = services.settings
        self.health = services.health
        self.backend = settings.sip_backend
        self.presence: SharedServerPresence | None = None
        if self.backend == "drachtio":
            from engine.drachtio.peers import PeerRegistry, SharedServerPresence
            from engine.drachtio.port import DrachtioSipPort

            self.port: Any = DrachtioSipPort.from_settings(settings, on_ready=self._sip_state)
            redis = getattr(services.store, "client", None)
            if redis is not None:  # engines of one drachtio-server see each other in Redis
                self.presence = SharedServerPresence(
                    PeerRegistry(redis, settings.instance_id), self.port)
        else:
            from engine.transport.port import EmbeddedSipPort

            self.port = EmbeddedSipPort.from_settings(settings)
        if services.metrics is not None:  # SIP counters: the embedded endpoint, or drachtio's port
            services.metrics.attach_sip(self.port if self.backend == "drachtio" else self.port.core)
        services.sip = self.port
        self.dispatcher = services.dispatcher = SipDispatcher(services.runtime, self.port,
                                                              health=services.health)
        self.overload = Overload.from_settings(settings, services.health)

    def _sip_state(self, up: bool, reason: str | None) -> None:
        self.health.report(SIP, up, reason)  # drachtio: follows the control connection

    async def start(self) -> None:
        self.dispatcher.install()
        if self.backend == "drachtio":
            # not ready until connected and routed; the client logs one line per failed
            # attempt naming host and port. The sip dependency is down while it waits.
            try:
                if not await self.port.start(timeout=1.0):
                    if not self.port.ready:
                        self.health.report(SIP, False,
                                           f"waiting for drachtio at {self.port.address}")
                    await self.port.start()
            except asyncio.CancelledError:  # SIGTERM during start-up
                await self.port.close()
                raise
            if self.presence is not None:
                self.presence.start()
            return
        await self.port.start()
        self.overload.attach(self.port)
        self.overload.start()
        self.health.report(SIP, True)  # embedded: up while it listens

    def refuse_new_work(self) -> None:
        self.dispatcher.draining = True
        if self.presence is not None:  # drachtio: new requests to the other engines, if any
            self.presence.drain()

    async def stop(self) -> None:
        self.overload.stop()
        if self.presence is not None:
            await self.presence.stop()
        await self.port.close()

    def summary(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "sip": [f"{a.transport}:{a.host}:{a.port}" for a in self.port.local_addresses()]}
        if self.backend == "drachtio":
            out["drachtio"] = self.port.address
        return out

    def sizes(self) -> dict[str, int]:
        from engine.sizes import sip_sizes

        return sip_sizes(self.port)


def build_components(settings: Settings) -> list[Component]:
    """Every component in dependency order, sharing one ``Services``."""
    from engine.trunks import TrunkRegistrations

    gating = (REDIS, SIP, RTPENGINE) if settings.health_require_rtpengine else (REDIS, SIP)
    services = Services(settings, health=Health(gating))
    if settings.webport:
        from engine.api.metrics import Metrics
        from engine.api.server import check_exposure

        check_exposure(settings)  # before anything starts
        services.metrics = Metrics()
    components: list[Component] = [
        ConfigComponent(services),
        StoreComponent(services),
        HooksComponent(services),
        MediaComponent(services),
        MachinesComponent(services),
        SipComponent(services),
        TrunkRegistrations(services),
    ]
    if settings.webport:
        from engine.api.server import ApiComponent

        components.append(ApiComponent(services, services.metrics))
    return components


def _timed(services: Services, client: Any, hook: str) -> Any:
    """The webhook client, timed per hook kind when metrics are on."""
    if services.metrics is None:
        return client
    from engine.api.metrics import TimedHookCaller

    return TimedHookCaller(client, services.metrics, hook)
