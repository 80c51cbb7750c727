"""Our own requests through drachtio (UAC side): out-of-dialog non-INVITE requests,
in-dialog requests, INVITE legs, and the table that routes response frames to them.

A request goes out as a ``sip`` frame (spec §4.3.2/§4.3.3); the server's ``response``
frame gives its transaction id, and every SIP response arrives as a ``sip`` frame
with that id. The server absorbs 100 Trying, ACKs non-2xx finals and produces a
local 408 on time-out (§5.3, §5.4); we ACK 2xx finals of INVITEs ourselves.

A response frame can be read before the coroutine that sent the request has seen
the transaction id (both come in one TCP read): such responses are held for a few
seconds by transaction id and replayed when the transaction is registered.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from engine.drachtio.client import DrachtioError
from engine.drachtio.sip_text import InvalidToken, build_sip_message
from engine.drachtio.wire import FrameTooLarge, SipFrame
from engine.errors import SipError
from engine.log import get_logger
from engine.ports import Credentials, Headers
from engine.sip.builders import reason_phrase
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse
from engine.sip.outgoing import request_from_headers
from engine.sip.parser import parse_message
from engine.transport.client import authorized_copy
from engine.transport.requests import header_items

if TYPE_CHECKING:
    from engine.drachtio.port import DrachtioSipPort

log = get_logger("engine.drachtio.legs")

_ORPHAN_TTL = 5.0
# the stack answers 408 after 64*T1 by itself; this only guards against a lost frame
_FINAL_TIMEOUT = 40.0


def local_response(status: int, reason: str | None = None,
                   request: SipRequest | None = None) -> SipResponse:
    """A response made up locally (408, 481, 503), shaped like one from the network."""
    headers = []
    if request is not None:
        headers = [(n, request.header(n) or "") for n in ("From", "To", "Call-ID", "CSeq")]
    return SipResponse(status, reason or reason_phrase(status), headers)


def parse_response(frame: SipFrame) -> SipResponse | None:
    try:
        msg = parse_message(frame.message.text.encode("utf-8", "surrogateescape"))
    except SipParseError as exc:
        log.info("malformed SIP response from drachtio dropped", reason=exc.reason)
        return None
    return msg if isinstance(msg, SipResponse) else None


def route_uri(proxy: str | None, uri: str) -> str | None:
    """drachtio's ``<routeUri>`` (a full SIP URI) for a ``proxy`` given as URI or
    host:port; a ``;transport=`` of the Request-URI is kept for the next hop."""
    if not proxy:
        return None
    value = proxy.strip().strip("<>")
    if not value.lower().startswith(("sip:", "sips:")):
        value = f"sip:{value}"
    low = uri.lower()
    if ";transport=" in low and ";transport=" not in value.lower():
        value += ";transport=" + low.split(";transport=", 1)[1].split(";", 1)[0].split(">")[0]
    return value


class SentRequest:
    """One request we sent, until its final response."""

    __slots__ = ("final", "on_provisional")

    def __init__(self, loop: asyncio.AbstractEventLoop,
                 on_provisional: Callable[[SipFrame], None] | None = None):
        self.final: asyncio.Future[SipFrame] = loop.create_future()
        self.on_provisional = on_provisional

    def on_response(self, frame: SipFrame) -> bool:
        """True when this was the final response."""
        status = frame.message.status or 0
        if status < 200:
            if self.on_provisional is not None:
                self.on_provisional(frame)
            return False
        if not self.final.done():
            self.final.set_result(frame)
        return True

    def expire(self) -> None:
        if not self.final.done():
            self.final.set_exception(TimeoutError())

    def lost(self) -> None:
        if not self.final.done():
            self.final.set_exception(DrachtioError("drachtio connection lost"))


class ClientTable:
    """Our pending client transactions by drachtio transaction id."""

    def __init__(self, port: DrachtioSipPort):
        self.port = port
        self.by_txn: dict[str, SentRequest] = {}
        self._orphans: dict[str, tuple[float, list[SipFrame]]] = {}

    def add(self, txn: str, tx: SentRequest) -> None:
        self.by_txn[txn] = tx
        held = self._orphans.pop(txn, None)
        for frame in held[1] if held else ():
            if tx.on_response(frame):
                self.by_txn.pop(txn, None)

    def remove(self, txn: str) -> None:
        self.by_txn.pop(txn, None)

    def on_response(self, frame: SipFrame) -> None:
        txn = frame.transaction_id
        tx = self.by_txn.get(txn)
        if tx is None:
            now = self.port.clock.monotonic()
            if len(self._orphans) > 1000:
                self.prune(now)
            self._orphans.setdefault(txn, (now, []))[1].append(frame)
            return
        if tx.on_response(frame):
            self.by_txn.pop(txn, None)

    def prune(self, now: float) -> None:
        limit = now - _ORPHAN_TTL
        for txn in [t for t, (at, _) in self._orphans.items() if at < limit]:
            del self._orphans[txn]

    def connection_lost(self) -> None:
        for tx in list(self.by_txn.values()):
            tx.lost()
        self.by_txn.clear()
        self._orphans.clear()


async def transact(port: DrachtioSipPort, text: str, *, dialog_id: str = "",
                   route: str | None = None,
                   on_provisional: Callable[[SipFrame], None] | None = None,
                   on_sent: Callable[[str, Any], None] | None = None
                   ) -> tuple[SipFrame | None, int, str]:
    """Send a request and wait for its final response frame: ``(frame, 0, "")``, or
    ``(None, status, why)`` for a local outcome (503 not sent, 481 unknown dialog, 408
    no answer). ``on_sent(txn, echoed_message)`` is called once it went out."""
    try:
        answer = await port.client.send_sip(text, dialog_id=dialog_id, route_uri=route)
    except (FrameTooLarge, InvalidToken) as exc:
        return None, 513, str(exc)
    except DrachtioError as exc:
        return None, 503, str(exc)
    if not answer.ok:
        why = answer.reason
        return None, 481 if "unable to find dialog" in why else 503, why
    txn = answer.transaction_id
    tx = SentRequest(port.loop, on_provisional)
    port.clients.add(txn, tx)
    if on_sent is not None:
        on_sent(txn, answer.message)
    # tx.expire fails tx.final with TimeoutError once _FINAL_TIMEOUT has passed
    timer = port.loop.call_later(_FINAL_TIMEOUT, tx.expire)
    try:
        return await tx.final, 0, ""
    except TimeoutError:
        return None, 408, "no final response"
    except DrachtioError as exc:
        return None, 503, str(exc)
    finally:
        timer.cancel()
        port.clients.remove(txn)


def build_request(port: DrachtioSipPort, method: str, uri: str,
                  items: list[tuple[str, str]], body: bytes, content_type: str | None, *,
                  call_id: str | None = None, from_tag: str | None = None,
                  contact: bool = False) -> tuple[SipRequest, str | None]:
    """An out-of-dialog request from caller headers plus defaults
    (``engine.sip.outgoing``) and the caller's top Route, which drachtio takes as the
    frame's route URI rather than a header (§6.2)."""
    return request_from_headers(
        method, uri, items, body, content_type, ids=port.ids, user_agent=port.user_agent,
        local_uri=lambda t: port.contact_uri(transport=t),
        contact_transport="tcp" if ";transport=tcp" in uri.lower() else "udp",
        call_id=call_id, from_tag=from_tag, contact=contact, take_route=True)


