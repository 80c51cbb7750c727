"""``EmbeddedSipPort``: the ``engine.ports.SipPort`` of the embedded backend.

It is the transaction user (TU) on top of the pure
:class:`~engine.sip.endpoint.EndpointCore`: the driver feeds the core and
hands every event effect to :meth:`EmbeddedSipPort._on_event`, which routes
requests to handlers and dialogs and responses to the requests/legs waiting
for them.

Threading and ordering: everything runs on the event loop that called
:meth:`start`. Handlers of out-of-dialog requests run as tasks (one per
request, started in arrival order); dialog listeners and ``on_cancel``/
``on_provisional`` callbacks are called synchronously from the socket
callback, in network order (a coroutine returned by a listener becomes a task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from engine.clock import LoopClock
from engine.errors import SipTransportError
from engine.log import get_logger
from engine.port_tasks import TaskOwner
from engine.ports import Clock, Credentials, Headers, IncomingRequest, Peer
from engine.sip.builders import IdGenerator
from engine.sip.digest import DigestClient
from engine.sip.effects import (
    AckTimeout,
    CancelReceived,
    Effect,
    MessageRejected,
    RequestReceived,
    ResponseReceived,
    TimerConfig,
    TransactionTerminated,
    TransactionTimeout,
    TransportFailure,
)
from engine.sip.endpoint import EndpointCore
from engine.sip.errors import SipParseError, TransactionStateError
from engine.sip.message import SipRequest, SipResponse
from engine.transport.addresses import LocalAddresses, host_port
from engine.transport.client import ClientUser, authorized_copy
from engine.transport.dialogs import EmbeddedDialog, answer_invite
from engine.transport.driver import Driver
from engine.transport.legs import EmbeddedClientLeg, ack_and_bye
from engine.transport.listeners import close_listeners, listening_addresses, open_listeners
from engine.transport.requests import EmbeddedIncomingRequest, header_items
from engine.transport.resolve import Resolver
from engine.transport.tcp_limits import TcpLimits
from engine.transport.uac import send_out_of_dialog
from engine.transport.unanswered import UnansweredRequests

log = get_logger("engine.transport.port")

Handler = Callable[[IncomingRequest], Awaitable[None]]


class EmbeddedSipPort(TaskOwner):
    """The embedded SIP stack behind the ``SipPort`` API.

    Construct with :meth:`from_settings` (or the keyword arguments), then
    ``await start()`` to bind the listeners and ``await close()`` to stop.
    ``timers`` (RFC 3261 T1/T2/T4) exists so tests can shorten 64*T1;
    ``server_header``/``user_agent`` are added to responses/requests we build;
    ``max_server_transactions`` bounds live server transactions (memory; above it
    new requests are answered 503 with Retry-After).
    """

    def __init__(
        self, *, host: str = "0.0.0.0", port: int = 5060,
        transports: tuple[str, ...] = ("udp", "tcp"), external_address: str | None = None,
        clock: Clock | None = None, timers: TimerConfig | None = None,
        tcp_limits: TcpLimits | None = None, server_header: str | None = "DragonPBX",
        user_agent: str | None = "DragonPBX", ids: IdGenerator | None = None,
        max_server_transactions: int = 400_000, reuse_port: bool = False,
    ):
        bad = [t for t in transports if t not in ("udp", "tcp")]
        if bad or not transports:
            raise ValueError(f"unsupported SIP transports {bad or transports}")
        self.host = host
        self.reuse_port = reuse_port  # a worker: share the port (engine/supervisor.py)
        self.requested_port = port
        self.transports = tuple(transports)
        self.clock: Clock = clock or LoopClock()
        self.ids = ids or IdGenerator()
        self.timers = timers or TimerConfig()
        self.tcp_limits = tcp_limits or TcpLimits()
        self.user_agent = user_agent
        self.addresses = LocalAddresses(host, port, external_address)
        # A UDP non-INVITE transaction lives 64*T1 (timer J) after its answer, ~1.5 kB
        # each: 400k allow 12.5k REGISTER/s sustained (~600 MB); beyond, new requests get
        # 503 + Retry-After from the core (its default, 200k, caps at 6.25k/s).
        self.core = EndpointCore(timers=self.timers, ids=self.ids, server_header=server_header,
                                 max_server_transactions=max_server_transactions)
        self.driver = Driver(self.core, self.clock, self._on_event)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[str, Handler] = {}
        self._unanswered = UnansweredRequests(self.clock, self.timers.timeout)
        self._invites: dict[int, EmbeddedIncomingRequest] = {}  # INVITE server txs
        self._merge: dict[tuple[str, str, int], int] = {}  # new INVITEs: (Call-ID, tag, CSeq)
        self._clients: dict[int, ClientUser] = {}  # our client txs
        self._dialogs: dict[tuple[str, str, str], EmbeddedDialog] = {}
        self.digest = DigestClient()
        self._resolver: Resolver | None = None
        self._tasks: set[asyncio.Task[Any]] = set()
        self._started = False
        self._closed = False
        self._dispatch: dict[type, Callable[[Any], None]] = {
            RequestReceived: self._on_request,
            ResponseReceived: self._on_response,
            CancelReceived: self._on_cancel,
            AckTimeout: self._on_ack_timeout,
            TransactionTimeout: self._on_timeout,
            TransportFailure: self._on_transport_failure,
            TransactionTerminated: self._on_terminated,
            MessageRejected: self._on_rejected,
        }

    @classmethod
    def from_settings(cls, settings: Any, clock: Clock | None = None,
                      **options: Any) -> EmbeddedSipPort:
        """From ``engine.settings.Settings``: SIP_HOST, SIP_PORT (0 = any free port),
        SIP_TRANSPORTS, SIP_EXTERNAL_ADDRESS, SIP_TCP_*. ``options`` go to the constructor."""
        options.setdefault("tcp_limits", TcpLimits.from_settings(settings))
        options.setdefault("reuse_port", getattr(settings, "worker_index", None) is not None)
        return cls(host=settings.sip_host, port=settings.sip_port,
                   transports=tuple(settings.sip_transports),
                   external_address=settings.sip_external_address, clock=clock, **options)

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def resolver(self) -> Resolver:
        if self._resolver is None:
            self._resolver = Resolver(self.loop, self.clock)
        return self._resolver

    @property
    def port(self) -> int:
        """The bound SIP port (after :meth:`start`)."""
        return self.addresses.port

    async def start(self) -> None:
        """Bind every transport on SIP_HOST:SIP_PORT. Raises ``SipTransportError``
        naming the address when it cannot (port taken, address not local)."""
        if self._started:
            return
        loop = self.loop
        attempts = 20 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            try:
                port = await open_listeners(self.driver, loop, self.host, self.requested_port,
                                            self.transports, self.clock, self.tcp_limits,
                                            self.reuse_port)
                break
            except SipTransportError:
                if attempt == attempts - 1:
                    raise
        self.addresses.port = port
        self.core.sent_by = {t: (self.addresses.host_for(None), self.dialog_port(t))
                             for t in self.transports}
        self._started = True
        self._unanswered.start(loop)
        log.info("SIP listening", host=self.host, port=port, transports=",".join(self.transports),
                 external=self.addresses.external)

    async def close(self) -> None:
        """Stop listening, close every connection, cancel handler tasks and timers.
        Live calls are not BYE'd (the daemon drains before closing)."""
        if self._closed:
            return
        self._closed = True
        self._unanswered.stop()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        for dialog in list(self._dialogs.values()):
            dialog.stop_timers()
        self.driver.close()
        await close_listeners(self.driver)
        log.info("SIP stopped", port=self.port)

    def local_addresses(self) -> list[Peer]:
        """Every bound listener as ``Peer(host, port, transport)``."""
        return listening_addresses(self.driver)

    async def request(
        self, uri: str, method: str, *, headers: Headers = (), body: bytes = b"",
        content_type: str | None = None, proxy: str | None = None,
        auth: Credentials | None = None, flow: str | None = None,
    ) -> SipResponse:
        """Send a non-INVITE request outside a dialog and return its final response.

        Caller headers (From, To, Call-ID, CSeq, Contact, Expires …) are used as given;
        missing ones get defaults (From = our address with a new tag, To = ``uri``,
        Call-ID generated, CSeq random, Max-Forwards 70). The next hop is ``proxy``
        (a SIP URI or ``host:port``), else a Route header you gave, else ``uri``
        (``;transport=tcp`` honoured, names resolved with A/AAAA); ``flow`` sends over
        that TCP connection while it is open. With ``auth`` one 401/407 is answered
        (same Call-ID and From tag, CSeq + 1); without, the challenge is returned.
        Time-out → a local 408, transport or DNS failure → a local 503: this never
        raises for network reasons (ValueError for a URI that is no SIP URI)."""
        return await send_out_of_dialog(self, uri, method, header_items(headers), body,
                                        content_type, proxy, auth, flow)

    def invite(
        self, uri: str, *, sdp: bytes | None, headers: Headers = (), proxy: str | None = None,
        auth: Credentials | None = None, flow: str | None = None,
        on_provisional: Callable[[Any], None] | None = None,
    ) -> EmbeddedClientLeg:
        """Start an INVITE leg now and return it (see ``engine.transport.legs``).

        Headers and next hop as for :meth:`request`; our Contact is added unless given.
        ``sdp`` None sends an offerless INVITE: the dialog from ``leg.result()`` is then
        not yet ACKed and the caller answers with ``await dialog.ack(sdp=…)`` within
        64*T1. ``on_provisional(response)`` is called for each 1xx above 100, in order,
        from the socket callback. ``await leg.result()`` → dialog, or ``SipError``."""
        leg = EmbeddedClientLeg(self, uri, sdp=sdp, items=header_items(headers), proxy=proxy,
                                auth=auth, flow=flow, on_provisional=on_provisional)
        leg.start()
        return leg

    def contact_uri(self, *, transport: str = "udp", user: str | None = None) -> str:
        """Our own Contact URI for ``transport`` (``sip:[user@]host:port[;transport=tcp]``,
        host = SIP_EXTERNAL_ADDRESS, else the listen address, else the default route's)."""
        return self.addresses.contact(transport, user, port=self.dialog_port(transport))

    def listen_contact_uri(self, *, transport: str = "udp", user: str | None = None) -> str:
        """Our Contact at the SIP port itself (that all workers share)."""
        return self.addresses.contact(transport, user)

    def dialog_port(self, transport: str) -> int:
        """Our Via/Contact port: a worker's private UDP port brings answers back to it."""
        udp = self.driver.udp
        private = udp.private_port if transport.lower() == "udp" and udp is not None else None
        return private or self.addresses.port

    # ------------------------------------------------------------------ routing

    def on_request(self, method: str, handler: Handler) -> None:
        """Route out-of-dialog requests of ``method`` to ``handler(req)`` (a coroutine
        function, run as a task per request). One handler per method (a new one
        replaces the old). Methods without a handler are answered 405 with Allow.
        If the handler raises before a final response, the port answers 500; a
        non-INVITE request left unanswered for 64*T1 is answered 408."""
        self._handlers[method.upper()] = handler

    def allow_header(self) -> str:
        """The ``Allow`` value of our 405s: methods with a handler, plus ACK/CANCEL/BYE."""
        methods = dict.fromkeys(["ACK", "CANCEL", "BYE", *sorted(self._handlers)])
        return ", ".join(methods)

    # ------------------------------------------------------------------ helpers for the TU parts

    def _answer_500(self, req: EmbeddedIncomingRequest) -> None:
        req.send_response(500)

    def answered(self, req: EmbeddedIncomingRequest) -> None:
        """A final response went out on ``req`` (bookkeeping)."""
        if req.tx is not None:
            self._unanswered.discard(req.tx)

    def respond(self, tx: int, status: int, reason: str | None = None,
                headers: list[tuple[str, str]] | None = None) -> None:
        """Answer a server transaction directly (405, 481, 500…), ignoring a race
        with a response already sent."""
        try:
            _, effects = self.core.respond(tx, status, reason, headers=headers or ())
        except TransactionStateError:
            return
        self.driver.run(effects)

    # ------------------------------------------------------------------ UAS / UAC mechanics

    def answer_invite(self, req: EmbeddedIncomingRequest, status: int, reason: str | None,
                      items: list[tuple[str, str]], body: bytes,
                      content_type: str | None) -> EmbeddedDialog | None:
        """Send a 2xx to an INVITE and create (or update) its dialog (see
        ``dialogs.answer_invite``)."""
        return answer_invite(self, req, status, reason, items, body, content_type)

    def track_invite(self, req: EmbeddedIncomingRequest) -> None:
        """Route CANCEL/ACK/ACK time-out of INVITE ``req`` (a re-INVITE) to it."""
        if req.tx is not None:
            self._invites[req.tx] = req

    def add_dialog(self, dialog: EmbeddedDialog) -> None:
        """Make ``dialog`` receive its in-dialog requests."""
        self._dialogs[dialog.sip.key] = dialog

    def remove_dialog(self, dialog: EmbeddedDialog) -> None:
        """Forget ``dialog``: its in-dialog requests get 481 from now on."""
        key = dialog.sip.key
        if self._dialogs.get(key) is dialog:
            del self._dialogs[key]

    def active_dialogs(self) -> list[EmbeddedDialog]:
        """The dialogs currently known (for inspection and shutdown)."""
        return list(self._dialogs.values())

    def flow_alive(self, flow: str | None) -> bool:
        """True while the TCP connection ``flow`` is open."""
        tcp = self.driver.tcp
        return tcp is not None and tcp.connection(flow) is not None

    def _local_host(self, transport: str, peer_host: str | None, flow: str | None) -> str:
        addrs = self.addresses
        if addrs.external is None and addrs.wildcard and flow is not None:
            conn = self.driver.tcp.connection(flow) if self.driver.tcp else None
            if conn is not None and conn.local_host:
                return conn.local_host  # the address this connection really uses
        return addrs.host_for(peer_host)

    def local_contact(self, transport: str, peer_host: str | None = None,
                      flow: str | None = None) -> str:
        """Our Contact URI towards ``peer_host`` (over ``flow``)."""
        host = self._local_host(transport, peer_host, flow)
        uri = f"sip:{host_port(host, self.dialog_port(transport))}"
        return uri if transport == "udp" else f"{uri};transport={transport}"

    def via_value(self, transport: str, peer_host: str | None, flow: str | None) -> str:
        """Our Via for a new client transaction (fresh branch, ``rport``)."""
        host = self._local_host(transport, peer_host, flow)
        return (f"SIP/2.0/{transport.upper()} {host_port(host, self.dialog_port(transport))}"
                f";branch={self.ids.branch()};rport")

    def send_request(self, request: SipRequest, dest: Peer, flow: str | None,
                     user: ClientUser) -> int:
        """Start a client transaction for ``request`` (our Via added); its events go to
        ``user``. Returns the transaction id."""
        if not request.has("via"):
            request.add_header("Via", self.via_value(dest.transport, dest.host, flow),
                               first=True)
        tx, effects = self.core.send_request(request, dest, flow=flow)
        self._clients[tx] = user
        self.driver.run(effects)
        return tx

    def cancel_request(self, tx: int, headers: list[tuple[str, str]]) -> None:
        """CANCEL our INVITE ``tx`` (the core holds it until a provisional arrives).
        Raises ``TransactionStateError`` when the transaction is already over."""
        self.driver.run(self.core.cancel(tx, headers=headers))

    def send_response(self, tx: int, status: int, reason: str | None,
                      items: list[tuple[str, str]], body: bytes,
                      content_type: str | None) -> SipResponse:
        """Send a response on server transaction ``tx``; raises ``TransactionStateError``
        when its final response already went out."""
        resp, effects = self.core.respond(tx, status, reason, headers=items, body=body,
                                          content_type=content_type)
        self.driver.run(effects)
        return resp

    def tcp_flow_to(self, host: str, port: int) -> str | None:
        """The flow of a live TCP connection to ``host:port``, if we have one."""
        tcp = self.driver.tcp
        conn = tcp.find(host, port) if tcp is not None else None
        return conn.flow if conn is not None else None

    def send_ack(self, ack: SipRequest, dest: Peer, invite_tx: int | None,
                 flow: str | None) -> None:
        """Send the ACK for a 2xx (a new branch); with ``invite_tx`` the core re-sends
        it whenever that 2xx is retransmitted."""
        if not ack.has("via"):
            ack.add_header("Via", self.via_value(dest.transport, dest.host, flow), first=True)
        self.driver.run(self.core.send_ack(ack, dest, invite_tx=invite_tx, flow=flow))

    def authorized_copy(self, request: SipRequest, challenge: SipResponse,
                        auth: Credentials, cseq: int) -> SipRequest | None:
        """The request to re-send after a 401/407 (see ``client.authorized_copy``)."""
        return authorized_copy(self.digest, request, challenge, auth, cseq)

    def ack_and_bye(self, request: SipRequest | None, response: SipResponse,
                    invite_tx: int | None, dest: Peer | None, flow: str | None,
                    reason: str, transport: str = "udp") -> None:
        """ACK and BYE an unwanted 2xx (see ``legs.ack_and_bye``)."""
        ack_and_bye(self, request, response, invite_tx, dest, flow, reason, transport)

    # ------------------------------------------------------------------ TU events

    def _on_event(self, effect: Effect) -> None:
        handler = self._dispatch.get(type(effect))
        if handler is not None:
            handler(effect)

    def _on_request(self, ev: RequestReceived) -> None:
        req = ev.request
        tx = ev.tx
        if tx is None:
            self._on_ack(ev)
            return
        if req.has("require"):
            # §8.2.2.3: no extension is supported (no 100rel, no session timers)
            self.respond(tx, 420, None, [("Unsupported", ", ".join(req.header_lines(
                "require")))])
            return
        to_tag = req.to_tag
        if to_tag is not None:
            self._in_dialog(ev, to_tag)
            return
        handler = self._handlers.get(req.method)
        if handler is None:
            self.respond(tx, 405, None, [("Allow", self.allow_header())])
            return
        ireq = EmbeddedIncomingRequest(self, req, tx, ev.source, ev.flow)
        if req.method == "INVITE":
            # §8.2.2.2: the same INVITE reaching us again over another path (a fork
            # by an upstream proxy: other branch, same Call-ID/From tag/CSeq) is a loop
            merge_key = (req.call_id, req.from_tag or "", req.cseq.seq)
            if merge_key in self._merge:
                self.respond(tx, 482)
                return
            self._merge[merge_key] = tx
            self._invites[tx] = ireq
        else:
            self._unanswered.add(tx, ireq)
        self.run_handler(handler, ireq)

    def _in_dialog(self, ev: RequestReceived, to_tag: str) -> None:
        req = ev.request
        tx = ev.tx
        assert tx is not None
        dialog = self._dialogs.get((req.call_id, to_tag, req.from_tag or ""))
        if dialog is None:
            self.respond(tx, 481)
            return
        try:
            status = dialog.sip.receive_request(req)  # parses a target refresh's Contact
        except SipParseError as exc:
            self.respond(tx, 400, exc.reason)
            return
        if status is not None:
            self.respond(tx, status)
            return
        ireq = EmbeddedIncomingRequest(self, req, tx, ev.source, ev.flow, dialog=dialog)
        if req.method != "INVITE":
            self._unanswered.add(tx, ireq)
        dialog.receive(ireq)

    def _on_ack(self, ev: RequestReceived) -> None:
        """An ACK for a 2xx (tx None). ``invite_tx`` says which INVITE when known."""
        ack = ev.request
        ireq = self._invites.get(ev.invite_tx) if ev.invite_tx is not None else None
        dialog = ireq.dialog if ireq is not None else None
        if dialog is None:
            try:
                key = (ack.call_id, ack.to_tag or "", ack.from_tag or "")
            except SipParseError:
                log.debug("malformed ACK dropped", call_id=ack.call_id)
                return
            dialog = self._dialogs.get(key)
        if dialog is None:
            log.debug("ACK for no dialog dropped", call_id=ack.call_id)
            return
        dialog.on_ack(ack, ev.source, ev.flow)

    def _on_cancel(self, ev: CancelReceived) -> None:
        ireq = self._invites.get(ev.invite_tx)
        if ireq is not None:
            log.debug("INVITE cancelled by the caller", call_id=ireq.call_id)
            ireq.mark_cancelled()

    def _on_ack_timeout(self, ev: AckTimeout) -> None:
        ireq = self._invites.get(ev.tx)
        if ireq is not None and ireq.dialog is not None:
            ireq.dialog.on_ack_timeout(ev.tx)

    def _on_response(self, ev: ResponseReceived) -> None:
        tx = ev.tx
        if tx is None:
            self._stray_2xx(ev.response)
            return
        user = self._clients.get(tx)
        if user is not None:
            user.on_response(tx, ev.response, ev.retransmission)

    def _stray_2xx(self, response: SipResponse) -> None:
        """A 2xx to an INVITE whose transaction is gone (a late fork): ACK it, BYE it."""
        log.info("stray 2xx to an INVITE: ACK and BYE", call_id=response.call_id)
        self.ack_and_bye(None, response, None, None, None, "stray 2xx")

    def _on_timeout(self, ev: TransactionTimeout) -> None:
        user = self._clients.get(ev.tx)
        if user is not None:
            user.on_timeout(ev.tx, ev.timer)
            return
        log.debug("SIP transaction timed out", tx=ev.tx, timer=ev.timer,
                  method=ev.request.method, call_id=ev.request.call_id)

    def _on_transport_failure(self, ev: TransportFailure) -> None:
        user = self._clients.get(ev.tx)
        if user is not None:
            user.on_transport_failure(ev.tx, ev.reason)
            return
        ireq = self._invites.get(ev.tx)
        if ireq is not None and ireq.dialog is not None:
            ireq.dialog.on_transport_failure(ev.tx, ev.reason)

    def _on_terminated(self, ev: TransactionTerminated) -> None:
        tx = ev.tx
        self._unanswered.discard(tx)
        ireq = self._invites.pop(tx, None)
        if ireq is not None:
            msg = ireq.message
            key = (msg.call_id, msg.from_tag or "", msg.cseq.seq)
            if self._merge.get(key) == tx:
                del self._merge[key]
        user = self._clients.pop(tx, None)
        if user is not None:
            user.on_terminated(tx)

    def _on_rejected(self, ev: MessageRejected) -> None:
        log.debug("malformed SIP message", source=f"{ev.source.host}:{ev.source.port}",
                  transport=ev.source.transport, reason=ev.error.reason, answered=ev.replied)
