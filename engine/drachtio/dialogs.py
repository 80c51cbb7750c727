"""INVITE dialogs over drachtio (``engine.ports.Dialog``) and the table that routes
in-dialog frames to them by dialog id (``<Call-ID>;from-tag=<tag of the INVITE's
From>``, spec §5.1).

The server keeps the dialog state (tags, CSeq, route set, remote target): our
in-dialog requests go out as ``sip||<dialog id>`` with ``sip:placeholder`` as the
Request-URI and the server fills in the rest (§4.3.3). We ACK the 2xx of our own
INVITEs and re-INVITEs; the server ACKs non-2xx finals and BYEs a dialog whose 2xx
was never ACKed, telling us with an ``unsolicited`` BYE (§5.2 item 5).

A dialog ends on a BYE either way, a 408/481 to one of our in-dialog requests, an
``unsolicited`` BYE, or the loss of the drachtio connection (its dialogs are dead:
the server answers their requests 481, §3.6). Except for our own BYE, the ``bye``
listener hears of it, so the machines clean up (media, Redis, StatusHook).
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING, Any

from engine.dialog_base import SDP, DialogBase, Listener, sdp_body
from engine.drachtio.legs import local_response, parse_response, transact
from engine.drachtio.requests import DrachtioIncomingRequest
from engine.drachtio.sip_text import build_sip_message
from engine.drachtio.wire import SipFrame
from engine.errors import SipError
from engine.log import get_logger
from engine.ports import Credentials, Headers, Peer
from engine.sip.errors import SipParseError
from engine.sip.message import SipMessage, SipRequest, SipResponse
from engine.sip.parser import parse_message as parse_sip
from engine.sip.uri import parse_name_addr
from engine.transport.requests import header_items

if TYPE_CHECKING:
    from engine.drachtio.port import DrachtioSipPort

log = get_logger("engine.drachtio.dialogs")

_LATE_ACK_TIMEOUT = 32.0  # 64*T1, as the embedded stack
_DROPPED = frozenset({"via", "content-length", "route", "record-route", "rseq"})


def _tag(value: str | None) -> str:
    try:
        return (parse_name_addr(value).tag or "") if value else ""
    except SipParseError:
        return ""


def in_dialog_text(method: str, items: list[tuple[str, str]], body: bytes,
                   content_type: str | None) -> str:
    headers = [(n, v) for n, v in items if n.lower() not in _DROPPED]
    if body and content_type and not any(n.lower() in ("content-type", "c")
                                         for n, _ in headers):
        headers.append(("Content-Type", content_type))
    return build_sip_message(f"{method} sip:placeholder SIP/2.0", headers, body)


class DrachtioDialog(DialogBase):
    """One INVITE dialog (either side) kept by drachtio under ``id``."""

    port: DrachtioSipPort

    def __init__(self, port: DrachtioSipPort, dialog_id: str, call_id: str, *,
                 local_tag: str, remote_tag: str, role: str, peer: Peer | None = None,
                 auth: Credentials | None = None, local_sdp: bytes | None = None,
                 remote_sdp: bytes | None = None):
        self.port = port
        self.id = dialog_id
        self.call_id = call_id
        self.local_tag = local_tag
        self.remote_tag = remote_tag
        self.role = role
        self.peer = peer
        self.auth = auth
        self._init_base(local_sdp, remote_sdp)
        #: the call's (A leg's) Call-ID for a B leg's dialog (log lines: ``call_id`` is the
        #: call's, ``leg_call_id`` the leg's, as for the leg itself)
        self.a_call_id: str | None = None
        self._unheard_ack: DrachtioIncomingRequest | None = None  # see on_ack
        self._acked = False

    @property
    def log_ids(self) -> dict[str, str]:
        ids = {"dialog": self.id, "call_id": self.a_call_id or self.call_id}
        if self.a_call_id and self.a_call_id != self.call_id:
            ids["leg_call_id"] = self.call_id
        return ids

    def __repr__(self) -> str:
        return f"<DrachtioDialog {self.role} {self.id} connected={self.connected}>"

    @classmethod
    def from_uac(cls, port: DrachtioSipPort, dialog_id: str, request: SipRequest,
                 response: SipResponse, sdp: bytes | None, auth: Credentials | None,
                 a_call_id: str | None = None) -> DrachtioDialog:
        from_tag = request.from_tag or ""
        dialog = cls(port, dialog_id or f"{request.call_id};from-tag={from_tag}",
                     request.call_id, local_tag=from_tag, remote_tag=response.to_tag or "",
                     role="uac", auth=auth, local_sdp=sdp, remote_sdp=sdp_body(response))
        dialog.a_call_id = a_call_id
        port.dialogs.add(dialog)
        return dialog

    # ------------------------------------------------------------------ ports.Dialog

    def on(self, event: str, callback: Listener) -> None:
        super().on(event, callback)
        if event == "ack" and self._unheard_ack is not None and self.connected:
            notice, self._unheard_ack = self._unheard_ack, None
            self.port.loop.call_soon(self.port.safe_call, callback, "ack", notice)

    async def ack(self, *, sdp: bytes | None = None) -> None:
        """UAC late offer: the ACK for the 2xx, carrying the answer ``sdp``."""
        handle, self._late_ack = self._late_ack, None
        if handle is None:
            log.debug("ack() ignored: nothing to acknowledge", **self.log_ids)
            return
        handle.cancel()
        if sdp:
            self.local_sdp = sdp
        self.send_ack(sdp)

    def send_ack(self, sdp: bytes | None) -> None:
        """Write the ACK now (so that a BYE sent next goes after it)."""
        text = in_dialog_text("ACK", [], sdp or b"", SDP if sdp else None)
        try:
            future = self.port.client.submit_sip(text, dialog_id=self.id)
        except Exception as exc:  # an ACK that cannot go is only logged
            log.info("ACK not sent", **self.log_ids, error=str(exc))
            return
        future.add_done_callback(self._ack_sent)

    def _ack_sent(self, future: Any) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None or not future.result()[-1].ok:
            log.info("ACK not sent", **self.log_ids,
                     error=str(exc) if exc else future.result()[-1].reason)

    def expect_late_ack(self) -> None:
        self._late_ack = self.port.clock.call_later(_LATE_ACK_TIMEOUT, self._late_ack_expired)

    async def bye(self, *, headers: Headers = ()) -> None:
        """Send BYE and wait for its final response; never raises; once only."""
        if not self.connected:
            return
        self.end("BYE sent", notify=False)
        await self._send_bye(header_items(headers))

    async def _send_bye(self, items: list[tuple[str, str]]) -> None:
        try:
            response = await self._transact(in_dialog_text("BYE", items, b"", None))
            log.debug("BYE answered", **self.log_ids, status=response.status)
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("BYE failed", **self.log_ids)

    async def reinvite(self, *, sdp: bytes | None, headers: Headers = ()) -> SipResponse:
        """Send a re-INVITE, ACK a 2xx (with our SDP when it was offerless), return the
        final response; one at a time."""
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            if not self.connected:
                return local_response(481)
            text = in_dialog_text("INVITE", header_items(headers), sdp or b"",
                                  SDP if sdp else None)
            response = await self._transact(text)
            if 200 <= response.status < 300:
                self._reinvite_accepted(sdp, response)
                self.send_ack(None if sdp else self.local_sdp)
            elif response.status in (408, 481):
                self.end(f"{response.status} {response.reason}".strip())
            return response

    async def request(self, method: str, *, headers: Headers = (), body: bytes = b"",
                      content_type: str | None = None) -> SipResponse:
        """An in-dialog INFO, REFER, NOTIFY, UPDATE, OPTIONS or MESSAGE."""
        method = method.upper()
        if method in ("INVITE", "ACK", "CANCEL", "BYE"):
            raise ValueError(f"use reinvite()/bye() for {method}")
        if content_type is None and body[:2] == b"v=":
            content_type = SDP
        if not self.connected:
            return local_response(481)
        response = await self._transact(in_dialog_text(method, header_items(headers), body,
                                                       content_type))
        if response.status in (408, 481):
            self.end(f"{response.status} {response.reason}".strip())
        self._update_accepted(method, response.status, body, content_type, response)
        return response

    async def _transact(self, text: str) -> SipResponse:
        """Send an in-dialog request and return its final response; a 401/407 is
        answered once with the dialog's credentials, as the embedded stack does."""
        sent: list[Any] = []
        response = await self._send(text, sent)
        if response.status not in (401, 407) or self.auth is None or not sent:
            return response
        retry = self._authorized(text, sent[0], response)
        return response if retry is None else await self._send(retry, [])

    async def _send(self, text: str, sent: list[Any]) -> SipResponse:
        """One in-dialog transaction; ``sent`` receives the request as drachtio sent it
        (with the remote target and CSeq it filled in)."""
        frame, status, why = await transact(self.port, text, dialog_id=self.id,
                                            on_sent=lambda _txn, msg: sent.append(msg))
        if frame is None:
            log.info("in-dialog request failed", **self.log_ids, status=status, error=why)
            return local_response(status)
        return parse_response(frame) or local_response(502, "Bad response")

    def _authorized(self, text: str, echoed: Any, challenge: SipResponse) -> str | None:
        """``text`` again with the digest answer to ``challenge``, or None. The digest
        covers the Request-URI drachtio put in place of ``sip:placeholder`` (the echo of
        the request as sent); the retry gets the same one, and drachtio numbers its
        CSeq."""
        assert self.auth is not None
        method = text.split(" ", 1)[0]
        try:
            sent = parse_sip(echoed.text.encode("utf-8", "surrogateescape"))
            if not isinstance(sent, SipRequest):
                raise SipParseError("the echo is not a request")
            creds = self.port.digest.answer(challenge, sent, username=self.auth.username,
                                            password=self.auth.password)
        except (SipParseError, AttributeError) as exc:
            log.info("challenge to an in-dialog request not answered", **self.log_ids,
                     method=method, status=challenge.status, error=str(exc))
            return None
        if not creds:
            return None
        log.debug("answering digest challenge", **self.log_ids, method=method,
                  status=challenge.status)
        start, rest = text.split("\r\n", 1)
        lines = "".join(f"{name}: {value}\r\n" for name, value in creds)
        return f"{start}\r\n{lines}{rest}"

    # ------------------------------------------------------------------ ending

    # ------------------------------------------------------------------ DialogBase hooks

    def _send_final(self, req: DrachtioIncomingRequest, status: int, *, body: bytes = b"",
                    content_type: str | None = None, headers: Headers = ()) -> None:
        self.port.spawn(req.reply(status, body=body, content_type=content_type,
                                  headers=headers), str(status))

    def _answer_reinvite(self, req: DrachtioIncomingRequest) -> None:
        self._send_final(req, 200, body=self.local_sdp or b"",
                         content_type=SDP if self.local_sdp else None)

    def _track_invite(self, req: DrachtioIncomingRequest) -> None:
        self.port.track_invite(req)

    def _in_dialog(self, req: DrachtioIncomingRequest) -> None:
        self.port.track_unanswered(req)  # drachtio does not answer it for us (408)

    def _leave_port(self) -> None:
        self.port.dialogs.remove(self)

    def _send_late_ack(self) -> None:
        self.send_ack(None)

    def _ended(self, reason: str, bye: bool, listener: Listener | None,
               message: SipRequest | None) -> None:
        if bye:
            self.port.spawn(self._send_bye(
                [("Reason", f'SIP;cause=200;text="{reason}"')]), "BYE")
        if listener is not None:
            notice = message or SipRequest("BYE", "sip:placeholder", [
                ("Call-ID", self.call_id), ("Reason", f'SIP;cause=200;text="{reason}"')])
            self.port.safe_call(listener, "bye", DrachtioIncomingRequest(
                self.port, notice, "", self.peer or Peer("", 0), dialog=self, reason=reason))

    def forget(self, reason: str) -> None:
        """Drop the dialog silently (the server ends it by itself)."""
        self.end(reason, notify=False)

    def on_ack(self, frame: SipFrame, ack: SipMessage | None) -> None:
        if ack is not None:
            answer = sdp_body(ack)
            if answer is not None:
                self.remote_sdp = answer
        if not isinstance(ack, SipRequest):
            return
        notice = DrachtioIncomingRequest(self.port, ack, "", self.port.source_of(frame),
                                         dialog=self)
        first, self._acked = not self._acked, True
        cb = self._listeners.get("ack")
        if cb is None:
            # the caller's first ACK can come in the same TCP read as drachtio's confirmation
            # of our 200, i.e. before answer() returned and its caller could listen for it
            # (a late offer's answer is in it): kept for the listener that comes next
            self._unheard_ack = notice if first else None
            return
        self.port.safe_call(cb, "ack", notice)


