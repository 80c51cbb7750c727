"""Requests drachtio hands us (``engine.ports.IncomingRequest`` over drachtio).

A received request is answered with ``sip|<txn>|`` frames (spec §4.3.1). The server
already sent 100 Trying to an INVITE (§5.2), copies Via/From/To/Call-ID/CSeq into the
response itself and adds the To tag; we still copy Call-ID, CSeq, From and To as srf
does, because the answer to an early UPDATE is only recognised by its CSeq (§5.6).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.drachtio.client import DrachtioError
from engine.drachtio.sip_text import InvalidToken, build_sip_message
from engine.drachtio.wire import FrameTooLarge
from engine.errors import SipError
from engine.log import get_logger
from engine.ports import Headers, Peer
from engine.sip.builders import reason_phrase
from engine.sip.message import SipRequest
from engine.transport.requests import header_items

if TYPE_CHECKING:
    from engine.drachtio.port import DrachtioSipPort

log = get_logger("engine.drachtio.requests")

# copied from the request into every response (srf does the same; §10.11)
_ECHOED = ("From", "To", "Call-ID", "CSeq")


def response_text(request: SipRequest, status: int, reason: str | None,
                  items: list[tuple[str, str]], body: bytes, content_type: str | None,
                  server_header: str | None) -> str:
    """The SIP text of a response to ``request`` for a ``sip|<txn>|`` frame. Headers the
    caller gives replace the echoed ones of the same name; Via/Content-Length are the
    server's business (it ignores ours, §6.2)."""
    given = {name.lower() for name, _ in items}
    headers: list[tuple[str, str]] = []
    for name in _ECHOED:
        if name.lower() not in given:
            value = request.header(name)
            if value is not None:
                headers.append((name, value))
    headers += [(n, v) for n, v in items if n.lower() not in ("via", "content-length")]
    if server_header and "server" not in given:
        headers.append(("Server", server_header))
    if body and content_type and "content-type" not in given:
        headers.append(("Content-Type", content_type))
    start = f"SIP/2.0 {status} {reason or reason_phrase(status)}"
    return build_sip_message(start, headers, body)


