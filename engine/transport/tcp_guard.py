"""Admission, deadlines and the buffered-bytes bound of the SIP TCP listener.

One :class:`TcpGuard` per :class:`~engine.transport.tcp.TcpTransport`. It counts
inbound connections (in total and per source), keeps two queues in time order —
accepted connections still waiting for their first byte, connections holding an
incomplete message — so a periodic check touches only the expired ones, and
accounts the bytes of incomplete messages over every connection.

Every forced close is an abort (RST): the descriptor and the buffer are freed at
once, which is the point under a flood. Log lines for refusals and forced closes
are throttled per (reason, source) so a flood cannot flood the log.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from engine.log import get_logger
from engine.ports import Clock
from engine.sip.framer import FramerEvent, KeepAlive
from engine.transport.tcp_limits import (
    TcpLimits,
    ThrottledLog,
    inbound_cap,
    nofile_soft_limit,
    source_key,
)

if TYPE_CHECKING:
    from engine.transport.tcp import TcpConnection

log = get_logger("engine.transport.tcp")

# When buffered bytes exceed the bound, close connections until this share is used.
_LOW_WATER = 0.75


class TcpGuard:
    def __init__(self, limits: TcpLimits, clock: Clock):
        self.limits = limits
        self.clock = clock
        self.cap = limits.max_connections  # effective inbound cap, see derive_cap()
        self.inbound = 0
        self.per_source: dict[str, int] = {}
        self.buffered_total = 0
        self._silent: dict[str, TcpConnection] = {}  # accepted, no byte yet; by accept time
        self._partial: dict[str, TcpConnection] = {}  # incomplete message; by its first byte
        self._throttle = ThrottledLog()

    @property
    def tick(self) -> float:
        """How often deadlines are checked: a quarter of the shortest, within 50 ms–1 s."""
        shortest = min(self.limits.first_byte_timeout, self.limits.message_timeout)
        return max(0.05, min(1.0, shortest / 4))

    def derive_cap(self) -> int:
        """Fix the inbound cap from the descriptor limit now in force (after the daemon
        raised it): at most the configured cap and the limit minus the reserve."""
        nofile = nofile_soft_limit()
        self.cap, reserve_kept = inbound_cap(self.limits, nofile)
        if not reserve_kept:
            log.warning("file-descriptor limit below twice SIP_TCP_FD_RESERVE: inbound TCP "
                        "gets half the descriptors", nofile=nofile,
                        reserve=self.limits.fd_reserve, inbound_cap=self.cap)
        log.info("tcp limits", inbound_cap=self.cap, per_source=self.limits.max_per_source,
                 nofile=nofile, fd_reserve=self.limits.fd_reserve,
                 idle_timeout=self.limits.idle_timeout,
                 first_byte_timeout=self.limits.first_byte_timeout,
                 message_timeout=self.limits.message_timeout,
                 max_buffered_bytes=self.limits.max_buffered_bytes)
        return self.cap

    # ------------------------------------------------------------------ admission

    def admit(self, conn: TcpConnection) -> bool:
        """Count an accepted connection, or return False (the caller aborts it)."""
        source = source_key(conn.peer.host)
        held = self.per_source.get(source, 0)
        if held >= self.limits.max_per_source:
            self._note("refusing tcp connections: per-source limit reached", source,
                       limit=self.limits.max_per_source, setting="SIP_TCP_MAX_PER_SOURCE")
            return False
        if self.inbound >= self.cap:
            self._note("refusing tcp connections: inbound limit reached", "*",
                       limit=self.cap, setting="SIP_TCP_MAX_CONNECTIONS/SIP_TCP_FD_RESERVE",
                       last_source=source)
            return False
        conn.source = source
        self.per_source[source] = held + 1
        self.inbound += 1
        self._silent[conn.flow] = conn
        return True

    def release(self, conn: TcpConnection) -> None:
        """The connection is gone: uncount it and free its buffer."""
        self._forget(conn)
        source = conn.source
        if source:
            conn.source = ""
            self.inbound -= 1
            left = self.per_source.get(source, 1) - 1
            if left > 0:
                self.per_source[source] = left
            else:
                self.per_source.pop(source, None)

    # ------------------------------------------------------------------ input accounting

    def buffered(self, conn: TcpConnection, before: int, now: float,
                 events: list[FramerEvent]) -> None:
        """After the framer took input: account its buffer and start, restart or stop
        the message deadline."""
        flow = conn.flow
        if self._silent:
            self._silent.pop(flow, None)
        after = conn.framer.buffered
        self.buffered_total += after - before
        if after == 0:
            conn.partial_since = None
            self._partial.pop(flow, None)
        elif conn.partial_since is None or any(type(e) is not KeepAlive for e in events):
            # A new message began in this segment (the previous one, if any, completed).
            conn.partial_since = now
            self._partial.pop(flow, None)
            self._partial[flow] = conn
        if self.buffered_total > self.limits.max_buffered_bytes:
            self._shed(now)

    def _shed(self, now: float) -> None:
        """Close connections holding the most byte-seconds of incomplete input (largest
        and oldest first; a message arriving right now holds almost none) until the
        total is back under the low-water mark."""
        goal = int(self.limits.max_buffered_bytes * _LOW_WATER)
        ranked = sorted(self._partial.values(), reverse=True,
                        key=lambda c: c.framer.buffered * (now - (c.partial_since or now)
                                                           + 0.001))
        for conn in ranked:
            if self.buffered_total <= goal:
                break
            self.drop(conn, "closing tcp connections: buffered input over bound", now,
                      limit=self.limits.max_buffered_bytes,
                      setting="SIP_TCP_MAX_BUFFERED_BYTES")

    # ------------------------------------------------------------------ deadlines

    def expire(self, now: float) -> None:
        """Close connections past their first-byte or message deadline."""
        silent, partial = self._silent, self._partial
        limit = now - self.limits.first_byte_timeout
        while silent:
            conn = next(iter(silent.values()))
            if conn.opened_at > limit:
                break
            self.drop(conn, "closing tcp connections: nothing received in time", now,
                      setting="SIP_TCP_FIRST_BYTE_TIMEOUT",
                      timeout=self.limits.first_byte_timeout)
        limit = now - self.limits.message_timeout
        while partial:
            conn = next(iter(partial.values()))
            if (conn.partial_since or now) > limit:
                break
            self.drop(conn, "closing tcp connections: message not complete in time", now,
                      setting="SIP_TCP_MESSAGE_TIMEOUT", timeout=self.limits.message_timeout)

    def drop(self, conn: TcpConnection, why: str, now: float, **fields: object) -> None:
        """Abort ``conn`` now (RST), freeing its buffer, and log (throttled)."""
        self._forget(conn)
        self._note(why, conn.source or source_key(conn.peer.host), now=now, **fields)
        conn.abort()

    def _forget(self, conn: TcpConnection) -> None:
        self._silent.pop(conn.flow, None)
        self._partial.pop(conn.flow, None)
        self.buffered_total -= conn.framer.buffered
        conn.framer.discard()
        conn.partial_since = None

    def _note(self, why: str, source: str, now: float | None = None,
              **fields: object) -> None:
        suppressed = self._throttle.check((why, source), now or self.clock.monotonic())
        if suppressed is not None:
            log.warning(why, source=source, not_logged_since=suppressed, **fields)
