"""``EmbeddedClientLeg``: one outgoing INVITE (``engine.ports.ClientLeg``).

The leg is sent at once (after a DNS lookup if the next hop is a name).
Provisional responses above 100 go to ``on_provisional``; the first 2xx
creates the dialog and is ACKed at once (late offer: the application ACKs
with the answer, see :meth:`EmbeddedDialog.ack`); a 2xx from another fork, or
one that crosses our CANCEL, is ACKed and BYE'd. A 401/407 is answered once
when credentials were given. ``result()`` resolves with the dialog or raises
``SipError(status, reason, response)``: the failure response, 408 when no
final response came (timer B), 487 after a CANCEL, 503 on a transport/DNS
failure (``response`` None for local failures).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any

from engine.errors import SipError, SipTransportError
from engine.log import get_logger
from engine.ports import Credentials, Peer, SipResponseView
from engine.sip.dialog import SipDialog
from engine.sip.errors import SipParseError
from engine.sip.headers import header_key
from engine.sip.message import SipRequest
from engine.sip.message import SipResponse as Response
from engine.sip.uri import parse_name_addr
from engine.transport.dialogs import EmbeddedDialog, sdp_body
from engine.transport.resolve import Target
from engine.transport.tu import TransactionUser
from engine.transport.uac import build_request, choose_target

log = get_logger("engine.transport.leg")


def _consume(fut: asyncio.Future[Any]) -> None:
    """Nobody may ever await a cancelled leg's result: do not warn about it."""
    if not fut.cancelled():
        fut.exception()


def ack_and_bye(port: TransactionUser, request: SipRequest | None, response: Response,
                invite_tx: int | None, dest: Peer | None, flow: str | None, reason: str,
                transport: str = "udp") -> None:
    """ACK a 2xx we do not want (a second fork, a CANCEL race, a stray one) and
    BYE the dialog it created. ``request`` None: rebuild what is needed from the
    response (its Contact is the target)."""
    try:
        if request is None:
            contacts = response.contacts
            if not contacts:
                # the leg's own Call-ID: a stray 2xx belongs to no call we know
                log.info("unwanted 2xx without Contact: cannot ACK",
                         leg_call_id=response.call_id)
                return
            request = SipRequest("INVITE", contacts[0].uri_text)
            request.headers = [("From", response.header("from") or ""),
                               ("To", response.header("to") or ""),
                               ("Call-ID", response.call_id),
                               ("CSeq", f"{response.cseq.seq} INVITE")]
        sd = SipDialog.from_uac(request, response)
    except SipParseError as exc:
        log.info("unwanted 2xx not ACKed", leg_call_id=response.call_id, error=exc.reason)
        return
    dialog = EmbeddedDialog(port, sd, peer=dest, flow=flow, transport=transport)
    dialog.invite_tx = invite_tx
    dialog.send_invite_ack(None)
    dialog.end(reason, bye=True, notify=False)


