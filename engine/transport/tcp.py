"""TCP listener and connections of the embedded SIP stack (RFC 3261 §18, RFC 5626 §4.4).

Every connection, accepted or opened by us, is a *flow*: an opaque id string
(``tcp-<n>``) the transaction user can keep (a registration's binding) and
hand back to send over the same connection. Sending picks, in order: the
given flow if still open, any open connection to the destination address,
else a new connection (messages queued until it is up; a failure is reported
per transaction so the core can answer 503/raise a transport failure).

Input is framed by one :class:`~engine.sip.framer.StreamFramer` per connection
(Content-Length, CRLF keep-alives); a fatal framing error closes the
connection after the 400 is written.

Abuse bounds (:class:`~engine.transport.tcp_limits.TcpLimits`): inbound
connections are capped per source and in total (the total also below the
descriptor limit minus a reserve for outbound sockets) — more are closed at
accept; an inbound connection must send its first byte within
``first_byte_timeout``, every message must be complete within
``message_timeout`` of its first byte, and a connection with no traffic either
way for ``idle_timeout`` is closed. The bytes of incomplete messages over all
connections are bounded by ``max_buffered_bytes``: above it the connections
holding the most byte-seconds (largest and oldest partial messages) are closed
until a quarter is free again.
"""

from __future__ import annotations

import asyncio
import itertools
import socket
from collections.abc import Callable
from typing import TYPE_CHECKING

from engine.errors import SipTransportError
from engine.log import get_logger
from engine.ports import Clock, Peer
from engine.sip.framer import StreamFramer
from engine.transport.addresses import WILDCARDS, host_port, ip_family, strip_brackets
from engine.transport.tcp_guard import TcpGuard
from engine.transport.tcp_limits import TcpLimits

if TYPE_CHECKING:
    from engine.transport.driver import Driver

log = get_logger("engine.transport.tcp")

CONNECT_TIMEOUT = 10.0
MAX_WRITE_BUFFER = 8 * 1024 * 1024  # a peer that reads nothing gets disconnected
_flow_ids = itertools.count(1)


class TcpConnection(asyncio.Protocol):
    """One TCP connection (a flow). ``peer`` is the remote address, as a Peer."""

    def __init__(self, manager: TcpTransport, outbound: bool):
        self.manager = manager
        self.outbound = outbound
        self.flow = f"tcp-{next(_flow_ids)}"
        self.framer = StreamFramer()
        self.transport: asyncio.Transport | None = None
        self.peer = Peer("", 0, "tcp")
        self.local_host = ""
        self.opened_at = self.last_activity = manager.clock.monotonic()
        self.partial_since: float | None = None  # first byte of the incomplete message
        self.source = ""  # what the per-source cap counts (set when accepted)
        self.registered = False
        self.closing = False

    # ------------------------------------------------------------------ asyncio callbacks

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]
        try:
            peername = transport.get_extra_info("peername")
            sockname = transport.get_extra_info("sockname")
            self.peer = Peer(peername[0], peername[1], "tcp")
            self.local_host = sockname[0] if sockname else ""
            self.manager._register(self)
        except Exception:
            log.exception("tcp connection set-up failed")
            transport.close()

    def data_received(self, data: bytes) -> None:
        if self.closing:
            return  # refused or aborted (a read may already be under way): not counted
        manager = self.manager
        now = self.last_activity = manager.clock.monotonic()
        try:
            before = self.framer.buffered
            events = self.framer.feed(data)
            manager.guard.buffered(self, before, now, events)
            if events:
                manager.driver.on_stream(self, events)
        except Exception:
            log.exception("tcp input handling failed", flow=self.flow,
                          peer=f"{self.peer.host}:{self.peer.port}")

    def eof_received(self) -> bool:
        return False  # half-closed by the peer: close our side as well

    def connection_lost(self, exc: Exception | None) -> None:
        self.closing = True
        try:
            self.manager._unregister(self)
        except Exception:
            log.exception("tcp connection clean-up failed", flow=self.flow)
        if exc is not None:
            log.debug("tcp connection lost", flow=self.flow, error=str(exc))

    # ------------------------------------------------------------------ ours

    @property
    def alive(self) -> bool:
        return not self.closing and self.transport is not None

    def write(self, data: bytes) -> None:
        transport = self.transport
        if transport is None or self.closing:
            raise OSError(f"connection {self.flow} is closed")
        transport.write(data)
        self.last_activity = self.manager.clock.monotonic()
        if transport.get_write_buffer_size() > MAX_WRITE_BUFFER:
            log.warning("closing tcp connection: peer does not read", flow=self.flow,
                        peer=f"{self.peer.host}:{self.peer.port}")
            self.abort()

    def close(self) -> None:
        """Close after the buffered data (e.g. a final 400) is written."""
        self.closing = True
        if self.transport is not None:
            self.transport.close()

    def abort(self) -> None:
        self.closing = True
        if self.transport is not None:
            self.transport.abort()


