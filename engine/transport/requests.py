"""Requests received from the network, as the transaction user sees them
(``engine.ports.IncomingRequest``)."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import SipError
from engine.log import get_logger
from engine.ports import Headers, Peer
from engine.sip.errors import TransactionStateError
from engine.sip.message import SipRequest, SipResponse
from engine.transport.tu import TransactionUser

if TYPE_CHECKING:
    from engine.transport.dialogs import EmbeddedDialog

log = get_logger("engine.transport.request")


def header_items(headers: Headers | None) -> list[tuple[str, str]]:
    """``Headers`` (a mapping or a sequence of pairs) as a list of ``(name, value)``."""
    if not headers:
        return []
    items: Iterable[tuple[str, Any]] = (
        headers.items() if isinstance(headers, Mapping) else headers)
    return [(str(n), str(v)) for n, v in items]


def has_header(items: list[tuple[str, str]], *names: str) -> bool:
    wanted = {n.lower() for n in names}
    return any(n.lower() in wanted for n, _ in items)


class EmbeddedIncomingRequest:
    """A received request and the means to answer it (one server transaction).

    ``dialog`` is set for in-dialog requests (and after ``answer``). ``reason``
    is set on the notifications the port makes up itself (a ``bye`` event after
    an ACK time-out or a 408/481 to an in-dialog request): those have
    ``final_sent`` True and nothing to answer.
    """

    __slots__ = ("_cancel_cbs", "_port", "cancelled", "dialog", "final_sent", "final_status",
                 "flow", "message", "reason", "source", "tx")

    def __init__(self, port: TransactionUser, message: SipRequest, tx: int | None,
                 source: Peer, flow: str | None, *, final_sent: bool = False,
                 dialog: EmbeddedDialog | None = None, reason: str | None = None):
        self._port = port
        self.message = message
        self.tx = tx
        self.source = source
        self.flow = flow
        self.cancelled = False
        self.final_sent = final_sent or tx is None
        self.final_status: int | None = None  # the final response sent (for summary lines)
        self.dialog = dialog
        self.reason = reason
        self._cancel_cbs: list[Callable[[], None]] | None = None

    def __repr__(self) -> str:
        return f"<IncomingRequest {self.message.method} {self.message.uri} tx={self.tx}>"

    # ------------------------------------------------------------------ read access

    @property
    def method(self) -> str:
        return self.message.method

    @property
    def uri(self) -> str:
        """The Request-URI as text."""
        return self.message.uri

    @property
    def call_id(self) -> str:
        return self.message.call_id

    @property
    def body(self) -> bytes:
        return self.message.body

    def header(self, name: str) -> str | None:
        """First value of header ``name`` (case-insensitive, compact forms accepted)."""
        return self.message.header(name)

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name``: repeated lines and comma-joined values, in order."""
        return self.message.header_values(name)

    # ------------------------------------------------------------------ CANCEL

    def on_cancel(self, callback: Callable[[], None]) -> None:
        """Call ``callback()`` once if the caller CANCELs this INVITE (the stack has
        already answered 200 to the CANCEL and 487 to the INVITE). Registered after
        the CANCEL arrived, it is called soon (on the next loop iteration)."""
        if self.cancelled:
            self._port.loop.call_soon(self._port.safe_call, callback, "on_cancel")
            return
        if self._cancel_cbs is None:
            self._cancel_cbs = []
        self._cancel_cbs.append(callback)

    def mark_cancelled(self) -> None:
        """The stack processed a CANCEL for this INVITE (200 + 487 sent)."""
        self.cancelled = True
        if not self.final_sent:
            self.final_status = 487
        self.final_sent = True
        cbs, self._cancel_cbs = self._cancel_cbs, None
        for cb in cbs or ():
            self._port.safe_call(cb, "on_cancel")

    # ------------------------------------------------------------------ answering

    async def reply(
        self, status: int, reason: str | None = None, *, headers: Headers = (),
        body: bytes = b"", content_type: str | None = None,
    ) -> None:
        """Send a response. Provisional responses (101-199) may be sent several times;
        after a final one every further response is ignored (logged). The To tag is
        chosen once per transaction. A 2xx to an INVITE does what ``answer`` does
        (Contact added unless given, dialog created) — use ``answer`` to get the dialog."""
        self.send_response(status, reason, headers=headers, body=body,
                           content_type=content_type)

    def send_response(
        self, status: int, reason: str | None = None, *, headers: Headers = (),
        body: bytes = b"", content_type: str | None = None,
    ) -> bool:
        """``reply`` without the coroutine: True if a response was sent (False:
        already answered, cancelled, or an ACK)."""
        if not 100 <= status <= 699:
            raise ValueError(f"invalid SIP status {status}")
        if self.final_sent or self.tx is None:
            if not self.cancelled:
                log.warning("response ignored: final response already sent", status=status,
                            method=self.method, call_id=self.call_id)
            return False
        items = header_items(headers)
        if self.method == "INVITE" and 200 <= status < 300:
            return self._port.answer_invite(self, status, reason, items, body,
                                            content_type) is not None
        return self.transmit(status, reason, items, body, content_type) is not None

    def transmit(self, status: int, reason: str | None, items: list[tuple[str, str]],
                 body: bytes, content_type: str | None) -> SipResponse | None:
        """Send a response on the transaction (no checks; the port's building block)."""
        port = self._port
        assert self.tx is not None
        try:
            resp = port.send_response(self.tx, status, reason, items, body, content_type)
        except TransactionStateError as exc:
            self.final_sent = True
            log.warning("response not sent: transaction over", status=status,
                        method=self.method, call_id=self.call_id, error=str(exc))
            return None
        if status >= 200:
            self.final_sent = True
            self.final_status = status
            # a CANCEL after the final response changes nothing; and the callbacks (which
            # usually close over the call's machine instance, itself holding this request)
            # would otherwise keep a cycle alive until a full garbage collection
            self._cancel_cbs = None
            port.answered(self)
            if self.dialog is not None and status < 300 and self.method == "UPDATE":
                self.dialog.update_answered(self, body)
        return resp

    async def answer(self, *, sdp: bytes, headers: Headers = ()) -> EmbeddedDialog:
        """Answer an INVITE with 200 + ``sdp`` (+ our Contact unless ``headers`` has
        one) and return the UAS dialog. The ACK is awaited by the stack: it goes to
        the dialog's ``ack`` listener (for a late-offer INVITE it carries the answer,
        then in ``dialog.remote_sdp``); without it within 64*T1 the peer is sent a BYE
        and the dialog gets a ``bye`` event whose ``reason`` is ``ACK timeout``.
        For a re-INVITE (``dialog`` set) the existing dialog is returned, updated.

        Raises ``SipError(487)`` if the INVITE was cancelled, ``SipError(500)`` if a
        final response was already sent, ``SipError(400)`` (after answering 400) when
        the INVITE has no usable Contact."""
        if self.method != "INVITE":
            raise SipError(500, f"answer() on a {self.method}")
        if self.cancelled:
            raise SipError(487, "Request Terminated")
        if self.final_sent:
            raise SipError(500, "final response already sent")
        dialog = self._port.answer_invite(self, 200, None, header_items(headers), sdp,
                                          "application/sdp" if sdp else None)
        if dialog is None:
            raise SipError(500, "answer not sent")
        return dialog
