"""``DrachtioSipPort``: the ``engine.ports.SipPort`` over a drachtio-server.

The machines see the same API as with the embedded stack (``engine.transport.port``);
the SIP transport, transactions and retransmissions are the server's. This module
routes the server's ``sip`` frames (spec §4.2): new requests to the handlers, CANCEL
notices to the INVITE they cancel, in-dialog requests and ACKs to their dialog
(``engine.drachtio.dialogs``), responses to our client transactions
(``engine.drachtio.legs``).

What the server does by itself is not repeated here (§5.7): 100 Trying, 200/487 to a
CANCEL, ACK of every non-2xx, retransmissions, the To tag and Contact of our answers.

Threading: everything runs on the loop that called :meth:`start`; frames arrive in
wire order from the client's reader; handlers of new requests run as tasks.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable
from typing import Any

from engine.clock import LoopClock
from engine.drachtio.client import DrachtioClient, DrachtioError
from engine.drachtio.dialogs import DrachtioDialogs
from engine.drachtio.legs import ClientTable, DrachtioClientLeg, send_out_of_dialog
from engine.drachtio.requests import DrachtioIncomingRequest, response_text
from engine.drachtio.sip_text import build_sip_message
from engine.drachtio.wire import ServerInfo, SipFrame
from engine.log import get_logger
from engine.port_tasks import TaskOwner
from engine.ports import Clock, Credentials, Headers, IncomingRequest, Peer
from engine.sip.builders import IdGenerator, reason_phrase
from engine.sip.digest import DigestClient
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest
from engine.sip.parser import parse_message

log = get_logger("engine.drachtio.port")

Handler = Callable[[IncomingRequest], Awaitable[None]]
_URI_SCHEMES = frozenset({"sip", "sips", "tel"})
_SWEEP_INTERVAL = 5.0
# a non-INVITE request the application leaves unanswered gets 408 after 64*T1, as with
# the embedded stack (drachtio itself would drop it silently after 64 s, §3.6)
_UNANSWERED_TIMEOUT = 32.0


def _ignore(method: str) -> None:
    pass


def _ignore_response(request: Any, status: int) -> None:
    pass


def encode(text: str) -> bytes:
    return text.encode("utf-8", "surrogateescape")


class DrachtioSipPort(TaskOwner):
    """The SIP port of ``SIP_BACKEND=drachtio`` (construct with :meth:`from_settings`).

    ``on_ready(up, reason)`` is told when the control connection becomes usable and
    when it is lost (the ``sip`` health dependency).
    """

    def __init__(self, host: str, port: int, secret: str, *, clock: Clock | None = None,
                 server_header: str | None = "DragonPBX", user_agent: str | None = "DragonPBX",
                 on_ready: Callable[[bool, str | None], None] | None = None,
                 **client_options: Any):
        self.clock: Clock = clock or LoopClock()
        self.server_header = server_header
        self.user_agent = user_agent
        self.on_ready = on_ready
        self.client = DrachtioClient(host, port, secret, verbs=(), on_sip=self._on_frame,
                                     on_connection_lost=self._on_connection_lost,
                                     on_ready=self._on_client_ready, **client_options)
        self.digest = DigestClient()
        self.ids = IdGenerator()
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[str, Handler] = {}
        self._invites: dict[str, DrachtioIncomingRequest] = {}  # txn → unanswered INVITE
        self._unanswered: dict[str, tuple[float, DrachtioIncomingRequest]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: Any = None
        self._closed = False
        self.dialogs = DrachtioDialogs(self)
        self.clients = ClientTable(self)
        # metrics hooks, as on the embedded ``EndpointCore`` (set by the HTTP API's
        # ``Metrics.attach_sip``; no-ops otherwise): new requests received, responses sent
        self.count_request: Callable[[str], None] = _ignore
        self.count_response: Callable[[Any, int], None] = _ignore_response

    @classmethod
    def from_settings(cls, settings: Any, clock: Clock | None = None,
                      **options: Any) -> DrachtioSipPort:
        """From DRACHTIO_HOST, DRACHTIO_PORT, DRACHTIO_SECRET."""
        return cls(settings.drachtio_host, settings.drachtio_port, settings.drachtio_secret,
                   clock=clock, **options)

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def address(self) -> str:
        return self.client.address

    @property
    def ready(self) -> bool:
        return self.client.ready

    @property
    def server(self) -> ServerInfo | None:
        """What the server said about itself at the last ``authenticate`` (None before)."""
        return self.client.server

    @property
    def routes_withdrawn(self) -> bool:
        return self.client.withdrawn

    async def withdraw_routes(self) -> None:
        """No new requests for this engine any more (draining, others take them); its own
        dialogs and transactions still reach it (``engine.drachtio.peers``)."""
        await self.client.withdraw_routes()

    async def restore_routes(self) -> None:
        await self.client.restore_routes()

    @property
    def port(self) -> int:
        """The server's SIP port (0 before the first connection)."""
        addrs = self.local_addresses()
        return addrs[0].port if addrs else 0

    async def start(self, timeout: float | None = None) -> bool:
        """Connect (in the background, retrying) and wait until connected and routed;
        False when ``timeout`` passed first (the client keeps trying)."""
        self.loop  # noqa: B018 - bind the loop
        self.client.start()
        if self._sweeper is None:
            self._sweeper = self.loop.call_later(_SWEEP_INTERVAL, self._sweep)
        return await self.client.wait_ready(timeout)

    async def close(self) -> None:
        """Close the control connection and cancel handler tasks. Live calls are not
        BYE'd (the daemon drains before closing)."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        await self.client.stop()
        log.info("drachtio backend stopped", drachtio=self.address)

    def local_addresses(self) -> list[Peer]:
        """The server's SIP listeners as it reported them at ``authenticate``."""
        server = self.client.server
        if server is None:
            return []
        return [Peer(host, port, proto) for proto, host, port in server.local_hostports]

    def contact_uri(self, *, transport: str = "udp", user: str | None = None) -> str:
        """The server's advertised SIP address (external address when it has one)."""
        server = self.client.server
        hostports = server.hostports if server is not None else ()
        wanted = transport.lower()
        match = next((hp for hp in hostports if hp[0] == wanted), None) or \
            next(iter(hostports), None)
        host, port = (match[1], match[2]) if match else ("localhost", 5060)
        host = f"[{host}]" if ":" in host else host
        uri = f"sip:{user + '@' if user else ''}{host}:{port}"
        return uri if wanted == "udp" else f"{uri};transport={wanted}"

    def _on_client_ready(self, epoch: int) -> None:
        if self.on_ready is not None:
            self.on_ready(True, None)

    def _on_connection_lost(self, epoch: int) -> None:
        if self.on_ready is not None:
            self.on_ready(False, f"connection to drachtio at {self.address} lost")
        # every pending request of the old connection is dead: it can never be answered.
        # An unanswered INVITE ends as if its caller had cancelled it (the machine then
        # cancels its B legs and cleans up); others are simply closed.
        invites, self._invites = self._invites, {}
        for ireq in invites.values():
            ireq.mark_cancelled()
        for _, req in self._unanswered.values():
            req.cancelled = req.final_sent = True
        self._unanswered.clear()
        self.clients.connection_lost()
        self.dialogs.connection_lost()

    # ------------------------------------------------------------------ SipPort

    def on_request(self, method: str, handler: Handler) -> None:
        """Route out-of-dialog requests of ``method`` to ``handler(req)`` (a task per
        request); the server is asked for them (``route``)."""
        method = method.upper()
        self._handlers[method] = handler
        verb = method.lower()
        if self.client.ready:
            self.spawn(self.client.add_verb(verb), "route")
        elif verb not in self.client.verbs:
            self.client.verbs = (*self.client.verbs, verb)

    async def request(
        self, uri: str, method: str, *, headers: Headers = (), body: bytes = b"",
        content_type: str | None = None, proxy: str | None = None,
        auth: Credentials | None = None, flow: str | None = None,
    ) -> Any:
        """A non-INVITE request outside a dialog; its final response (a local 408 on
        time-out, 503 when drachtio cannot send it). ``flow`` is ignored (drachtio)."""
        return await send_out_of_dialog(self, uri, method, headers, body, content_type,
                                        proxy, auth)

    def invite(
        self, uri: str, *, sdp: bytes | None, headers: Headers = (), proxy: str | None = None,
        auth: Credentials | None = None, flow: str | None = None,
        on_provisional: Callable[[Any], None] | None = None,
    ) -> Any:
        """Start an INVITE leg now and return it (``engine.drachtio.legs``)."""
        leg = DrachtioClientLeg(self, uri, sdp=sdp, headers=headers, proxy=proxy, auth=auth,
                                on_provisional=on_provisional)
        leg.start()
        return leg

    # ------------------------------------------------------------------ helpers

    def _answer_500(self, req: DrachtioIncomingRequest) -> None:
        self.spawn(req.reply(500), "500")

    def answered(self, req: DrachtioIncomingRequest) -> None:
        """A final response went out on ``req`` (bookkeeping)."""
        self._unanswered.pop(req.txn, None)
        if self._invites.get(req.txn) is req:
            del self._invites[req.txn]

    def respond_raw(self, txn: str, status: int, reason: str | None = None,
                    headers: list[tuple[str, str]] | None = None,
                    request: SipRequest | None = None) -> None:
        """Answer a received request directly (400, 420, 405, 481…), in the background."""
        if request is not None:
            text = response_text(request, status, reason, headers or [], b"", None,
                                 self.server_header)
        else:
            text = build_sip_message(f"SIP/2.0 {status} {reason or reason_phrase(status)}",
                                     headers or [])
        self.count_response(request, status)
        self.spawn(self._send_quietly(txn, text), f"{status}")

    async def _send_quietly(self, txn: str, text: str) -> None:
        try:
            await self.client.respond(txn, text)
        except DrachtioError as exc:
            log.debug("response not sent", error=str(exc))

    async def answer_invite(self, req: DrachtioIncomingRequest, status: int,
                            reason: str | None, items: list[tuple[str, str]], body: bytes,
                            content_type: str | None) -> Any:
        """2xx to an INVITE: the dialog is created from the server's echo (§4.3.1)."""
        return await self.dialogs.answer_invite(req, status, reason, items, body,
                                                content_type)

    # ------------------------------------------------------------------ frames

    def _on_frame(self, frame: SipFrame) -> None:
        msg = frame.message
        method = msg.method
        if method is None:  # a response
            self.clients.on_response(frame)
            return
        if frame.unsolicited:
            self.dialogs.on_unsolicited(frame)
            return
        if method == "ACK":
            self.dialogs.on_ack(frame)
            return
        # counted as the embedded transaction layer counts (ACKs and our own unsolicited
        # BYEs are no new transactions), including what drachtio answers by itself
        # (spec §5.7): 100 Trying to every INVITE, 200 + 487 to a caller's CANCEL
        self.count_request(method)
        if method == "INVITE":
            self.count_response(msg, 100)
        if method == "CANCEL":
            ireq = self._invites.get(frame.transaction_id)
            if ireq is not None:
                log.debug("INVITE cancelled by the caller", call_id=ireq.call_id)
                self.count_response(msg, 200)
                self.count_response(ireq.message, 487)
                ireq.mark_cancelled()
            return
        if frame.received_on is None and frame.dialog_id:
            self.dialogs.on_request(frame)
            return
        self._new_request(frame)

    def parse_request(self, frame: SipFrame) -> SipRequest | None:
        """The frame's request parsed and checked like the embedded stack checks it, or
        None after answering 400/416 (never raises)."""
        try:
            req = parse_message(encode(frame.message.text))
            if not isinstance(req, SipRequest):
                raise SipParseError("not a request")
            req.from_.uri  # noqa: B018 - what IncomingRequest.message promises
            req.to.uri  # noqa: B018
            req.cseq  # noqa: B018
            if req.request_uri.scheme not in _URI_SCHEMES:
                self.respond_raw(frame.transaction_id, 416, request=req)
                return None
        except SipParseError as exc:
            log.debug("malformed SIP request from drachtio", reason=exc.reason,
                      source=f"{frame.meta.address}:{frame.meta.port}")
            self.respond_raw(frame.transaction_id, exc.status if exc.status < 500 else 400,
                             exc.reason)
            return None
        return req

    @staticmethod
    def source_of(frame: SipFrame) -> Peer:
        meta = frame.meta
        return Peer(meta.address, meta.port or 0, meta.protocol or "udp")

    def _new_request(self, frame: SipFrame) -> None:
        txn = frame.transaction_id
        req = self.parse_request(frame)
        if req is None:
            return
        if req.has("require"):
            # as the embedded stack: no extension is supported (§8.2.2.3)
            self.respond_raw(txn, 420, None, [("Unsupported", ", ".join(
                req.header_lines("require")))], request=req)
            return
        handler = self._handlers.get(req.method)
        if handler is None:
            allow = ", ".join(dict.fromkeys(["ACK", "CANCEL", "BYE", *sorted(self._handlers)]))
            self.respond_raw(txn, 405, None, [("Allow", allow)], request=req)
            return
        ireq = DrachtioIncomingRequest(self, req, txn, self.source_of(frame))
        if req.method == "INVITE":
            self._invites[txn] = ireq
        else:
            self._unanswered[txn] = (self.clock.monotonic(), ireq)
        self.run_handler(handler, ireq)

    def track_unanswered(self, req: DrachtioIncomingRequest) -> None:
        """An in-dialog non-INVITE request: 408 if left unanswered (see ``_sweep``)."""
        self._unanswered[req.txn] = (self.clock.monotonic(), req)

    def track_invite(self, req: DrachtioIncomingRequest) -> None:
        self._invites[req.txn] = req

    def _sweep(self) -> None:
        try:
            self.clients.prune(self.clock.monotonic())
            limit = self.clock.monotonic() - _UNANSWERED_TIMEOUT
            stale = []
            for started, req in self._unanswered.values():
                if started > limit:
                    break  # insertion order = arrival order
                stale.append(req)
            for req in stale:
                log.warning("request left unanswered by the application: 408",
                            method=req.method, call_id=req.call_id)
                self._unanswered.pop(req.txn, None)
                self.spawn(req.reply(408), "408")
        except Exception:
            log.exception("SIP sweep failed")
        finally:
            if not self._closed:
                self._sweeper = self.loop.call_later(_SWEEP_INTERVAL, self._sweep)