class EmbeddedClientLeg:
    """An outgoing INVITE in progress. Create through :meth:`EmbeddedSipPort.invite`."""

    def __init__(self, port: TransactionUser, uri: str, *, sdp: bytes | None,
                 items: list[tuple[str, str]], proxy: str | None, auth: Credentials | None,
                 flow: str | None, on_provisional: Callable[[SipResponseView], None] | None):
        self.port = port
        self.uri = uri
        self.sdp = sdp
        self.auth = auth
        self.flow = flow
        self.on_provisional = on_provisional
        self._items = items
        self._proxy = proxy
        self._future: asyncio.Future[EmbeddedDialog] = port.loop.create_future()
        self._future.add_done_callback(_consume)
        self.request: SipRequest | None = None
        self.dest: Peer | None = None
        self.tx: int | None = None
        self.dialog: EmbeddedDialog | None = None
        self._cancel: list[tuple[str, str]] | None = None
        self._retried = False
        self.responded = False  # engine.ports.ClientLeg.responded
        # the call's (A leg's) Call-ID, set by the action that sent this leg: log lines
        # carry it as ``call_id`` (as machine lines do), this leg's own as ``leg_call_id``
        self.a_call_id: str | None = None
        given = {header_key(n): v for n, v in items}
        self._call_id = given.get("call-id") or port.ids.call_id()
        tag = None
        if "from" in given:
            try:
                tag = parse_name_addr(given["from"]).tag
            except SipParseError as exc:
                raise ValueError(f"bad From header: {exc}") from exc
        self._from_tag = tag or port.ids.tag()

    def __repr__(self) -> str:
        return f"<EmbeddedClientLeg {self.uri} call_id={self._call_id}>"

    def _ids(self) -> dict[str, str]:
        """Log fields: the call's Call-ID and this leg's."""
        return {"call_id": self.a_call_id or self._call_id, "leg_call_id": self._call_id}

    # ------------------------------------------------------------------ ports.ClientLeg

    @property
    def call_id(self) -> str:
        return self._call_id

    @property
    def from_tag(self) -> str:
        return self._from_tag

    def result(self) -> asyncio.Future[EmbeddedDialog]:
        """Resolves with the dialog on 2xx (already ACKed, except late offer), or
        raises ``SipError`` (see the module docstring)."""
        return self._future

    async def cancel(self, *, headers: Any = ()) -> None:
        """CANCEL the INVITE if no final response came yet (held by the stack until a
        provisional response arrives, as RFC 3261 §9.1 wants); ``result()`` then
        raises ``SipError(487)``. If it was answered already, the dialog is BYE'd."""
        from engine.transport.requests import header_items

        if self.dialog is not None:
            await self.dialog.bye(headers=headers)
            return
        if self._future.done() or self._cancel is not None:
            return
        self._cancel = header_items(headers)
        if self.tx is None:  # still resolving: it will not be sent
            self._fail(SipError(487, "Request Terminated"))
            return
        try:
            self.port.cancel_request(self.tx, self._cancel)
        except Exception as exc:  # the transaction is already gone
            log.debug("CANCEL not sent", **self._ids(), error=str(exc))

    # ------------------------------------------------------------------ sending

    def start(self) -> None:
        try:
            target = choose_target(self.port, self.uri, self._proxy, self.flow, self._items)
        except ValueError as exc:
            self._fail(SipError(400, f"Bad Request-URI or proxy: {exc}"))
            return
        peer = self.port.resolver.resolve_now(target)
        if peer is not None:
            self._send(peer)
        else:
            self.port.spawn(self._resolve_and_send(target), "INVITE")

    async def _resolve_and_send(self, target: Target) -> None:
        try:
            peer = await self.port.resolver.resolve(target)
        except SipTransportError as exc:
            self._fail(SipError(503, f"Service Unavailable ({exc})"))
            return
        self._send(peer)

    def _send(self, peer: Peer) -> None:
        if self._cancel is not None or self._future.done():
            self._fail(SipError(487, "Request Terminated"))
            return
        try:
            req = build_request(self.port, "INVITE", self.uri, self._items, self.sdp or b"",
                                "application/sdp" if self.sdp else None, peer, self.flow,
                                call_id=self._call_id, from_tag=self._from_tag, contact=True)
        except (SipParseError, ValueError) as exc:
            self._fail(SipError(400, f"Bad Request ({exc})"))
            return
        self.request = req
        self.dest = peer
        self.tx = self.port.send_request(req, peer, self.flow, self)

    def _fail(self, exc: SipError) -> None:
        if not self._future.done():
            log.debug("INVITE failed", **self._ids(), status=exc.status, reason=exc.reason)
            self.on_provisional = None  # see on_response
            self._future.set_exception(exc)

    # ------------------------------------------------------------------ ClientUser

    def on_response(self, tx: int, response: Response, retransmission: bool) -> None:
        if tx != self.tx:
            return  # the transaction before an authenticated retry
        self.responded = True
        status = response.status
        if status < 200:
            if status > 100 and self.on_provisional is not None and not self._future.done():
                self.port.safe_call(self.on_provisional, "on_provisional", response)
            return
        if status < 300:
            self._on_2xx(response)
            return
        if self._future.done():
            return
        if (status in (401, 407) and self.auth is not None and not self._retried
                and self._cancel is None and self.request is not None and self.dest is not None):
            retry = self.port.authorized_copy(self.request, response, self.auth,
                                              self.request.cseq.seq + 1)
            if retry is not None:
                self._retried = True
                self.request = retry
                self.tx = self.port.send_request(retry, self.dest, self.flow, self)
                return
        self._fail(SipError(status, response.reason, response))

    def _on_2xx(self, response: Response) -> None:
        assert self.request is not None and self.dest is not None
        port = self.port
        tag = response.to_tag or ""
        if self.dialog is not None and tag == self.dialog.remote_tag:
            return  # a repeat of our 2xx before the (late) ACK
        if self.dialog is not None or self._future.done():
            # another fork answered, or we gave up (CANCEL race): ACK and BYE it
            port.ack_and_bye(self.request, response, self.tx, self.dest, self.flow,
                             "2xx of an unwanted fork", self.dest.transport)
            return
        try:
            sd = SipDialog.from_uac(self.request, response)
        except SipParseError as exc:
            self._fail(SipError(502, f"Bad 2xx: {exc.reason}", response))
            return
        flow = self.flow
        if flow is None and self.dest.transport == "tcp":
            flow = port.tcp_flow_to(self.dest.host, self.dest.port)  # keep using it
        dialog = EmbeddedDialog(port, sd, peer=self.dest, flow=flow,
                                transport=self.dest.transport, auth=self.auth,
                                local_sdp=self.sdp, remote_sdp=sdp_body(response))
        dialog.invite_tx = self.tx
        if self._cancel is not None:  # the 2xx crossed our CANCEL
            dialog.send_invite_ack(None)
            dialog.end("CANCEL crossed the 2xx", bye=True, notify=False)
            self._fail(SipError(487, "Request Terminated", response))
            return
        self.dialog = dialog
        port.add_dialog(dialog)
        if self.sdp is None:
            assert self.tx is not None
            dialog.expect_late_ack(self.tx)
        else:
            dialog.send_invite_ack(None)
        # No provisional response is delivered after the final one. The callback closes
        # over the calling machine instance, and this leg stays in the port's tables for
        # the transaction's 64*T1 after the 2xx: holding it would keep each ended call
        # (instance, trace, SDP) alive for 32 s more.
        self.on_provisional = None
        self._future.set_result(dialog)

    def on_timeout(self, tx: int, timer: str) -> None:
        if tx == self.tx:
            if timer == "cancel":
                self._fail(SipError(487, "Request Terminated"))
            else:
                self._fail(SipError(408, "Request Timeout"))

    def on_transport_failure(self, tx: int, reason: str) -> None:
        if tx == self.tx:
            self._fail(SipError(503, f"Service Unavailable ({reason})"))

    def on_terminated(self, tx: int) -> None:
        if tx == self.tx:
            self._fail(SipError(408, "Request Timeout"))
