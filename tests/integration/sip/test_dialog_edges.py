"""Dialog edge cases with a hand-driven peer (raw UDP): 481/408 end a dialog, our
re-INVITEs are queued, crossing re-INVITEs get 491, BYE during a pending re-INVITE."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator

import pytest

from engine.ports import IncomingRequest
from engine.sip.builders import make_response
from engine.sip.message import SipRequest
from engine.sip.parser import parse_message
from engine.transport import EmbeddedSipPort
from engine.transport.dialogs import EmbeddedDialog
from tests.integration.sip.callee import OUR_SDP
from tests.integration.sip.conftest import RawUdp, sip_message

pytestmark = pytest.mark.integration

SDP = ("v=0\r\no=raw 1 1 IN IP4 127.0.0.1\r\ns=raw\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       "m=audio 5000 RTP/AVP 0\r\n")


class Call:
    """An established call: the raw peer called us, we answered, the peer ACKed."""

    def __init__(self, sip: EmbeddedSipPort, peer: RawUdp, dialog: EmbeddedDialog,
                 to_tag: str):
        self.sip = sip
        self.peer = peer
        self.dialog = dialog
        self.to_tag = to_tag
        self.cseq = 1

    async def next_request(self, method: str, timeout: float = 3.0,
                           after: int = 0) -> SipRequest:
        """The next ``method`` request with a CSeq above ``after`` (skips our
        retransmissions: T1 is 50 ms here)."""
        while True:
            msg = parse_message(await self.peer.recv(timeout))
            if isinstance(msg, SipRequest) and msg.method == method and msg.cseq.seq > after:
                return msg

    def answer(self, req: SipRequest, status: int, body: str = "") -> None:
        resp = make_response(req, status, body=body.encode(),
                             content_type="application/sdp" if body else None)
        self.peer.send(resp.to_bytes(), self.sip.port)

    def send(self, method: str, body: str = "", branch: str = "") -> None:
        self.cseq += 1
        self.peer.send(sip_message(
            method, self.sip.port, self.peer.local_port, branch=branch or f"z9hG4bK{method}"
            f"{self.cseq}", call_id="edge", to_tag=self.to_tag, cseq=self.cseq, body=body,
            extra="Content-Type: application/sdp\r\n" if body else ""), self.sip.port)


@pytest.fixture
async def call(sip_fast_timers: EmbeddedSipPort, raw_udp: RawUdp) -> AsyncIterator[Call]:
    sip = sip_fast_timers
    answered: asyncio.Future[EmbeddedDialog] = asyncio.get_running_loop().create_future()

    async def invite(req: IncomingRequest) -> None:
        answered.set_result(await req.answer(sdp=OUR_SDP))  # type: ignore[arg-type]

    sip.on_request("INVITE", invite)
    raw_udp.send(sip_message("INVITE", sip.port, raw_udp.local_port, branch="z9hG4bKinv1",
                             call_id="edge", body=SDP,
                             extra="Content-Type: application/sdp\r\n"), sip.port)
    dialog = await asyncio.wait_for(answered, 3)
    while True:
        resp = parse_message(await raw_udp.recv())
        if resp.status == 200:  # type: ignore[union-attr]
            break
    to_tag = resp.to_tag
    assert to_tag == dialog.local_tag
    raw_udp.send(sip_message("ACK", sip.port, raw_udp.local_port, branch="z9hG4bKack1",
                             call_id="edge", to_tag=to_tag), sip.port)
    await asyncio.sleep(0.05)
    raw_udp.drain()
    yield Call(sip, raw_udp, dialog, to_tag)


async def test_481_to_our_request_ends_the_dialog(call: Call) -> None:
    ended: list[IncomingRequest] = []
    call.dialog.on("bye", ended.append)
    pending = asyncio.ensure_future(call.dialog.request("INFO", body=b"x",
                                                        content_type="text/plain"))
    info = await call.next_request("INFO")
    assert info.uri == f"sip:raw@127.0.0.1:{call.peer.local_port}"  # their Contact
    call.answer(info, 481)
    assert (await pending).status == 481
    assert not call.dialog.connected and call.sip.active_dialogs() == []
    assert [n.reason for n in ended] == ["481 Call/Transaction Does Not Exist"]  # type: ignore[attr-defined]
    # a dialog that ended answers locally, sends nothing
    resp = await call.dialog.request("INFO")
    assert resp.status == 481
    assert (await call.dialog.reinvite(sdp=OUR_SDP)).status == 481


async def test_timeout_of_our_request_ends_the_dialog(call: Call) -> None:
    ended: list[IncomingRequest] = []
    call.dialog.on("bye", ended.append)
    resp = await asyncio.wait_for(call.dialog.request("OPTIONS"), 10)  # nobody answers
    assert resp.status == 408
    assert not call.dialog.connected and [n.reason for n in ended] == [  # type: ignore[attr-defined]
        "408 Request Timeout"]


async def test_our_reinvites_are_sent_one_at_a_time(call: Call) -> None:
    first = asyncio.ensure_future(call.dialog.reinvite(sdp=OUR_SDP))
    second = asyncio.ensure_future(call.dialog.reinvite(
        sdp=OUR_SDP.replace(b"sendrecv", b"inactive")))
    inv1 = await call.next_request("INVITE")
    with pytest.raises(TimeoutError):  # the second waits for the first to finish
        await call.next_request("INVITE", timeout=0.3, after=inv1.cseq.seq)
    call.answer(inv1, 200, SDP)
    assert (await first).status == 200
    await call.next_request("ACK")
    inv2 = await call.next_request("INVITE", after=inv1.cseq.seq)
    assert inv2.cseq.seq == inv1.cseq.seq + 1 and b"a=inactive" in inv2.body
    call.answer(inv2, 200, SDP)
    assert (await second).status == 200
    assert call.dialog.local_sdp is not None and b"a=inactive" in call.dialog.local_sdp


async def test_crossing_reinvite_gets_491(call: Call) -> None:
    ours = asyncio.ensure_future(call.dialog.reinvite(sdp=OUR_SDP))
    inv = await call.next_request("INVITE")
    call.send("INVITE", body=SDP)  # theirs crosses ours
    while True:
        msg = parse_message(await call.peer.recv())
        if msg.status >= 200:  # type: ignore[union-attr]
            break
    assert msg.status == 491  # type: ignore[union-attr]
    call.answer(inv, 491)
    assert (await ours).status == 491
    assert call.dialog.connected


async def test_bye_while_their_reinvite_is_pending(call: Call) -> None:
    seen: list[IncomingRequest] = []
    call.dialog.on("reinvite", seen.append)  # never answered by the application
    call.send("INVITE", body=SDP)
    await asyncio.sleep(0.1)
    assert len(seen) == 1 and not seen[0].final_sent
    call.send("BYE")
    statuses = set()
    for _ in range(3):
        msg = parse_message(await call.peer.recv())
        statuses.add((msg.status, msg.cseq.method))  # type: ignore[union-attr]
    assert {(487, "INVITE"), (200, "BYE")} <= statuses
    assert not call.dialog.connected


async def test_unknown_in_dialog_method_gets_501(call: Call) -> None:
    call.send("PUBLISH")
    msg = parse_message(await call.peer.recv())
    assert msg.status == 501  # type: ignore[union-attr]
    assert call.dialog.connected


async def test_reinvite_with_a_broken_contact_gets_400(call: Call) -> None:
    call.cseq += 1
    msg = sip_message("INVITE", call.sip.port, call.peer.local_port, branch="z9hG4bKbadc",
                      call_id="edge", to_tag=call.to_tag, cseq=call.cseq).replace(
        f"Contact: <sip:raw@127.0.0.1:{call.peer.local_port}>".encode(),
        b"Contact: <sip:raw@127.0.0.1")
    call.peer.send(msg, call.sip.port)
    while True:
        resp = parse_message(await call.peer.recv())
        if resp.status >= 200:  # type: ignore[union-attr]
            break
    assert resp.status == 400 and call.dialog.connected  # type: ignore[union-attr]
    # a malformed ACK is dropped without a trace
    call.peer.send(sip_message("ACK", call.sip.port, call.peer.local_port, branch="z9hG4bKba",
                               call_id="edge", to_tag=call.to_tag).replace(
        b"To: <sip:pbx@", b"To: <<sip:pbx@"), call.sip.port)
    call.send("OPTIONS")
    assert parse_message(await call.peer.recv()).status == 200  # type: ignore[union-attr]