class DrachtioDialogs:
    """The port's dialogs by drachtio dialog id."""

    def __init__(self, port: DrachtioSipPort):
        self.port = port
        self.by_id: dict[str, DrachtioDialog] = {}

    def add(self, dialog: DrachtioDialog) -> None:
        self.by_id[dialog.id] = dialog

    def remove(self, dialog: DrachtioDialog) -> None:
        if self.by_id.get(dialog.id) is dialog:
            del self.by_id[dialog.id]

    def on_request(self, frame: SipFrame) -> None:
        req = self.port.parse_request(frame)
        if req is None:
            return
        dialog = self.by_id.get(frame.dialog_id)
        if dialog is None:
            # copy the request's CSeq: an early UPDATE carries its INVITE's txn (§5.6)
            self.port.respond_raw(frame.transaction_id, 481, request=req)
            return
        dialog.receive(DrachtioIncomingRequest(self.port, req, frame.transaction_id,
                                               self.port.source_of(frame),
                                               dialog_id=frame.dialog_id, dialog=dialog))

    def on_ack(self, frame: SipFrame) -> None:
        dialog = self.by_id.get(frame.dialog_id)
        if dialog is None:
            return
        try:
            ack = parse_message(frame)
        except SipParseError:
            ack = None
        dialog.on_ack(frame, ack)

    def on_unsolicited(self, frame: SipFrame) -> None:
        """A BYE the server sent by itself (ACK time-out, CANCEL after 200, …)."""
        dialog = self.by_id.get(frame.dialog_id)
        if dialog is None:
            return
        reason = "ended by drachtio"
        text = frame.message.header("Reason") or ""
        if 'text="' in text:
            reason = text.split('text="', 1)[1].split('"', 1)[0] or reason
        try:
            message = parse_message(frame)
        except SipParseError:
            message = None
        dialog.end(reason, message=message if isinstance(message, SipRequest) else None)

    def connection_lost(self) -> None:
        for dialog in list(self.by_id.values()):
            dialog.end("drachtio connection lost")
        self.by_id.clear()

    async def answer_invite(self, req: DrachtioIncomingRequest, status: int,
                            reason: str | None, items: list[tuple[str, str]], body: bytes,
                            content_type: str | None) -> DrachtioDialog | None:
        """A 2xx to an INVITE: creates the UAS dialog (or updates it for a re-INVITE).
        The dialog is registered before the 200 goes out: its ACK may follow at once."""
        if req.final_sent:
            return None
        dialog = req.dialog
        if dialog is not None:  # a re-INVITE
            if req.send_now(status, reason, items, body, content_type) is None:
                return None
            dialog.invite_answered(req, body)
            return dialog
        msg = req.message
        try:
            from_tag = msg.from_tag
            usable = bool(msg.contacts) and bool(from_tag)
        except SipParseError:
            usable, from_tag = False, None
        if not usable:
            req.send_now(400, "Missing Contact or From tag", [], b"", None)
            raise SipError(400, "INVITE without a usable Contact or From tag")
        dialog = DrachtioDialog(self.port, f"{msg.call_id};from-tag={from_tag}", msg.call_id,
                                local_tag="", remote_tag=from_tag or "", role="uas",
                                peer=req.source)
        self.add(dialog)
        req.dialog = dialog
        future = req.send_now(status, reason, items, body, content_type)
        if future is None:
            dialog.forget("answer not sent")
            return None
        try:
            answer = (await future)[-1]
        except Exception as exc:  # unavailable/time-out: no dialog
            log.info("answer not confirmed by drachtio", call_id=msg.call_id, error=str(exc))
            dialog.forget("answer not sent")
            return None
        if not answer.ok:
            dialog.forget("answer refused")
            return None
        if answer.dialog_id and answer.dialog_id != dialog.id:
            self.remove(dialog)
            dialog.id = answer.dialog_id
            self.add(dialog)
        if answer.message is not None:
            dialog.local_tag = _tag(answer.message.header("To"))
        dialog.invite_answered(req, body)
        return dialog


def parse_message(frame: SipFrame) -> SipMessage:
    from engine.sip.parser import parse_message as parse

    return parse(frame.message.text.encode("utf-8", "surrogateescape"))
