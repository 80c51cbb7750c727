"""Our own requests through drachtio: out-of-dialog non-INVITE requests and INVITE
legs, with the table that routes response frames to them by transaction id."""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from engine.drachtio.wire import SipFrame
from engine.log import get_logger

if TYPE_CHECKING:
    from engine.drachtio.port import DrachtioSipPort

log = get_logger("engine.drachtio.legs")


class ClientTable:
    def __init__(self, port: DrachtioSipPort):
        self.port = port
        self.by_txn: dict[str, Any] = {}

    def on_response(self, frame: SipFrame) -> None:
        user = self.by_txn.get(frame.transaction_id)
        if user is not None:
            user.on_response(frame)

    def connection_lost(self) -> None:
        for user in list(self.by_txn.values()):
            user.lost()
        self.by_txn.clear()
