"""The effects runner: feeds network input to the pure EndpointCore and executes
what it returns (sends, timers, events for the transaction user).

Everything runs on the event loop thread, synchronously from the socket
callbacks: no task per message. Transaction timers are kept in one
:class:`~engine.sip.effects.TimerQueue` served by a single loop timer armed for
the earliest deadline, so thousands of transactions cost one loop handle.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.log import get_logger
from engine.ports import Clock, Peer
from engine.sip.effects import CancelTimer, Effect, Send, StartTimer, TimerQueue
from engine.sip.endpoint import EndpointCore
from engine.sip.framer import FramedMessage, FramerEvent, FramingError, KeepAlive

if TYPE_CHECKING:
    from engine.transport.tcp import TcpConnection, TcpTransport
    from engine.transport.udp import UdpTransport

log = get_logger("engine.transport.driver")

# Timers due within this many seconds are fired together (one wake-up, not several).
TIMER_SLACK = 0.002
_PEER_CACHE_MAX = 65536


class Driver:
    """Owns the core's I/O side. ``tu`` receives every event effect (in order)."""

    def __init__(self, core: EndpointCore, clock: Clock, tu: Callable[[Effect], None]):
        self.core = core
        self.clock = clock
        self.now = clock.monotonic
        self.tu = tu
        self.udp: UdpTransport | None = None
        self.tcp: TcpTransport | None = None
        self._timers = TimerQueue()
        self._timer_handle: Any = None
        self._timer_at: float | None = None
        self._peers: dict[tuple, Peer] = {}
        self.closed = False
        # Called (once, then cleared) with the next SIP input: overload control, idling,
        # sets it to bring its fast tick back (engine.overload).
        self.on_input: Callable[[], None] | None = None

    # ------------------------------------------------------------------ effects

    def run(self, effects: list[Effect]) -> None:
        """Execute effects in order. Never raises: a failing event handler is logged
        and the following effects still run."""
        for e in effects:
            t = type(e)
            if t is Send:
                self.send(e)  # type: ignore[arg-type]
            elif t is StartTimer:
                self._start_timer(e.timer_id, e.delay)  # type: ignore[union-attr]
            elif t is CancelTimer:
                self._timers.cancel(e.timer_id)  # type: ignore[union-attr]
            else:
                try:
                    self.tu(e)
                except Exception:
                    log.exception("SIP event handler failed", event=t.__name__)

    def send(self, e: Send) -> None:
        peer = e.peer
        transport = peer.transport
        try:
            if transport == "udp":
                udp = self.udp
                if udp is None:
                    raise OSError("udp is not enabled (SIP_TRANSPORTS)")
                udp.send(e.data, peer.host, peer.port)
            elif transport == "tcp":
                tcp = self.tcp
                if tcp is None:
                    raise OSError("tcp is not enabled (SIP_TRANSPORTS)")
                tcp.send(e.data, peer, e.flow, e.tx)
            else:
                raise OSError(f"unsupported transport {transport}")
        except OSError as exc:
            self.send_failed(e.tx, f"{transport} {peer.host}:{peer.port}: {exc}")

    def send_failed(self, tx: int | None, reason: str) -> None:
        """A message could not be sent (synchronously, or later by a TCP connect)."""
        if tx is None:
            log.info("SIP send failed", reason=reason)
            return
        log.info("SIP send failed", tx=tx, reason=reason)
        try:
            effects = self.core.transport_error(tx, self.now(), reason)
        except Exception:
            log.exception("transport_error failed", tx=tx)
            return
        self.run(effects)

    # ------------------------------------------------------------------ input

    def on_datagram(self, data: bytes, addr: tuple) -> None:
        """A UDP datagram (called by the listener protocol, which logs exceptions)."""
        if self.on_input is not None:
            self._input_arrived()
        peer = self._peers.get(addr)
        if peer is None:
            peer = self._peer(addr)
        self.run(self.core.receive_bytes(data, peer, self.now()))

    def _input_arrived(self) -> None:
        hook, self.on_input = self.on_input, None
        if hook is not None:
            try:
                hook()
            except Exception:  # overload control's bookkeeping must not lose the input
                log.exception("input hook failed")

    def _peer(self, addr: tuple) -> Peer:
        peers = self._peers
        if len(peers) >= _PEER_CACHE_MAX:
            peers.clear()  # cheap bound; frequent sources come back at once
        peer = peers[addr] = Peer(addr[0], addr[1], "udp")
        return peer

    def on_stream(self, conn: TcpConnection, events: list[FramerEvent]) -> None:
        """Framed input of one TCP connection."""
        if self.on_input is not None:
            self._input_arrived()
        core = self.core
        for ev in events:
            t = type(ev)
            if t is FramedMessage:
                self.run(core.receive(ev.message, conn.peer, self.now(), conn.flow))  # type: ignore[union-attr]
            elif t is KeepAlive:
                if ev.ping:  # type: ignore[union-attr]
                    try:
                        conn.write(b"\r\n")  # RFC 5626 §4.4.1 pong
                    except OSError:
                        return  # closed meanwhile: the rest of the input is moot
            elif t is FramingError:
                self.run(core.rejected(ev.error, conn.peer, conn.flow))  # type: ignore[union-attr]
                if ev.fatal:  # type: ignore[union-attr]
                    log.info("closing tcp connection: stream cannot be framed",
                             flow=conn.flow, peer=f"{conn.peer.host}:{conn.peer.port}",
                             reason=ev.error.reason)  # type: ignore[union-attr]
                    conn.close()

    # ------------------------------------------------------------------ timers

    def _start_timer(self, timer_id: int, delay: float) -> None:
        deadline = self.now() + delay
        self._timers.start(timer_id, deadline)
        at = self._timer_at
        if at is None or deadline < at - TIMER_SLACK:
            self._arm(deadline)

    def _arm(self, deadline: float) -> None:
        if self.closed:
            return
        if self._timer_handle is not None:
            self._timer_handle.cancel()
        self._timer_at = deadline
        self._timer_handle = self.clock.call_later(deadline - self.now(), self._on_timer)

    def _on_timer(self) -> None:
        self._timer_handle = None
        self._timer_at = None
        try:
            now = self.now()
            for tid in self._timers.pop_due(now + TIMER_SLACK):
                try:
                    self.run(self.core.timer_fired(tid, now))
                except Exception:
                    log.exception("SIP timer handling failed", timer=tid)
        finally:
            nxt = self._timers.next_deadline()
            if nxt is not None and (self._timer_at is None or nxt < self._timer_at):
                self._arm(nxt)

    @property
    def pending_timers(self) -> int:
        return len(self._timers)

    def close(self) -> None:
        self.closed = True
        if self._timer_handle is not None:
            self._timer_handle.cancel()
            self._timer_handle = None