def request_text(req: SipRequest) -> str:
    return req.to_bytes().decode("utf-8", "surrogateescape")


async def send_out_of_dialog(port: DrachtioSipPort, uri: str, method: str, headers: Headers,
                             body: bytes, content_type: str | None, proxy: str | None,
                             auth: Credentials | None) -> SipResponse:
    """``SipPort.request`` over drachtio (never raises for network reasons)."""
    method = method.upper()
    if method in ("INVITE", "ACK", "CANCEL"):
        raise ValueError(f"use invite() for INVITE; {method} is sent by the stack")
    try:
        req, route = build_request(port, method, uri, header_items(headers), body, content_type)
    except (SipParseError, ValueError) as exc:
        raise ValueError(f"cannot build {method} {uri}: {exc}") from exc
    hop = route_uri(proxy or route, uri)
    retried = False
    while True:
        frame, status, why = await transact(port, request_text(req), route=hop)
        if frame is None:
            log.info("request not sent", method=method, uri=uri, status=status, error=why)
            return local_response(status, None, req)
        response = parse_response(frame)
        if response is None:
            return local_response(502, "Bad response", req)
        if response.status in (401, 407) and auth is not None and not retried:
            retry = authorized_copy(port.digest, req, response, auth, req.cseq.seq + 1)
            if retry is not None:
                retried, req = True, retry
                continue
        return response


