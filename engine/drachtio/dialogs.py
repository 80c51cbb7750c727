"""INVITE dialogs over drachtio (``engine.ports.Dialog``) and the table that routes
in-dialog frames to them by dialog id (``<Call-ID>;from-tag=<tag>``, spec §5.1)."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.drachtio.wire import SipFrame
from engine.errors import SipError
from engine.log import get_logger

if TYPE_CHECKING:
    from engine.drachtio.port import DrachtioSipPort
    from engine.drachtio.requests import DrachtioIncomingRequest

log = get_logger("engine.drachtio.dialogs")


class DialogTable:
    """The port's dialogs by drachtio dialog id."""

    def __init__(self, port: DrachtioSipPort):
        self.port = port
        self.by_id: dict[str, Any] = {}

    def on_request(self, frame: SipFrame) -> None:
        dialog = self.by_id.get(frame.dialog_id)
        if dialog is None:
            self.port.respond_raw(frame.transaction_id, 481)
            return
        dialog.receive(frame)

    def on_ack(self, frame: SipFrame) -> None:
        dialog = self.by_id.get(frame.dialog_id)
        if dialog is not None:
            dialog.on_ack(frame)

    def on_unsolicited(self, frame: SipFrame) -> None:
        dialog = self.by_id.get(frame.dialog_id)
        if dialog is not None:
            dialog.on_unsolicited(frame)

    def connection_lost(self) -> None:
        for dialog in list(self.by_id.values()):
            dialog.lost("drachtio connection lost")
        self.by_id.clear()

    async def answer_invite(self, req: DrachtioIncomingRequest, status: int,
                            reason: str | None, items: list[tuple[str, str]], body: bytes,
                            content_type: str | None) -> Any:
        raise SipError(501, "INVITE is not yet supported with SIP_BACKEND=drachtio")
