"""``EmbeddedDialog``: an INVITE dialog (either side) as ``engine.ports.Dialog``.

State (tags, CSeq, route set, remote target) is the pure
:class:`~engine.sip.dialog.SipDialog`; this class adds the I/O: sending
BYE/re-INVITE/other in-dialog requests, the ACK rules, the listeners for
received in-dialog requests and the ``connected`` flag.

Where in-dialog requests go: the Request-URI is the remote target (Contact)
or the route set per RFC 3261 §12.2.1.1. With a route set they go to its
first entry; without one they go to the address the dialog was set up with
(the source of the peer's INVITE, or where our INVITE went) — which is the
Contact's address for a directly reachable peer, and the only working
address for a peer behind NAT. Over TCP the dialog's connection (flow) is
reused while it is open.

A dialog ends (``connected`` False, removed from the port) on a BYE either
way, a 408/481 to one of our in-dialog requests, a missing ACK (64*T1) or a
transport failure of our 2xx. Except for a BYE we sent ourselves, the
``bye`` listener then hears of it: for a received BYE it gets the request
(already answered 200); otherwise a notification whose ``reason`` says why.
"""

from __future__ import annotations

import asyncio
import random

from engine.dialog_base import SDP, DialogBase, Listener, sdp_body
from engine.errors import SipError, SipTransportError
from engine.log import get_logger
from engine.ports import Credentials, Headers, Peer
from engine.sip.dialog import TERMINATED, SipDialog
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse
from engine.transport.client import RequestWaiter, local_response
from engine.transport.requests import EmbeddedIncomingRequest, has_header, header_items
from engine.transport.resolve import Target, target_of
from engine.transport.tu import TransactionUser

log = get_logger("engine.transport.dialog")

