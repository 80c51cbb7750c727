"""A small callee application on the embedded SIP port, shared by the INVITE tests."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass, field

from engine.errors import SipError
from engine.ports import IncomingRequest
from engine.transport import EmbeddedSipPort
from engine.transport.dialogs import EmbeddedDialog

OUR_SDP = (b"v=0\r\no=pbx 1 1 IN IP4 127.0.0.1\r\ns=pbx\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
           b"m=audio 40000 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\na=sendrecv\r\n")


@dataclass
class Callee:
    """Answers INVITEs: 180, optional delay, then 200 with ``OUR_SDP`` (or not at all).
    Records requests, dialogs and the events the dialogs heard."""

    sip: EmbeddedSipPort
    answer: bool = True
    delay: float = 0.0
    hangup_after: float | None = None  # BYE from our side this long after the ACK
    invites: list[IncomingRequest] = field(default_factory=list)
    dialogs: list[EmbeddedDialog] = field(default_factory=list)
    cancelled: list[IncomingRequest] = field(default_factory=list)
    acks: list[IncomingRequest] = field(default_factory=list)
    byes: list[IncomingRequest] = field(default_factory=list)
    errors: list[Exception] = field(default_factory=list)
    ended: asyncio.Event = field(default_factory=asyncio.Event)

    def __post_init__(self) -> None:
        self.sip.on_request("INVITE", self.handle)

    async def handle(self, req: IncomingRequest) -> None:
        self.invites.append(req)
        req.on_cancel(lambda: self.cancelled.append(req))
        await req.reply(180)
        if self.delay:
            await asyncio.sleep(self.delay)
        if not self.answer:
            return
        try:
            dialog = await req.answer(sdp=OUR_SDP)
        except SipError as exc:
            self.errors.append(exc)
            self.ended.set()
            return
        assert isinstance(dialog, EmbeddedDialog)
        self.dialogs.append(dialog)
        dialog.on("ack", self._on_ack)
        dialog.on("bye", self._on_bye)

    def _on_ack(self, req: IncomingRequest) -> None:
        self.acks.append(req)
        if self.hangup_after is not None:
            dialog = self.dialogs[-1]

            async def hangup() -> None:
                await asyncio.sleep(self.hangup_after or 0)
                await dialog.bye()
                self.ended.set()

            self.sip.spawn(hangup(), "test hangup")

    def _on_bye(self, req: IncomingRequest) -> None:
        self.byes.append(req)
        self.ended.set()
