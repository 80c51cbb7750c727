"""Engines sharing one drachtio-server find each other in Redis, so one that drains can
hand every new request to the others.

drachtio offers new requests round-robin to every connection that routed their method
(spec §3.1) and cannot tell a draining engine from a healthy one: without this, during
a rolling restart every other new call would get the draining engine's 503. So each
engine records its presence while its drachtio connection is ready, and a draining
engine that sees another one present withdraws its routes (``remove_route``, §3.4):
drachtio then hands every new request to the others, while in-dialog requests and
responses of the draining engine's own dialogs and transactions still reach it (§3.3),
so its calls finish normally. The last engine keeps its routes and answers 503 with
``Retry-After`` (drachtio's own 503 for an unrouted method has none). While draining it
looks again every second: when the others have gone too, it routes again.

Key (README "Redis keys"):

==========================================  ====  ====================================  =====
key                                         type  value                                 TTL
==========================================  ====  ====================================  =====
``drachtio:engines:{server}``               zset  INSTANCE_ID → expiry (ms, Redis time)  6 s
                                                  of each engine connected and routed
==========================================  ====  ====================================  =====

``{server}`` is what the server said about itself at ``authenticate`` (its advertised
and its local SIP host-ports, :func:`server_identity`), not ``DRACHTIO_HOST``: engines
may name the same server differently (an address, a DNS name, a port forward). Expiries
are Redis's clock, not ours (engines may run on hosts whose clocks differ), as in
``engine.lease``.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable
from typing import Protocol, TypeVar

from engine.drachtio.wire import ServerInfo
from engine.errors import EngineError
from engine.lease import LIVE_MEMBERS
from engine.log import get_logger
from engine.store.resp import LuaScript, RespClient

log = get_logger("engine.drachtio.peers")

REFRESH = 2.0  # seconds between presence refreshes
TTL = 3 * REFRESH  # a presence not refreshed for this long (a crashed engine) is gone
DRAIN_CHECK = 1.0  # seconds between looks at the others while draining
_REDIS_TIMEOUT = 2.0

T = TypeVar("T")

# KEYS[1] engines zset; ARGV[1] INSTANCE_ID; ARGV[2] ttl ms. Present until Redis time + ttl.
_ANNOUNCE = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', now)
redis.call('ZADD', KEYS[1], now + tonumber(ARGV[2]), ARGV[1])
redis.call('PEXPIRE', KEYS[1], ARGV[2])
return 1
"""


def _hostports(items: tuple[tuple[str, str, int], ...]) -> str:
    return ",".join(sorted(f"{proto}/{host}:{port}" for proto, host, port in items))


def server_identity(info: ServerInfo) -> str:
    """One server's name, the same for every engine connected to it: its advertised and
    local SIP host-ports (order-free). Containers on different hosts may bind the same
    local address; the advertised (external) one tells them apart, and the reverse."""
    return f"{_hostports(info.hostports)};{_hostports(info.local_hostports)}"


def engines_key(server: str) -> str:
    return f"drachtio:engines:{server}"


class PeerRegistry:
    """This engine's presence among the engines of one drachtio-server (Redis)."""

    def __init__(self, client: RespClient, instance_id: str, ttl: float = TTL):
        self.client = client
        self.instance_id = instance_id
        self._ttl_ms = max(1, int(ttl * 1000))
        self._announce = LuaScript(client, _ANNOUNCE)
        self._present = LuaScript(client, LIVE_MEMBERS)

    async def announce(self, server: str) -> None:
        await self._announce(keys=[engines_key(server)], args=[self.instance_id, self._ttl_ms])

    async def leave(self, server: str) -> None:
        await self.client.execute("ZREM", engines_key(server), self.instance_id)

    async def others(self, server: str) -> list[str]:
        present = await self._present(keys=[engines_key(server)], args=[])
        return [e for e in present if e != self.instance_id]