class DrachtioClientLeg:
    """An INVITE we send (``engine.ports.ClientLeg``). Call-ID and From tag are ours
    (drachtio keeps the ones it is given), so they are known at once."""

    def __init__(self, port: DrachtioSipPort, uri: str, *, sdp: bytes | None,
                 headers: Headers, proxy: str | None, auth: Credentials | None,
                 on_provisional: Callable[[Any], None] | None):
        self.port = port
        self.uri = uri
        self.sdp = sdp
        self.auth = auth
        self.on_provisional = on_provisional
        items = header_items(headers)
        self.request, route = build_request(port, "INVITE", uri, items, sdp or b"",
                                            "application/sdp" if sdp else None, contact=True)
        self.hop = route_uri(proxy or route, uri)
        self.txn: str | None = None
        self.cancel_requested = False
        self.cancel_headers: list[tuple[str, str]] = []
        self._cancel: asyncio.Task[bool] | None = None
        self.final_status: int | None = None
        self.responded = False  # engine.ports.ClientLeg.responded
        # the call's (A leg's) Call-ID, set by the action that sent this leg: log lines
        # carry it as ``call_id`` (as machine lines do), this leg's own as ``leg_call_id``
        self.a_call_id: str | None = None
        self.dialog: Any = None
        self._result: asyncio.Future[Any] = port.loop.create_future()
        self._result.add_done_callback(_retrieve)

    @property
    def call_id(self) -> str:
        return self.request.call_id

    @property
    def from_tag(self) -> str:
        return self.request.from_tag or ""

    def _ids(self) -> dict[str, str]:
        """Log fields: the call's Call-ID and this leg's."""
        return {"call_id": self.a_call_id or self.call_id, "leg_call_id": self.call_id}

    def start(self) -> None:
        self.port.spawn(self._run(), "INVITE")

    def result(self) -> asyncio.Future[Any]:
        return self._result

    async def cancel(self, *, headers: Headers = ()) -> None:
        """CANCEL while pending (the server builds it from our INVITE, §4.3.4); once
        answered, BYE. A 200 crossing the CANCEL is ACKed and the server BYEs it."""
        if self.dialog is not None:
            await self.dialog.bye()
            return
        if self.cancel_requested or self.final_status is not None:
            return
        self.cancel_requested = True
        self.cancel_headers = header_items(headers)
        if self.txn is not None:
            self._cancel = self.port.spawn(self._send_cancel(), "CANCEL")
            await asyncio.shield(self._cancel)

    async def _send_cancel(self) -> bool:
        """True when drachtio sent the CANCEL (it then BYEs a crossing 200 itself)."""
        text = build_sip_message(f"CANCEL {self.uri} SIP/2.0", self.cancel_headers)
        try:
            answer = await self.port.client.send_sip(text, transaction_id=self.txn or "")
        except (DrachtioError, FrameTooLarge, InvalidToken) as exc:
            log.info("CANCEL not sent", **self._ids(), error=str(exc))
            return False
        if not answer.ok:
            log.debug("CANCEL refused", **self._ids(), reason=answer.reason)
        return answer.ok

    def _sent(self, txn: str, echoed: Any) -> None:
        self.txn = txn
        if self.cancel_requested:
            self._cancel = self.port.spawn(self._send_cancel(), "CANCEL")

    def _provisional(self, frame: SipFrame) -> None:
        self.responded = True
        if self.on_provisional is None or (frame.message.status or 0) <= 100:
            return
        response = parse_response(frame)
        if response is not None:
            self.port.safe_call(self.on_provisional, "on_provisional", response)

    async def _run(self) -> None:
        from engine.drachtio.dialogs import DrachtioDialog  # dialogs imports this module

        retried = False
        while True:
            frame, status, why = await transact(
                self.port, request_text(self.request), route=self.hop,
                on_provisional=self._provisional, on_sent=self._sent)
            if frame is None:
                log.info("INVITE not sent", **self._ids(), status=status, error=why)
                self.final_status = status
                self._fail(SipError(status, why or reason_phrase(status)))
                return
            response = parse_response(frame)
            if response is None:
                self._fail(SipError(502, "Bad response"))
                return
            if (response.status in (401, 407) and self.auth is not None and not retried
                    and not self.cancel_requested):
                retry = authorized_copy(self.port.digest, self.request, response, self.auth,
                                        self.request.cseq.seq + 1)
                if retry is not None:
                    retried, self.request, self.txn = True, retry, None
                    continue
            self.final_status = response.status
            if not 200 <= response.status < 300:
                self._fail(SipError(response.status, response.reason, response))
                return
            dialog = DrachtioDialog.from_uac(self.port, frame.dialog_id, self.request,
                                             response, self.sdp, self.auth, self.a_call_id)
            if self.sdp is None:
                dialog.expect_late_ack()
            else:
                dialog.send_ack(None)
            if self.cancel_requested:
                # the 200 crossed our CANCEL. If drachtio sent the CANCEL it BYEs the
                # ACKed 200 itself (§5.3 item 10); if the 200 came first it refused the
                # CANCEL and the BYE is ours.
                accepted = False
                if self._cancel is not None:
                    with contextlib.suppress(Exception):
                        accepted = await asyncio.shield(self._cancel)
                if accepted:
                    dialog.forget("answered after CANCEL")
                else:
                    await dialog.bye(headers=[
                        ("Reason", 'SIP;cause=200;text="CANCEL crossed the 2xx"')])
                self._fail(SipError(487, "Request Terminated"))
                return
            self.dialog = dialog
            if not self._result.done():
                self._result.set_result(dialog)
            return

    def _fail(self, error: SipError) -> None:
        if not self._result.done():
            log.debug("INVITE failed", **self._ids(), status=error.status, reason=error.reason)
            self._result.set_exception(error)


def _retrieve(future: asyncio.Future[Any]) -> None:
    if not future.cancelled():
        future.exception()  # a failure nobody awaits is not an "unretrieved" error