class _Pending:
    """A connection being opened: messages wait here (with their transactions)."""

    __slots__ = ("queue", "task")

    def __init__(self) -> None:
        self.queue: list[tuple[bytes, int | None]] = []
        self.task: asyncio.Task[None] | None = None


def _listen_socket(family: int, host: str, port: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_STREAM)
    try:
        # SO_REUSEADDR only skips TIME_WAIT; on Linux two listeners still collide.
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        if reuse_port:  # workers of one supervisor (WORKERS > 1) share the listener port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SipTransportError(
            f"cannot listen on tcp {host_port(host, port)}: {exc.strerror or exc}") from exc
    return sock


class TcpTransport:
    """Listeners, the flow table and sending over TCP."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock, driver: Driver, *,
                 limits: TcpLimits | None = None, connect_timeout: float = CONNECT_TIMEOUT,
                 reuse_port: bool = False):
        self.loop = loop
        self.reuse_port = reuse_port
        self.clock = clock
        self.driver = driver
        self.limits = limits or TcpLimits()
        self.idle_timeout = self.limits.idle_timeout
        self.guard = TcpGuard(self.limits, clock)
        self._next_idle_sweep = 0.0
        self.connect_timeout = connect_timeout
        self.flows: dict[str, TcpConnection] = {}
        self.by_peer: dict[tuple[str, int], TcpConnection] = {}
        self._pending: dict[tuple[str, int], _Pending] = {}
        self._servers: list[asyncio.AbstractServer] = []
        self._sweeper: asyncio.TimerHandle | None = None
        self.addresses: list[tuple[str, int]] = []
        self.on_closed: Callable[[str], None] | None = None

    async def open(self, host: str, port: int) -> int:
        host = strip_brackets(host)
        if host == "::":
            plan = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
        elif host in WILDCARDS:
            plan = [(socket.AF_INET, "0.0.0.0")]
        else:
            fam = ip_family(host)
            if fam is None:
                raise SipTransportError(f"SIP_HOST must be an IP address, not {host!r}")
            plan = [(fam, host)]
        socks: list[socket.socket] = []
        try:
            for fam, h in plan:
                sock = _listen_socket(fam, h, port, self.reuse_port)
                socks.append(sock)
                port = sock.getsockname()[1]
        except SipTransportError:
            for s in socks:
                s.close()
            raise
        self.guard.derive_cap()
        for sock in socks:
            server = await self.loop.create_server(
                lambda: TcpConnection(self, outbound=False), sock=sock, backlog=1024)
            self._servers.append(server)
            self.addresses.append((sock.getsockname()[0], port))
        self._schedule_sweep()
        return port

    # ------------------------------------------------------------------ flow table

    def _register(self, conn: TcpConnection) -> None:
        if not conn.outbound and not self.guard.admit(conn):
            conn.abort()
            return
        conn.registered = True
        self.flows[conn.flow] = conn
        key = (conn.peer.host, conn.peer.port)
        # An inbound connection is reachable at its source address; the newest wins.
        self.by_peer[key] = conn
        log.debug("tcp connection up", flow=conn.flow, peer=f"{key[0]}:{key[1]}",
                  outbound=conn.outbound)

    def _unregister(self, conn: TcpConnection) -> None:
        if not conn.registered:
            return  # refused at accept: never counted, never seen by the core
        conn.registered = False
        self.guard.release(conn)
        if self.flows.get(conn.flow) is conn:
            del self.flows[conn.flow]
        key = (conn.peer.host, conn.peer.port)
        if self.by_peer.get(key) is conn:
            del self.by_peer[key]
        if self.on_closed is not None:
            self.on_closed(conn.flow)

    def connection(self, flow: str | None) -> TcpConnection | None:
        """The open connection of ``flow``, if any."""
        if flow is None:
            return None
        conn = self.flows.get(flow)
        return conn if conn is not None and conn.alive else None

    def find(self, host: str, port: int) -> TcpConnection | None:
        conn = self.by_peer.get((strip_brackets(host), port))
        return conn if conn is not None and conn.alive else None

    # ------------------------------------------------------------------ sending

    def send(self, data: bytes, peer: Peer, flow: str | None, tx: int | None) -> None:
        """Write ``data`` on ``flow`` if open, else on a connection to ``peer``
        (opened if needed). Raises OSError only for an immediate failure;
        connect failures come back later through ``driver.send_failed``."""
        conn = self.connection(flow) if flow is not None else None
        if conn is None:
            host = strip_brackets(peer.host)
            conn = self.find(host, peer.port)
            if conn is None:
                if ip_family(host) is None:
                    raise OSError(f"not an IP address: {host}")
                self._queue(host, peer.port, data, tx)
                return
        conn.write(data)

    def _queue(self, host: str, port: int, data: bytes, tx: int | None) -> None:
        key = (host, port)
        pending = self._pending.get(key)
        if pending is None:
            pending = self._pending[key] = _Pending()
            pending.task = self.loop.create_task(self._connect(key, pending))
        pending.queue.append((data, tx))

    async def _connect(self, key: tuple[str, int], pending: _Pending) -> None:
        host, port = key
        conn: TcpConnection | None = None
        error = ""
        try:
            _, proto = await asyncio.wait_for(
                self.loop.create_connection(lambda: TcpConnection(self, outbound=True),
                                            host, port),
                self.connect_timeout)
            conn = proto
        except asyncio.CancelledError:
            error = "transport closed"
            raise
        except (TimeoutError, OSError) as exc:
            error = f"connect to {host_port(host, port)} failed: {exc or 'timeout'}"
        finally:
            if self._pending.get(key) is pending:
                del self._pending[key]
            self._flush(pending, conn, error)

    def _flush(self, pending: _Pending, conn: TcpConnection | None, error: str) -> None:
        for data, tx in pending.queue:
            if conn is not None and conn.alive:
                try:
                    conn.write(data)
                    continue
                except OSError as exc:
                    error = str(exc)
            self.driver.send_failed(tx, error or "connection closed")
        pending.queue.clear()

    async def connect(self, host: str, port: int) -> str:
        """Open (or reuse) a connection to ``host:port`` and return its flow id."""
        conn = self.find(host, port)
        if conn is not None:
            return conn.flow
        _, proto = await asyncio.wait_for(
            self.loop.create_connection(lambda: TcpConnection(self, outbound=True),
                                        strip_brackets(host), port),
            self.connect_timeout)
        return proto.flow

    # ------------------------------------------------------------------ deadlines

    def _schedule_sweep(self) -> None:
        self._sweeper = self.loop.call_later(self.guard.tick, self._sweep)

    def _sweep(self) -> None:
        """First-byte and message deadlines every tick; the idle time-out (over every
        connection) every quarter of it, at most once a minute."""
        try:
            now = self.clock.monotonic()
            self.guard.expire(now)
            if now >= self._next_idle_sweep:
                self._next_idle_sweep = now + max(1.0, min(60.0, self.idle_timeout / 4))
                limit = now - self.idle_timeout
                for conn in [c for c in self.flows.values() if c.last_activity < limit]:
                    log.info("closing idle tcp connection", flow=conn.flow,
                             peer=f"{conn.peer.host}:{conn.peer.port}")
                    conn.close()
        except Exception:
            log.exception("tcp deadline sweep failed")
        finally:
            self._schedule_sweep()

    async def close(self) -> None:
        if self._sweeper is not None:
            self._sweeper.cancel()
            self._sweeper = None
        for pending in list(self._pending.values()):
            if pending.task is not None:
                pending.task.cancel()
        for server in self._servers:
            server.close()
        for conn in list(self.flows.values()):
            conn.abort()
        for server in self._servers:
            try:
                await asyncio.wait_for(server.wait_closed(), 2.0)
            except (TimeoutError, OSError):
                pass
        self._servers.clear()