class RoutedPort(Protocol):
    """What :class:`SharedServerPresence` needs of ``DrachtioSipPort``."""

    @property
    def ready(self) -> bool: ...

    @property
    def server(self) -> ServerInfo | None: ...

    @property
    def routes_withdrawn(self) -> bool: ...

    async def withdraw_routes(self) -> None: ...

    async def restore_routes(self) -> None: ...


class SharedServerPresence:
    """Announces this engine while its connection is ready; on :meth:`drain`, leaves and
    keeps drachtio's new requests away from it while another engine is present."""

    def __init__(self, registry: PeerRegistry, port: RoutedPort, *, refresh: float = REFRESH,
                 drain_check: float = DRAIN_CHECK):
        self.registry = registry
        self.port = port
        self.refresh = refresh
        self.drain_check = drain_check
        self._draining = asyncio.Event()
        self._task: asyncio.Task[None] | None = None
        self._redis_down = False
        self._stopping = False

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name="drachtio presence")

    def drain(self) -> None:
        """Stop announcing; from now on route only while no other engine is present."""
        self._draining.set()

    async def stop(self) -> None:
        self._stopping = True  # the loops end by themselves even if a cancel were lost
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None
        if not self._draining.is_set():  # stopped without a drain (start-up failed)
            await self._leave()

    def _server(self) -> str | None:
        info = self.port.server
        return server_identity(info) if info is not None and self.port.ready else None

    async def _run(self) -> None:
        # asyncio.timeout, not wait_for: Python 3.11's wait_for swallows a cancel that
        # arrives as its inner wait completes — here drain() sets the event and stop()
        # cancels in the same loop iteration when nothing is busy, and the task then ran
        # on for ever and held the daemon's shutdown (seen in the two-engine e2e test)
        while not self._draining.is_set() and not self._stopping:
            server = self._server()
            if server is not None:
                await self._redis(self.registry.announce(server), "announce")
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.refresh):
                    await self._draining.wait()
        if self._stopping:
            return
        await self._leave()
        while not self._stopping:
            try:
                await self._check()
            except Exception:  # a bug here must not end the drain's routing decisions
                log.exception("drachtio drain routing check failed")
            await asyncio.sleep(self.drain_check)

    async def _leave(self) -> None:
        info = self.port.server
        if info is not None:
            await self._redis(self.registry.leave(server_identity(info)), "leave")

    async def _check(self) -> None:
        server = self._server()
        if server is None:  # disconnected: a new connection keeps the withdrawal (client)
            return
        others = await self._redis(self.registry.others(server), "look for other engines")
        withdrawn = self.port.routes_withdrawn
        try:
            if others is None:  # Redis down: keep (or get back) our routes, the safe default
                if withdrawn:
                    await self.port.restore_routes()
                    log.info("drachtio routes restored while draining: Redis is down, other "
                             "engines cannot be seen", others=0)
            elif others and not withdrawn:
                await self.port.withdraw_routes()
                log.info("drachtio routes withdrawn while draining: the other engines take "
                         "new requests", others=len(others))
            elif not others and withdrawn:
                await self.port.restore_routes()
                log.info("drachtio routes restored while draining: no other engine left; new "
                         "requests get 503 with Retry-After", others=0)
        except EngineError as exc:  # the connection dropped: the client keeps the decision
            log.warning("drachtio drain routing not sent; tried again in a second",
                        error=str(exc))

    async def _redis(self, op: Awaitable[T], what: str) -> T | None:
        """``op``'s result, or None when Redis failed (one warning per outage)."""
        try:
            async with asyncio.timeout(_REDIS_TIMEOUT):
                result = await op
        except (EngineError, TimeoutError, OSError) as exc:
            if not self._redis_down:
                self._redis_down = True
                log.warning("drachtio presence: Redis unavailable (while draining, this engine "
                            "keeps its routes)", op=what, error=str(exc))
            return None
        if self._redis_down:
            self._redis_down = False
            log.info("drachtio presence: Redis available again", op=what)
        return result