class DrachtioIncomingRequest:
    """A request received through drachtio and the means to answer it.

    ``txn`` is the server's transaction id (the answer goes there); ``dialog`` is set
    for in-dialog requests and after ``answer``. ``flow`` is always None: drachtio does
    not expose its connections (it reuses an open TCP connection to a peer by itself).
    """

    __slots__ = ("_cancel_cbs", "_port", "cancelled", "dialog", "dialog_id", "final_sent",
                 "final_status", "message", "reason", "source", "txn")

    flow = None

    def __init__(self, port: DrachtioSipPort, message: SipRequest, txn: str, source: Peer,
                 *, dialog_id: str = "", dialog: Any = None, final_sent: bool = False,
                 reason: str | None = None):
        self._port = port
        self.message = message
        self.txn = txn
        self.source = source
        self.dialog_id = dialog_id
        self.dialog = dialog
        self.cancelled = False
        self.final_sent = final_sent or not txn
        self.final_status: int | None = None
        self.reason = reason
        self._cancel_cbs: list[Callable[[], None]] | None = None

    def __repr__(self) -> str:
        return f"<DrachtioIncomingRequest {self.message.method} {self.message.uri} {self.txn}>"

    # ------------------------------------------------------------------ read access

    @property
    def method(self) -> str:
        return self.message.method

    @property
    def uri(self) -> str:
        return self.message.uri

    @property
    def call_id(self) -> str:
        return self.message.call_id

    @property
    def body(self) -> bytes:
        return self.message.body

    def header(self, name: str) -> str | None:
        return self.message.header(name)

    def header_values(self, name: str) -> list[str]:
        return self.message.header_values(name)

    # ------------------------------------------------------------------ CANCEL

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """``callback()`` once when the caller CANCELs (drachtio already sent 200 + 487)."""
        if self.cancelled:
            self._port.loop.call_soon(self._port.safe_call, callback, "on_cancel")
            return
        if self._cancel_cbs is None:
            self._cancel_cbs = []
        self._cancel_cbs.append(callback)

    def mark_cancelled(self) -> None:
        self.cancelled = True
        if not self.final_sent:
            self.final_status = 487
        self.final_sent = True
        self._port.answered(self)
        cbs, self._cancel_cbs = self._cancel_cbs, None
        for cb in cbs or ():
            self._port.safe_call(cb, "on_cancel")

    # ------------------------------------------------------------------ answering

    async def reply(
        self, status: int, reason: str | None = None, *, headers: Headers = (),
        body: bytes = b"", content_type: str | None = None,
    ) -> None:
        """Send a response; provisional ones may repeat, a second final is ignored
        (logged). 100 is not sent: drachtio answered 100 Trying itself (§5.2). A 2xx to
        an INVITE does what ``answer`` does."""
        if not 100 <= status <= 699:
            raise ValueError(f"invalid SIP status {status}")
        if self.final_sent:
            if not self.cancelled:
                log.warning("response ignored: final response already sent", status=status,
                            method=self.method, call_id=self.call_id)
            return
        if status == 100:
            return
        items = header_items(headers)
        if self.method == "INVITE" and 200 <= status < 300:
            await self._port.answer_invite(self, status, reason, items, body, content_type)
            return
        await self.transmit(status, reason, items, body, content_type)

    async def transmit(self, status: int, reason: str | None, items: list[tuple[str, str]],
                       body: bytes, content_type: str | None) -> None:
        """Send a response frame now, without waiting for the server's answer (a
        machine's reply must not suspend); a refusal is logged when it comes."""
        self.send_now(status, reason, items, body, content_type)

    def send_now(self, status: int, reason: str | None, items: list[tuple[str, str]],
                 body: bytes, content_type: str | None) -> Any:
        """Write the response frame; the future of the server's answer, or None when it
        could not be sent (logged; a final that is too large becomes a 500)."""
        port = self._port
        if status >= 200:
            self.final_sent = True
            self.final_status = status
            port.answered(self)
            if self.dialog is not None and status < 300 and self.method == "UPDATE":
                self.dialog.update_answered(self, body)
        try:
            text = response_text(self.message, status, reason, items, body, content_type,
                                 port.server_header)
            future = port.client.submit_sip(text, transaction_id=self.txn)
        except (FrameTooLarge, InvalidToken) as exc:
            log.error("response cannot be sent through drachtio", status=status,
                      method=self.method, call_id=self.call_id, error=str(exc))
            if status >= 200 and status != 500:
                port.respond_raw(self.txn, 500, request=self.message)
            return None
        except DrachtioError as exc:
            log.warning("response not sent: drachtio unavailable", status=status,
                        method=self.method, call_id=self.call_id, error=str(exc))
            return None
        port.count_response(self.message, status)
        future.add_done_callback(self._sent)
        return future

    def _sent(self, future: Any) -> None:
        if future.cancelled():
            return
        exc = future.exception()
        if exc is not None:
            log.warning("response not confirmed by drachtio", method=self.method,
                        call_id=self.call_id, error=str(exc))
            return
        answer = future.result()[-1]
        if not answer.ok:
            level = log.debug if self.cancelled else log.warning
            level("drachtio refused the response", method=self.method, call_id=self.call_id,
                  reason=answer.reason)

    async def answer(self, *, sdp: bytes, headers: Headers = ()) -> Any:
        """Answer an INVITE with 200 + ``sdp`` and return the UAS dialog (see
        ``engine.ports.IncomingRequest.answer``)."""
        if self.method != "INVITE":
            raise SipError(500, f"answer() on a {self.method}")
        if self.cancelled:
            raise SipError(487, "Request Terminated")
        if self.final_sent:
            raise SipError(500, "final response already sent")
        dialog = await self._port.answer_invite(self, 200, None, header_items(headers), sdp,
                                                "application/sdp" if sdp else None)
        if dialog is None:
            raise SipError(500, "answer not sent")
        return dialog
