"""Client and server transaction state machines (RFC 3261 §17, RFC 6026).

Each transaction is a small object whose methods append effects to a list.
They never see a clock or a socket: timers are started/cancelled through the
``host`` (the :class:`~engine.sip.endpoint.EndpointCore`), which allocates
unique timer ids and routes ``timer_fired`` back to ``on_timer``.

Timer names follow the RFC: A/B/D (INVITE client), E/F/K (non-INVITE client),
G/H/I (INVITE server, non-2xx), J (non-INVITE server); RFC 6026 adds L (INVITE
server, Accepted) and M (INVITE client, Accepted). ``G2`` retransmits our 2xx
until the ACK (the UAS core's job in §13.3.1.4, kept beside timer L because
both last 64*T1); ``C`` bounds the wait for a final response after we CANCEL
(§9.1).
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Protocol

from engine.ports import Peer
from engine.sip.effects import (
    AckTimeout,
    Effect,
    ResponseReceived,
    Send,
    TimerConfig,
    TransactionTimeout,
)
from engine.sip.errors import TransactionStateError
from engine.sip.headers import header_key
from engine.sip.message import SipRequest, SipResponse

if TYPE_CHECKING:
    from collections.abc import Hashable

# States
TRYING = "trying"
CALLING = "calling"
PROCEEDING = "proceeding"
COMPLETED = "completed"
CONFIRMED = "confirmed"
ACCEPTED = "accepted"
TERMINATED = "terminated"


class TimerHost(Protocol):
    cfg: TimerConfig
    retransmit_2xx_reliable: bool

    def start_timer(self, tx: Transaction, name: str, delay: float, out: list[Effect]) -> None: ...

    def cancel_timer(self, tx: Transaction, name: str, out: list[Effect]) -> None: ...

    def terminate(self, tx: Transaction, out: list[Effect]) -> None: ...


class Transaction:
    __slots__ = ("id", "is_invite", "key", "reliable", "request", "state", "timers")

    def __init__(self, tx_id: int, key: Hashable, request: SipRequest, reliable: bool):
        self.id = tx_id
        self.key = key
        # None once a non-INVITE server transaction has answered: it then only
        # re-sends bytes, and holding 32 s of parsed requests (timer J) would
        # cost memory and garbage-collector time at thousands of REGISTER/s.
        self.request: SipRequest | None = request
        self.is_invite = request.method == "INVITE"
        self.reliable = reliable
        self.state = ""
        self.timers: dict[str, int] = {}

    def on_timer(self, name: str, host: TimerHost, out: list[Effect]) -> None:
        raise NotImplementedError


# --------------------------------------------------------------------------- server


class ServerTransaction(Transaction):
    """Answers one received request. ``dest``/``flow`` say where responses go."""

    __slots__ = ("ack_key", "acked", "dest", "flow", "g_interval", "last_data", "last_response",
                 "local_tag", "source")

    def __init__(self, tx_id: int, key: Hashable, request: SipRequest, reliable: bool,
                 source: Peer, dest: Peer, flow: str | None):
        super().__init__(tx_id, key, request, reliable)
        self.state = PROCEEDING if self.is_invite else TRYING
        self.source = source
        self.dest = dest
        self.flow = flow
        self.last_response: SipResponse | None = None
        self.last_data: bytes | None = None
        self.g_interval = 0.0
        self.local_tag: str | None = None  # our To tag, once chosen
        self.ack_key: tuple[str, str, str, int] | None = None  # Call-ID, tags, CSeq of a 2xx
        self.acked = False

    def _send(self, out: list[Effect]) -> None:
        assert self.last_data is not None
        out.append(Send(self.last_data, self.dest, self.flow, self.id))

    def on_retransmission(self, host: TimerHost, out: list[Effect]) -> None:
        """The request arrived again: re-send the last response where the RFC says so."""
        if self.state in (PROCEEDING, COMPLETED) and self.last_data is not None:
            self._send(out)
        # TRYING: nothing to re-send yet; CONFIRMED/ACCEPTED: absorbed (RFC 6026 §7.1)

    def on_ack(self, host: TimerHost, out: list[Effect]) -> bool:
        """An ACK matching this (INVITE) transaction. True = pass it to the TU."""
        if self.state == COMPLETED:
            self.state = CONFIRMED
            host.cancel_timer(self, "G", out)
            host.cancel_timer(self, "H", out)
            if self.reliable:
                host.terminate(self, out)
            else:
                host.start_timer(self, "I", host.cfg.t4, out)
            return False
        return self.state == ACCEPTED

    def on_2xx_ack(self, host: TimerHost, out: list[Effect]) -> bool:
        """The ACK for our 2xx arrived (matched by dialog and CSeq). True the first time."""
        if self.acked:
            return False
        self.acked = True
        host.cancel_timer(self, "G2", out)
        return True

    def send_response(self, response: SipResponse, data: bytes, host: TimerHost,
                      out: list[Effect]) -> None:
        status = response.status
        state = self.state
        if status < 200:
            if state not in (TRYING, PROCEEDING):
                raise TransactionStateError(f"provisional response in state {state}")
            self.state = PROCEEDING
            self._remember(response, data)
            self._send(out)
            return
        if self.is_invite:
            if state == ACCEPTED and 200 <= status < 300:
                out.append(Send(data, self.dest, self.flow, self.id))  # the TU's own re-send
                return
            if state != PROCEEDING:
                raise TransactionStateError(f"final response in state {state}")
            self._remember(response, data)
            self._send(out)
            cfg = host.cfg
            if status < 300:
                # RFC 6026: Accepted absorbs INVITE retransmissions for 64*T1;
                # the 2xx itself is retransmitted (G2) until its ACK arrives.
                self.state = ACCEPTED
                host.start_timer(self, "L", cfg.timeout, out)
                if not self.reliable or host.retransmit_2xx_reliable:
                    self.g_interval = cfg.t1
                    host.start_timer(self, "G2", cfg.t1, out)
            else:
                self.state = COMPLETED
                if not self.reliable:
                    self.g_interval = cfg.t1
                    host.start_timer(self, "G", cfg.t1, out)
                host.start_timer(self, "H", cfg.timeout, out)
            return
        if state not in (TRYING, PROCEEDING):
            raise TransactionStateError(f"final response in state {state}")
        self.state = COMPLETED
        self._remember(response, data)
        self._send(out)
        self.request = None
        if self.reliable:
            host.terminate(self, out)
        else:
            host.start_timer(self, "J", host.cfg.timeout, out)

    def _remember(self, response: SipResponse, data: bytes) -> None:
        if self.is_invite:  # needed for AckTimeout; non-INVITE keeps only the bytes
            self.last_response = response
        self.last_data = data

    def on_timer(self, name: str, host: TimerHost, out: list[Effect]) -> None:
        cfg = host.cfg
        if name in ("G", "G2"):
            self._send(out)
            self.g_interval = min(2 * self.g_interval, cfg.t2)
            host.start_timer(self, name, self.g_interval, out)
        elif name == "H":
            assert self.request is not None
            out.append(TransactionTimeout(self.id, self.request, "H"))
            host.terminate(self, out)
        elif name == "L":
            if not self.acked and self.last_response is not None and self.request is not None:
                out.append(AckTimeout(self.id, self.request, self.last_response))
            host.terminate(self, out)
        elif name in ("I", "J"):
            host.terminate(self, out)


# --------------------------------------------------------------------------- client


class ClientTransaction(Transaction):
    """Sends one request and follows its responses."""

    __slots__ = ("acks", "cancel_headers", "cancel_state", "data", "dest", "flow", "interval",
                 "non2xx_ack", "seen_2xx", "silent")

    def __init__(self, tx_id: int, key: Hashable, request: SipRequest, data: bytes, dest: Peer,
                 flow: str | None, reliable: bool, *, silent: bool = False):
        super().__init__(tx_id, key, request, reliable)
        self.state = CALLING if self.is_invite else TRYING
        self.data = data
        self.dest = dest
        self.flow = flow
        self.interval = 0.0
        self.silent = silent  # our own CANCELs: nothing is reported to the TU
        self.non2xx_ack: bytes | None = None
        self.seen_2xx: set[str] = set()
        self.acks: dict[str, Send] = {}  # To tag -> the ACK we sent for that 2xx
        self.cancel_state: str | None = None  # None | "pending" | "sent"
        self.cancel_headers: list[tuple[str, str]] = []

    def start(self, host: TimerHost, out: list[Effect]) -> None:
        out.append(Send(self.data, self.dest, self.flow, self.id))
        cfg = host.cfg
        if not self.reliable:
            self.interval = cfg.t1
            host.start_timer(self, "A" if self.is_invite else "E", cfg.t1, out)
        host.start_timer(self, "B" if self.is_invite else "F", cfg.timeout, out)

    def on_response(self, response: SipResponse, host: TimerHost, out: list[Effect]) -> str:
        """Process a matching response. Returns what the core must do next:
        ``""`` nothing, ``"cancel"`` send the pending CANCEL now."""
        if self.is_invite:
            return self._invite_response(response, host, out)
        status, state = response.status, self.state
        if state in (TRYING, PROCEEDING):
            if status < 200:
                self.state = PROCEEDING
            else:
                self.state = COMPLETED
                host.cancel_timer(self, "E", out)
                host.cancel_timer(self, "F", out)
                if self.reliable:
                    host.terminate(self, out)
                else:
                    host.start_timer(self, "K", host.cfg.t4, out)
            if not self.silent:
                out.append(ResponseReceived(response, self.id))
        return ""  # COMPLETED: retransmitted final absorbed

    def _invite_response(self, response: SipResponse, host: TimerHost,
                         out: list[Effect]) -> str:
        status, state = response.status, self.state
        action = ""
        if state in (CALLING, PROCEEDING):
            host.cancel_timer(self, "A", out)
            if status < 200:
                if state == CALLING:
                    host.cancel_timer(self, "B", out)  # B guards only CALLING
                self.state = PROCEEDING
                if self.cancel_state == "pending":
                    action = "cancel"
                out.append(ResponseReceived(response, self.id))
                return action
            host.cancel_timer(self, "B", out)
            host.cancel_timer(self, "C", out)
            if status < 300:
                self.state = ACCEPTED
                host.start_timer(self, "M", host.cfg.timeout, out)
                self.seen_2xx.add(response.to_tag or "")
                out.append(ResponseReceived(response, self.id))
                return ""
            self.state = COMPLETED
            assert self.request is not None
            self.non2xx_ack = _ack_for_non2xx(self.request, response).to_bytes()
            out.append(Send(self.non2xx_ack, self.dest, self.flow, self.id))
            out.append(ResponseReceived(response, self.id))
            if self.reliable:
                host.terminate(self, out)
            else:
                host.start_timer(self, "D", host.cfg.d, out)
            return ""
        if state == COMPLETED and status >= 300 and self.non2xx_ack is not None:
            out.append(Send(self.non2xx_ack, self.dest, self.flow, self.id))  # re-ACK
        elif state == COMPLETED and 200 <= status < 300:
            out.append(ResponseReceived(response, self.id))  # a fork answered: TU ACKs+BYEs
        elif state == ACCEPTED and 200 <= status < 300:
            tag = response.to_tag or ""
            ack = self.acks.get(tag)
            if ack is not None:
                out.append(ack)  # 2xx retransmitted: our ACK was lost, send it again
            else:
                out.append(ResponseReceived(response, self.id, tag in self.seen_2xx))
                self.seen_2xx.add(tag)
        return ""

    def on_timer(self, name: str, host: TimerHost, out: list[Effect]) -> None:
        cfg = host.cfg
        if name in ("A", "E"):
            out.append(Send(self.data, self.dest, self.flow, self.id))
            if name == "A":
                self.interval *= 2
            else:
                self.interval = cfg.t2 if self.state == PROCEEDING else min(
                    2 * self.interval, cfg.t2)
            host.start_timer(self, name, self.interval, out)
        elif name in ("B", "F", "C"):
            if not self.silent and self.request is not None:
                out.append(TransactionTimeout(self.id, self.request,
                                              "cancel" if name == "C" else name))
            host.terminate(self, out)
        elif name in ("D", "K", "M"):
            host.terminate(self, out)


def _ack_for_non2xx(request: SipRequest, response: SipResponse) -> SipRequest:
    """§17.1.1.3: same Request-URI, Call-ID, From, CSeq number and top Via as the
    INVITE, the To of the response, the INVITE's Route set."""
    headers: list[tuple[str, str]] = []
    via_done = False
    for name, value in request.headers:
        key = header_key(name)
        if key == "via" and not via_done:
            headers.append(("Via", request.header("via") or value))
            via_done = True
        elif key in ("from", "call-id", "route"):
            headers.append((name, value))
        elif key == "to":
            headers.append(("To", response.header("to") or value))
        elif key == "cseq":
            headers.append(("CSeq", f"{request.cseq.seq} ACK"))
    headers.append(("Max-Forwards", "70"))
    ack = SipRequest("ACK", request.uri)
    ack.headers = headers
    return ack


def make_cancel(request: SipRequest, extra: list[tuple[str, str]]) -> SipRequest:
    """§9.1: CANCEL with the INVITE's Request-URI, Call-ID, To, From, CSeq number,
    single top Via and Route set (plus e.g. a Reason header)."""
    headers: list[tuple[str, str]] = []
    via_done = False
    for name, value in request.headers:
        key = header_key(name)
        if key == "via" and not via_done:
            headers.append(("Via", request.header("via") or value))
            via_done = True
        elif key in ("from", "to", "call-id", "route"):
            headers.append((name, value))
        elif key == "cseq":
            headers.append(("CSeq", f"{request.cseq.seq} CANCEL"))
    headers.append(("Max-Forwards", "70"))
    headers.extend(extra)
    cancel = SipRequest("CANCEL", request.uri)
    cancel.headers = headers
    return cancel
