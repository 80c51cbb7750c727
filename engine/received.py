"""What both SIP backends' incoming requests share (``engine.ports.IncomingRequest``):
read access to the received message, and the caller's CANCEL of an INVITE. The
embedded stack (``engine.transport.requests``) and drachtio
(``engine.drachtio.requests``) each add how a request is answered."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from typing import Any, Protocol

from engine.ports import Peer
from engine.sip.message import SipRequest


class RequestOwner(Protocol):
    """The port a received request reports back to."""

    @property
    def loop(self) -> asyncio.AbstractEventLoop: ...

    def safe_call(self, callback: Callable[..., Any], what: str, *args: Any) -> None: ...

    def answered(self, req: Any) -> None: ...


class ReceivedRequest:
    """A received request: the message as parsed, where it came from, whether a final
    response went out (``final_status``: which, for summary lines) and the CANCEL."""

    __slots__ = ("_cancel_cbs", "_port", "cancelled", "final_sent", "final_status",
                 "message", "reason", "source")

    _port: RequestOwner
    message: SipRequest
    source: Peer
    cancelled: bool
    final_sent: bool
    final_status: int | None
    reason: str | None
    _cancel_cbs: list[Callable[[], None]] | None

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
        """Call ``callback()`` once if the caller CANCELs this INVITE (200 to the CANCEL
        and 487 to the INVITE are already sent, by our stack or by drachtio).
        Registered after the CANCEL arrived, it is called soon (next loop iteration)."""
        if self.cancelled:
            self._port.loop.call_soon(self._port.safe_call, callback, "on_cancel")
            return
        if self._cancel_cbs is None:
            self._cancel_cbs = []
        self._cancel_cbs.append(callback)

    def mark_cancelled(self) -> None:
        """The caller's CANCEL was processed for this INVITE (200 + 487 sent)."""
        self.cancelled = True
        if not self.final_sent:
            self.final_status = 487
        self.final_sent = True
        self._port.answered(self)
        cbs, self._cancel_cbs = self._cancel_cbs, None
        for cb in cbs or ():
            self._port.safe_call(cb, "on_cancel")
