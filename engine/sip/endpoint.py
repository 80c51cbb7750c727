"""The endpoint core: transport-facing half of the embedded SIP stack, without I/O.

It owns the transaction tables and everything RFC 3261 puts below the TU:
Via stamping (``received``/``rport``, §18.2.1, RFC 3581), response routing
(§18.2.2), transaction matching (§17.1.3/§17.2.3, CANCEL §9.2, RFC 2543
fallback), the automatic 100 Trying, 200/487 for CANCEL, 400/416/481/503
answered statelessly, ACK for non-2xx, retransmission of our 2xx until its
ACK (§13.3.1.4) and re-sending of our ACK when a 2xx is retransmitted.

Usage by a driver (all methods return a list of effects, executed in order)::

    core = EndpointCore(sent_by={"udp": ("192.0.2.1", 5060), "tcp": ("192.0.2.1", 5060)})
    effects = core.receive_bytes(datagram, Peer(ip, port, "udp"), loop.time())
    effects = core.timer_fired(timer_id, loop.time())
    tx, effects = core.send_request(request, Peer(host, port, "udp"))
    response, effects = core.respond(tx, 200, headers=[...], body=sdp)
    effects = core.send_ack(ack, dest, invite_tx=tx)
    effects = core.cancel(tx)

See :mod:`engine.sip.effects` for what each effect asks of the driver.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Hashable, Mapping

from engine.ports import Peer
from engine.sip.builders import (
    MAGIC_COOKIE,
    HeaderItems,
    IdGenerator,
    error_response_bytes,
    make_response,
)
from engine.sip.effects import (
    CancelReceived,
    CancelTimer,
    Effect,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    Send,
    StartTimer,
    TimerConfig,
    TransactionTerminated,
    TransportFailure,
    is_reliable,
)
from engine.sip.errors import SipParseError, TransactionStateError
from engine.sip.headers import Via
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import is_keepalive, parse_message
from engine.sip.transaction import (
    ACCEPTED,
    CALLING,
    PROCEEDING,
    TERMINATED,
    ClientTransaction,
    ServerTransaction,
    Transaction,
    make_cancel,
)

_URI_SCHEMES = frozenset({"sip", "sips", "tel"})
# New out-of-dialog requests that start work and may be shed under overload (engine.overload)
_ADMITTED = frozenset({"REGISTER", "INVITE"})

# Asked for each new out-of-dialog REGISTER/INVITE with the number already pending:
# None admits it, a header list answers it 503 statelessly (no transaction is kept).
Admission = Callable[[int], HeaderItems | None]


def _ignore(method: str) -> None:
    return None


def _ignore_response(request: SipRequest | None, status: int) -> None:
    return None


class EndpointCore:
    """Sans-I/O SIP transaction layer. See the module docstring.

    ``sent_by``: our Via host/port per transport (``{"udp": ("203.0.113.5", 5060)}``),
    used when a request to send has no Via. ``ids``: branch/tag generator
    (inject a seeded one in tests). ``auto_trying``: answer 100 to every new
    INVITE at once. ``auto_cancel``: answer a matched CANCEL 200 and its INVITE
    487 before telling the TU. ``server_header``: ``Server:`` value for the
    responses the core makes itself. ``retransmit_2xx_reliable``: also
    retransmit 2xx over TCP (only useful behind UDP proxies).
    ``admission`` (settable): overload control, see ``Admission``; ``pending`` counts the
    admitted REGISTER/INVITE not answered yet (final, or for INVITE above 100).
    """

    def __init__(
        self, *, sent_by: Mapping[str, tuple[str, int]] | None = None,
        timers: TimerConfig | None = None, ids: IdGenerator | None = None,
        auto_trying: bool = True, auto_cancel: bool = True, server_header: str | None = None,
        retransmit_2xx_reliable: bool = False, max_server_transactions: int = 200_000,
    ):
        self.cfg = timers or TimerConfig()
        self.ids = ids or IdGenerator()
        self.sent_by = {k.lower(): v for k, v in (sent_by or {}).items()}
        self.auto_trying = auto_trying
        self.auto_cancel = auto_cancel
        self.server_header = server_header
        self.retransmit_2xx_reliable = retransmit_2xx_reliable
        self.max_server_transactions = max_server_transactions
        self.admission: Admission | None = None
        self.shed = 0  # requests refused by ``admission``
        self._pending: set[int] = set()  # ids of admitted REGISTER/INVITE server txs
        self.now = 0.0  # the last time a caller told us
        self._server: dict[Hashable, ServerTransaction] = {}
        self._client: dict[Hashable, ClientTransaction] = {}
        self._by_id: dict[int, Transaction] = {}
        self._acks_2xx: dict[tuple[str, str, str, int], ServerTransaction] = {}
        self._timers: dict[int, tuple[Transaction, str]] = {}
        self._tx_ids = itertools.count(1)
        self._timer_ids = itertools.count(1)
        # metrics hooks (set by the HTTP API's metrics; no-ops otherwise)
        self.count_request: Callable[[str], None] = _ignore
        self.count_response: Callable[[SipRequest | None, int], None] = _ignore_response

    # ------------------------------------------------------------------ introspection

    def transaction(self, tx_id: int) -> Transaction | None:
        return self._by_id.get(tx_id)

    def state(self, tx_id: int) -> str:
        tx = self._by_id.get(tx_id)
        return tx.state if tx is not None else TERMINATED

    @property
    def pending(self) -> int:
        return len(self._pending)

    @property
    def counts(self) -> dict[str, int]:
        return {"server": len(self._server), "client": len(self._client),
                "timers": len(self._timers), "awaiting_ack": len(self._acks_2xx)}

    # ------------------------------------------------------------------ timers (TimerHost)

    def start_timer(self, tx: Transaction, name: str, delay: float, out: list[Effect]) -> None:
        old = tx.timers.get(name)
        if old is not None:
            self._timers.pop(old, None)
            out.append(CancelTimer(old))
        tid = next(self._timer_ids)
        tx.timers[name] = tid
        self._timers[tid] = (tx, name)
        out.append(StartTimer(tid, delay))

    def cancel_timer(self, tx: Transaction, name: str, out: list[Effect]) -> None:
        tid = tx.timers.pop(name, None)
        if tid is not None:
            self._timers.pop(tid, None)
            out.append(CancelTimer(tid))

    def terminate(self, tx: Transaction, out: list[Effect]) -> None:
        if tx.state == TERMINATED:
            return
        tx.state = TERMINATED
        for name in list(tx.timers):
            self.cancel_timer(tx, name, out)
        table: dict = self._server if isinstance(tx, ServerTransaction) else self._client
        self._pending.discard(tx.id)
        if table.get(tx.key) is tx:
            del table[tx.key]
        self._by_id.pop(tx.id, None)
        if (isinstance(tx, ServerTransaction) and tx.ack_key is not None
                and self._acks_2xx.get(tx.ack_key) is tx):
            del self._acks_2xx[tx.ack_key]
        out.append(TransactionTerminated(tx.id))

    def timer_fired(self, timer_id: int, now: float) -> list[Effect]:
        self.now = now
        entry = self._timers.pop(timer_id, None)
        if entry is None:
            return []  # cancelled or already fired: a late callback is harmless
        tx, name = entry
        if tx.timers.get(name) != timer_id:
            return []
        del tx.timers[name]
        out: list[Effect] = []
        tx.on_timer(name, self, out)
        return out

    # ------------------------------------------------------------------ inbound

    def receive_bytes(self, data: bytes, source: Peer, now: float,
                      flow: str | None = None) -> list[Effect]:
        """A datagram (or a framed stream message) from ``source``."""
        self.now = now
        if is_keepalive(data):
            return []
        try:
            msg = parse_message(data)
        except SipParseError as err:
            return self.rejected(err, source, flow)
        return self.receive(msg, source, now, flow)

    def rejected(self, error: SipParseError, source: Peer,
                 flow: str | None = None) -> list[Effect]:
        """Answer (or drop) a message that failed to parse — also for framer errors."""
        if error.can_reply:
            data = error_response_bytes(error.context, error.status, error.reason,
                                        to_tag=self.ids.tag())
            return [Send(data, source, flow), MessageRejected(error, source, True)]
        return [MessageRejected(error, source, False)]

    def receive(self, msg: SipRequest | SipResponse, source: Peer, now: float,
                flow: str | None = None) -> list[Effect]:
        """A parsed message from ``source`` (``flow``: its connection, for TCP)."""
        self.now = now
        try:
            if isinstance(msg, SipRequest):
                return self._on_request(msg, source, flow)
            return self._on_response(msg)
        except SipParseError as err:
            err.is_request = msg.is_request
            err.method = msg.method if isinstance(msg, SipRequest) else None
            context = msg.reply_context()
            try:
                msg.top_via  # noqa: B018 — an unusable Via means nowhere to answer
            except SipParseError:
                context = [(n, v) for n, v in context if n.lower() not in ("via", "v")]
            err.context = context
            return self.rejected(err, source, flow)

    def _on_request(self, req: SipRequest, source: Peer, flow: str | None) -> list[Effect]:
        via = req.top_via
        self._stamp_via(req, via, source)
        method = req.method
        key = self._server_key(req, via, method)
        out: list[Effect] = []
        tx = self._server.get(key)
        if tx is not None:
            if method == "ACK":
                if tx.on_ack(self, out):
                    self._ack_for_2xx(req, source, flow, tx, out)
            else:
                tx.on_retransmission(self, out)
            return out
        if method == "ACK":
            self._ack_for_2xx(req, source, flow, None, out)
            return out
        # A new request: check what the TU relies on (ports.IncomingRequest.message:
        # Request-URI, From, To, Call-ID, CSeq and Via parse), once; cached after.
        req.from_.uri  # noqa: B018
        req.to.uri  # noqa: B018
        if req.request_uri.scheme not in _URI_SCHEMES:
            return self._stateless(req, 416, source, flow)
        admitted = method in _ADMITTED and req.to_tag is None
        if admitted and self.admission is not None:
            refusal = self.admission(len(self._pending))
            if refusal is not None:
                self.shed += 1
                return self._stateless(req, 503, source, flow, refusal)
        if len(self._server) >= self.max_server_transactions:
            return self._stateless(req, 503, source, flow, [("Retry-After", "5")])
        tx = self._new_server_tx(req, key, via, source, flow)
        self.count_request(method)
        if admitted:
            self._pending.add(tx.id)
        if method == "CANCEL":
            self._on_cancel(req, tx, out)
            return out
        if tx.is_invite and self.auto_trying:
            self._respond(tx, 100, None, (), b"", None, None, out)
        out.append(RequestReceived(req, tx.id, source, flow))
        return out

    def _stamp_via(self, req: SipRequest, via: Via, source: Peer) -> None:
        """§18.2.1 ``received`` and RFC 3581 ``rport`` on the top Via."""
        params = via.params
        src = source.host
        changed = False
        host = via.host[1:-1] if via.host[:1] == "[" else via.host
        if host.lower() != src.lower() and params.get("received") != src:
            params["received"] = src
            changed = True
        if "rport" in params and not params["rport"]:
            params["rport"] = str(source.port)
            params["received"] = src
            changed = True
        if changed:
            req.replace_top_via(via)

    @staticmethod
    def _server_key(req: SipRequest, via: Via, method: str) -> Hashable:
        m = "INVITE" if method == "ACK" else method
        branch = via.branch
        if branch and branch.startswith(MAGIC_COOKIE):
            return (branch, via.host.lower(), via.port, m)
        # RFC 2543 peer (§17.2.3): no usable branch. The To tag is left out so
        # that the ACK (which carries our tag) matches its INVITE.
        return ("2543", req.call_id, req.from_tag, req.cseq.seq, via.host.lower(), via.port,
                branch, m)

    def _new_server_tx(self, req: SipRequest, key: Hashable, via: Via, source: Peer,
                       flow: str | None) -> ServerTransaction:
        tx = ServerTransaction(next(self._tx_ids), key, req, is_reliable(source.transport),
                               source, self._response_dest(via, source), flow)
        self._server[key] = tx
        self._by_id[tx.id] = tx
        return tx

    @staticmethod
    def _response_dest(via: Via, source: Peer) -> Peer:
        """§18.2.2 / RFC 3581: where responses to this request go (for stream
        transports the driver first tries the request's own connection)."""
        transport = source.transport
        default = 5061 if transport in ("tls", "wss") else 5060
        params = via.params
        host = params.get("received") or (via.host[1:-1] if via.host[:1] == "[" else via.host)
        rport = params.get("rport")
        if rport and not is_reliable(transport):
            return Peer(host, int(rport), transport)
        return Peer(host, via.port or default, transport)

    def _ack_for_2xx(self, ack: SipRequest, source: Peer, flow: str | None,
                     tx: ServerTransaction | None, out: list[Effect]) -> None:
        key = (ack.call_id, ack.from_tag or "", ack.to_tag or "", ack.cseq.seq)
        stx = self._acks_2xx.get(key)
        if stx is not None:
            if stx.on_2xx_ack(self, out):
                out.append(RequestReceived(ack, None, source, flow, stx.id))
            return  # a retransmitted ACK is absorbed
        out.append(RequestReceived(ack, None, source, flow, tx.id if tx is not None else None))

    def _on_cancel(self, cancel: SipRequest, ctx: ServerTransaction, out: list[Effect]) -> None:
        invite_key = (*ctx.key[:-1], "INVITE")  # type: ignore[index]
        itx = self._server.get(invite_key)
        if itx is None or not itx.is_invite:
            self._respond(ctx, 481, None, (), b"", None, None, out)
            return
        if not self.auto_cancel:
            out.append(CancelReceived(cancel, itx.id, ctx.id, False))
            return
        self._respond(ctx, 200, None, (), b"", None, None, out)
        if itx.state == PROCEEDING:
            self._respond(itx, 487, None, (), b"", None, None, out)
            out.append(CancelReceived(cancel, itx.id, ctx.id, True))
        # else: final response already sent, the CANCEL has no effect (§9.2)

    def _stateless(self, req: SipRequest, status: int, source: Peer, flow: str | None,
                   headers: HeaderItems = ()) -> list[Effect]:
        resp = make_response(req, status, headers=headers, to_tag=self.ids.tag())
        if self.server_header:
            resp.add_header("Server", self.server_header)
        return [Send(resp.to_bytes(), self._response_dest(req.top_via, source), flow)]

    def _on_response(self, resp: SipResponse) -> list[Effect]:
        via = resp.top_via
        cseq = resp.cseq
        out: list[Effect] = []
        tx = self._client.get((via.branch, cseq.method))
        if tx is None:
            # No transaction: a 2xx to an INVITE (late fork / after timer M) still
            # needs the TU to ACK and BYE it; anything else is dropped (§17.1.3).
            if cseq.method == "INVITE" and 200 <= resp.status < 300:
                resp.to_tag  # noqa: B018
                out.append(ResponseReceived(resp, None))
            return out
        if tx.is_invite and 200 <= resp.status < 300:
            resp.to_tag  # noqa: B018 — parse (and validate) before state changes
        if tx.on_response(resp, self, out) == "cancel":
            self._send_cancel(tx, out)
        return out

    # ------------------------------------------------------------------ outbound: UAS

    def respond(
        self, tx_id: int, status: int, reason: str | None = None, *, headers: HeaderItems = (),
        body: bytes = b"", content_type: str | None = None, to_tag: str | None = None,
    ) -> tuple[SipResponse, list[Effect]]:
        """Build (make_response) and send a response on server transaction ``tx_id``.
        The To tag is chosen once per transaction (``to_tag`` or a generated one)."""
        tx = self._server_tx(tx_id)
        out: list[Effect] = []
        resp = self._respond(tx, status, reason, headers, body, content_type, to_tag, out)
        return resp, out

    def send_response(self, tx_id: int, response: SipResponse) -> list[Effect]:
        """Send a response the TU built itself on server transaction ``tx_id``."""
        tx = self._server_tx(tx_id)
        out: list[Effect] = []
        self._send_response(tx, response, out)
        return out

    def _server_tx(self, tx_id: int) -> ServerTransaction:
        tx = self._by_id.get(tx_id)
        if not isinstance(tx, ServerTransaction):
            raise TransactionStateError(f"no server transaction {tx_id}")
        return tx

    def _respond(self, tx: ServerTransaction, status: int, reason: str | None,
                 headers: HeaderItems, body: bytes, content_type: str | None,
                 to_tag: str | None, out: list[Effect]) -> SipResponse:
        if tx.request is None:
            raise TransactionStateError(f"transaction {tx.id} already answered")
        tag = None
        if status != 100:
            tag = to_tag or tx.local_tag
            if tag is None and tx.request.to_tag is None:
                tag = self.ids.tag()
            tx.local_tag = tx.local_tag or tag
        resp = make_response(tx.request, status, reason, headers=headers, body=body,
                             content_type=content_type, to_tag=tag)
        if self.server_header and not resp.has("server"):
            resp.add_header("Server", self.server_header)
        self._send_response(tx, resp, out)
        return resp

    def _send_response(self, tx: ServerTransaction, resp: SipResponse,
                       out: list[Effect]) -> None:
        self.count_response(tx.request, resp.status)
        tx.send_response(resp, resp.to_bytes(), self, out)
        if resp.status > 100:
            self._pending.discard(tx.id)
        if tx.state == ACCEPTED and tx.ack_key is None:
            req = tx.request
            assert req is not None
            tx.ack_key = (req.call_id, req.from_tag or "", resp.to_tag or "", req.cseq.seq)
            self._acks_2xx[tx.ack_key] = tx

    # ------------------------------------------------------------------ outbound: UAC

    def send_request(self, request: SipRequest, dest: Peer, *,
                     flow: str | None = None) -> tuple[int, list[Effect]]:
        """Start a client transaction. Adds our Via (fresh branch, ``rport``) when the
        request has none. Returns the transaction id and the effects."""
        if request.method in ("ACK", "CANCEL"):
            raise TransactionStateError(f"use send_ack()/cancel() for {request.method}")
        self._ensure_via(request, dest.transport)
        branch = request.top_via.branch
        if not branch or not branch.startswith(MAGIC_COOKIE):
            raise TransactionStateError("outgoing requests need a z9hG4bK branch")
        key = (branch, request.method)
        if key in self._client:
            raise TransactionStateError(f"branch {branch} already in use")
        tx = ClientTransaction(next(self._tx_ids), key, request, request.to_bytes(), dest, flow,
                               is_reliable(dest.transport))
        self._client[key] = tx
        self._by_id[tx.id] = tx
        out: list[Effect] = []
        tx.start(self, out)
        return tx.id, out

    def _ensure_via(self, request: SipRequest, transport: str) -> None:
        if request.has("via"):
            return
        try:
            host, port = self.sent_by[transport.lower()]
        except KeyError:
            raise TransactionStateError(f"no local address for transport {transport}") from None
        request.add_header(
            "Via", f"SIP/2.0/{transport.upper()} {host}:{port};branch={self.ids.branch()};rport",
            first=True)

    def cancel(self, tx_id: int, *, headers: HeaderItems = ()) -> list[Effect]:
        """CANCEL our INVITE ``tx_id`` (§9.1). Before any provisional response the
        CANCEL waits for one; after a final response it is too late (nothing sent:
        the TU gets the final response — BYE a 2xx)."""
        tx = self._by_id.get(tx_id)
        if not isinstance(tx, ClientTransaction) or not tx.is_invite:
            raise TransactionStateError(f"no INVITE client transaction {tx_id}")
        out: list[Effect] = []
        if tx.cancel_state is not None:
            return out
        items = headers.items() if isinstance(headers, Mapping) else headers
        tx.cancel_headers = [(n, str(v)) for n, v in items]
        if tx.state == CALLING:
            tx.cancel_state = "pending"
        elif tx.state == PROCEEDING:
            self._send_cancel(tx, out)
        return out

    def _send_cancel(self, tx: ClientTransaction, out: list[Effect]) -> None:
        assert tx.request is not None
        cancel = make_cancel(tx.request, tx.cancel_headers)
        key = (cancel.top_via.branch, "CANCEL")
        ctx = ClientTransaction(next(self._tx_ids), key, cancel, cancel.to_bytes(), tx.dest,
                                tx.flow, tx.reliable, silent=True)
        self._client[key] = ctx
        self._by_id[ctx.id] = ctx
        tx.cancel_state = "sent"
        ctx.start(self, out)
        self.start_timer(tx, "C", self.cfg.timeout, out)

    def send_ack(self, ack: SipRequest, dest: Peer, *, invite_tx: int | None = None,
                 flow: str | None = None) -> list[Effect]:
        """Send the ACK for a 2xx (built by the dialog). With ``invite_tx`` the core
        re-sends it by itself whenever that 2xx is retransmitted."""
        self._ensure_via(ack, dest.transport)
        send = Send(ack.to_bytes(), dest, flow, None)
        tx = self._by_id.get(invite_tx) if invite_tx is not None else None
        if isinstance(tx, ClientTransaction) and tx.state == ACCEPTED:
            tx.acks[ack.to_tag or ""] = send
        return [send]

    def send_stateless(self, message: SipRequest | SipResponse, dest: Peer, *,
                       flow: str | None = None) -> list[Effect]:
        if isinstance(message, SipRequest):
            self._ensure_via(message, dest.transport)
        return [Send(message.to_bytes(), dest, flow)]

    # ------------------------------------------------------------------ transport feedback

    def transport_error(self, tx_id: int, now: float, reason: str) -> list[Effect]:
        """The driver failed to send a message of ``tx_id`` (RFC 3261 §17.1.4/§17.2.4)."""
        self.now = now
        tx = self._by_id.get(tx_id)
        out: list[Effect] = []
        if tx is None or tx.state == TERMINATED:
            return out
        if not (isinstance(tx, ClientTransaction) and tx.silent):
            out.append(TransportFailure(tx.id, tx.request, reason))
        self.terminate(tx, out)
        return out