class EmbeddedDialog(DialogBase):
    """One INVITE dialog. Build it through the port (``answer()``/``invite()``)."""

    port: TransactionUser

    def __init__(self, port: TransactionUser, sip: SipDialog, *, peer: Peer | None,
                 flow: str | None, transport: str, auth: Credentials | None = None,
                 local_sdp: bytes | None = None, remote_sdp: bytes | None = None):
        self.port = port
        self.sip = sip
        self.peer = peer
        self.flow = flow
        self.transport = transport
        self.auth = auth
        self._init_base(local_sdp, remote_sdp)
        self._awaiting_ack: int | None = None  # tx of the INVITE whose 2xx awaits their ACK
        self.invite_tx: int | None = None  # UAC: our INVITE (the core re-sends its ACK)

    def __repr__(self) -> str:
        return f"<EmbeddedDialog {self.sip.role} {self.id} connected={self.connected}>"

    # ------------------------------------------------------------------ ports.Dialog

    @property
    def id(self) -> str:
        """``<Call-ID>;from-tag=<tag of the dialog-creating INVITE's From>``."""
        return self.sip.id

    @property
    def call_id(self) -> str:
        return self.sip.call_id

    @property
    def local_tag(self) -> str:
        return self.sip.local_tag

    @property
    def remote_tag(self) -> str:
        return self.sip.remote_tag

    @property
    def role(self) -> str:
        """``uac`` (we sent the INVITE) or ``uas``."""
        return self.sip.role

    async def ack(self, *, sdp: bytes | None = None) -> None:
        """UAC late offer only: send the ACK for the 2xx, carrying the answer ``sdp``.
        Must come within 64*T1 of the 2xx, else the port ACKs without a body and
        BYEs. A no-op for dialogs the stack has already ACKed."""
        handle, self._late_ack = self._late_ack, None
        if handle is None:
            log.debug("ack() ignored: nothing to acknowledge", dialog=self.id)
            return
        handle.cancel()
        if sdp:
            self.local_sdp = sdp
        self.send_invite_ack(sdp)

    async def bye(self, *, headers: Headers = ()) -> None:
        """End the dialog: send BYE and wait for its final response (or the time-out).
        Never raises (failures are logged); a second call does nothing. The ``bye``
        listener is not called for our own BYE."""
        if not self.connected:
            return
        items = header_items(headers)
        self.end("BYE sent", notify=False)
        await self._send_bye(self.sip.create_request("BYE", headers=items))

    async def reinvite(self, *, sdp: bytes | None, headers: Headers = ()) -> SipResponse:
        """Send a re-INVITE (``sdp`` None: an offerless one; the 2xx's offer is then
        answered in the ACK with the current local SDP) and return the final response.
        A 2xx is ACKed and updates ``local_sdp``/``remote_sdp``. Re-INVITEs of this
        dialog are sent one at a time (callers queue). A dialog that has ended gets a
        local 481; no answer within 64*T1 gives a local 408 (and ends the dialog)."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            req = self.sip.create_request(
                "INVITE", headers=header_items(headers), body=sdp or b"",
                content_type=SDP if sdp else None)
            if not self.connected:
                return local_response(req, 481)
            waiter, resp = await self._transact(req)
            if 200 <= resp.status < 300:
                self._apply(waiter.request, resp)
                self._reinvite_accepted(sdp, resp)
                answer = None if sdp else self.local_sdp
                ack = self.sip.create_ack(waiter.request.cseq.seq, body=answer or b"",
                                          content_type=SDP if answer else None)
                self.port.send_ack(ack, waiter.dest, waiter.tx, self.flow)
            else:
                self._after_response(waiter.request, resp)
            return resp

    async def request(self, method: str, *, headers: Headers = (), body: bytes = b"",
                      content_type: str | None = None) -> SipResponse:
        """Send an in-dialog INFO, REFER, NOTIFY, UPDATE, OPTIONS or MESSAGE and return
        its final response (401/407 answered once with the dialog's credentials; local
        408 on time-out, local 503 on transport failure, local 481 once the dialog has
        ended). A 408/481 from the peer ends the dialog. A 2xx to an UPDATE with SDP
        updates ``local_sdp``/``remote_sdp``."""
        method = method.upper()
        if method in ("INVITE", "ACK", "CANCEL", "BYE"):
            raise ValueError(f"use reinvite()/bye() for {method}")
        if content_type is None and body[:2] == b"v=":
            content_type = SDP
        req = self.sip.create_request(method, headers=header_items(headers), body=body,
                                      content_type=content_type)
        if not self.connected:
            return local_response(req, 481)
        waiter, resp = await self._transact(req)
        self._after_response(waiter.request, resp)
        self._update_accepted(method, resp.status, body, content_type, resp)
        return resp

    # ------------------------------------------------------------------ sending

    def _retry_cseq(self) -> int:
        return self.sip.next_cseq()

    async def _transact(self, req: SipRequest) -> tuple[RequestWaiter, SipResponse]:
        try:
            dest = await self.dest()
        except Exception as exc:  # an unresolvable route: as a transport failure
            log.info("in-dialog request not sent", dialog=self.id, method=req.method,
                     error=str(exc))
            return RequestWaiter(self.port, req, Peer("", 0)), local_response(req, 503)
        waiter = RequestWaiter(self.port, req, dest, self.flow, self.auth,
                               next_cseq=self._retry_cseq)
        resp = await waiter.start()
        return waiter, resp

    def _apply(self, req: SipRequest, resp: SipResponse) -> None:
        """Dialog state from a response (a 2xx's Contact refreshes the target)."""
        try:
            self.sip.receive_response(req, resp)
        except SipParseError as exc:  # a bad Contact: keep the old target
            log.info("bad header in an in-dialog response", dialog=self.id, error=exc.reason)

    def _after_response(self, req: SipRequest, resp: SipResponse) -> None:
        self._apply(req, resp)
        if resp.status in (408, 481) and req.method != "BYE":
            self.end(f"{resp.status} {resp.reason}".strip())

    async def _send_bye(self, bye: SipRequest) -> None:
        try:
            _, resp = await self._transact(bye)
            log.debug("BYE answered", dialog=self.id, status=resp.status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("BYE failed", dialog=self.id)

    def send_invite_ack(self, sdp: bytes | None = None) -> None:
        """UAC: ACK the 2xx of our INVITE (the core re-sends it if the 2xx repeats)."""
        ack = self.sip.create_ack(body=sdp or b"", content_type=SDP if sdp else None)
        try:
            dest = self.dest_now()
        except SipTransportError as exc:
            log.info("ACK not sent", dialog=self.id, error=str(exc))
            return
        if dest is not None:
            self.port.send_ack(ack, dest, self.invite_tx, self.flow)
            return

        async def resolve_and_send() -> None:
            try:
                dest = await self.dest()
            except SipTransportError as exc:
                log.info("ACK not sent", dialog=self.id, error=str(exc))
                return
            self.port.send_ack(ack, dest, self.invite_tx, self.flow)

        self.port.spawn(resolve_and_send(), "ACK")

    def _target(self) -> Target | None:
        """The next hop to resolve, or None to use ``peer``. Raises
        ``SipTransportError`` when the route/remote target is no usable SIP URI."""
        sd = self.sip
        if not (sd.route_set or self.peer is None
                or (self.transport != "udp" and not self.port.flow_alive(self.flow))):
            return None
        try:
            return target_of(sd.next_hop(), self.transport)
        except (ValueError, SipParseError) as exc:
            raise SipTransportError(f"no usable next hop: {exc}") from exc

    def dest_now(self) -> Peer | None:
        """Where the next in-dialog request goes, if known without a DNS lookup
        (raises ``SipTransportError`` for an unusable next hop)."""
        target = self._target()
        if target is None:
            return self.peer
        return self.port.resolver.resolve_now(target)

    async def dest(self) -> Peer:
        """Where the next in-dialog request goes (resolving a name if needed)."""
        target = self._target()
        if target is None:
            assert self.peer is not None
            return self.peer
        return await self.port.resolver.resolve(target)

    # ------------------------------------------------------------------ ending

    # ------------------------------------------------------------------ DialogBase hooks

    @property
    def log_ids(self) -> dict[str, str]:
        return {"dialog": self.id}

    def _send_final(self, req: EmbeddedIncomingRequest, status: int, *, body: bytes = b"",
                    content_type: str | None = None, headers: Headers = ()) -> None:
        req.send_response(status, body=body, content_type=content_type, headers=headers)

    def _answer_reinvite(self, req: EmbeddedIncomingRequest) -> None:
        self.port.answer_invite(req, 200, None, [], self.local_sdp or b"",
                                SDP if self.local_sdp else None)

    def _reinvite_refused(self, req: EmbeddedIncomingRequest) -> bool:
        prev = self._reinvite_in
        if (prev is not None and not prev.final_sent) or self._awaiting_ack is not None:
            # §14.2: an earlier INVITE of theirs is not finished yet
            req.send_response(500, headers=[("Retry-After", str(random.randint(0, 10)))])
            return True
        return False

    def _track_invite(self, req: EmbeddedIncomingRequest) -> None:
        self.port.track_invite(req)

    def _leave_port(self) -> None:
        self.sip.state = TERMINATED
        self.port.remove_dialog(self)

    def _send_late_ack(self) -> None:
        self.send_invite_ack(None)

    def _ended(self, reason: str, bye: bool, listener: Listener | None,
               message: SipRequest | None) -> None:
        if not (bye or listener is not None):
            return
        # the BYE we send, or (for the notification's ``message``) one we would send
        bye_req = self.sip.create_request(
            "BYE", headers=[("Reason", f'SIP;cause=200;text="{reason}"')] if bye else ())
        if bye:
            self.port.spawn(self._send_bye(bye_req), "BYE")
        if listener is not None:
            notice = EmbeddedIncomingRequest(self.port, bye_req, None, self.peer or Peer(
                "", 0, self.transport), self.flow, dialog=self, reason=reason)
            self.port.safe_call(listener, "bye", notice)

    # ------------------------------------------------------------------ received requests

    def invite_answered(self, req: EmbeddedIncomingRequest, body: bytes) -> None:
        """We sent a 2xx to the peer's INVITE ``req`` (initial or re-INVITE)."""
        super().invite_answered(req, body)
        self._awaiting_ack = req.tx

    def on_ack(self, ack: SipRequest, source: Peer, flow: str | None) -> None:
        """The peer's ACK for our 2xx (a late offer's answer may ride on it)."""
        self._awaiting_ack = None
        answer = sdp_body(ack)
        if answer is not None:
            self.remote_sdp = answer
        cb = self._listeners.get("ack")
        if cb is not None:
            self.port.safe_call(cb, "ack", EmbeddedIncomingRequest(
                self.port, ack, None, source, flow, dialog=self))

    def on_ack_timeout(self, tx: int) -> None:
        """No ACK for our 2xx within 64*T1: BYE the peer and end (RFC 3261 §13.3.1.4)."""
        if self._awaiting_ack == tx:
            self._awaiting_ack = None
            self.end("ACK timeout", bye=True)

    def on_transport_failure(self, tx: int, reason: str) -> None:
        """Our 2xx could not be sent: the peer will never ACK."""
        if self._awaiting_ack == tx:
            self._awaiting_ack = None
            self.end(f"transport failure: {reason}")

    def expect_late_ack(self, invite_tx: int) -> None:
        """UAC late offer: the 2xx carried the offer; the application ACKs with
        ``ack(sdp=…)`` within 64*T1, or the port ACKs without a body and BYEs."""
        self.invite_tx = invite_tx
        self._late_ack = self.port.clock.call_later(self.port.timers.timeout,
                                                    self._late_ack_expired)

    def stop_timers(self) -> None:
        """The port is closing: no timer of ours may fire afterwards."""
        if self._late_ack is not None:
            self._late_ack.cancel()
            self._late_ack = None



def answer_invite(port: TransactionUser, req: EmbeddedIncomingRequest, status: int,
                  reason: str | None, items: list[tuple[str, str]], body: bytes,
                  content_type: str | None) -> EmbeddedDialog | None:
    """Send a 2xx to an INVITE and create (or, for a re-INVITE, update) its dialog.
    None if nothing was sent (already answered / cancelled)."""
    if req.final_sent:
        return None
    dialog = req.dialog
    if dialog is not None:  # a re-INVITE
        if not has_header(items, "contact", "m") and dialog.sip.local_contact:
            items.append(("Contact", dialog.sip.local_contact))
        if req.transmit(status, reason, items, body, content_type) is None:
            return None
        dialog.invite_answered(req, body)
        return dialog
    msg = req.message
    try:
        usable = bool(msg.contacts) and bool(msg.from_tag)
    except SipParseError:
        usable = False
    if not usable:  # a dialog needs their Contact (remote target) and From tag
        req.transmit(400, "Missing Contact or From tag", [], b"", None)
        raise SipError(400, "INVITE without a usable Contact or From tag")
    if not has_header(items, "contact", "m"):
        contact = port.local_contact(req.source.transport, req.source.host, req.flow)
        items.append(("Contact", f"<{contact}>"))
    resp = req.transmit(status, reason, items, body, content_type)
    if resp is None:
        return None
    dialog = EmbeddedDialog(port, SipDialog.from_uas(msg, resp), peer=req.source,
                            flow=req.flow, transport=req.source.transport)
    req.dialog = dialog
    port.add_dialog(dialog)
    dialog.invite_answered(req, body)
    return dialog
