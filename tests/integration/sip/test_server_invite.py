"""INVITE server transactions, answer(), UAS dialogs, BYE and CANCEL — SIPp calls us."""

from __future__ import annotations

import asyncio

import pytest

from engine.errors import SipError
from engine.transport import EmbeddedSipPort
from tests.integration.sip.callee import OUR_SDP, Callee
from tests.integration.sip.conftest import count, sipp_run

pytestmark = pytest.mark.integration


async def until(check, timeout: float = 5.0) -> None:  # type: ignore[no-untyped-def]
    end = asyncio.get_running_loop().time() + timeout
    while not check():
        assert asyncio.get_running_loop().time() < end, "condition not met in time"
        await asyncio.sleep(0.02)


async def test_invite_180_200_ack_bye(sip: EmbeddedSipPort) -> None:
    app = Callee(sip)
    r = await sipp_run("uac_invite_bye", sip, extra=["-m", "3", "-r", "10", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 3, r.explain()
    assert count(r, "received", "SIP/2.0 180 Ringing") == 3
    assert count(r, "received", "SIP/2.0 100 Trying") == 3
    assert len(app.dialogs) == len(app.acks) == len(app.byes) == 3
    d = app.dialogs[0]
    assert not d.connected and d.role == "uas"
    assert d.remote_sdp is not None and b"m=audio" in d.remote_sdp
    assert d.local_sdp == OUR_SDP
    assert d.id == f"{app.invites[0].call_id};from-tag={d.remote_tag}"
    assert app.byes[0].method == "BYE" and app.byes[0].final_sent
    assert sip.active_dialogs() == []
    # our Contact was in the 200 and SIPp sent its ACK/BYE there
    assert f"Contact: <sip:127.0.0.1:{sip.port}>" in r.messages


async def test_callee_hangs_up(sip: EmbeddedSipPort) -> None:
    app = Callee(sip, hangup_after=0.1)
    r = await sipp_run("uac_invite_wait_bye", sip, extra=["-m", "1", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    await asyncio.wait_for(app.ended.wait(), 5)
    assert app.byes == []  # our own BYE is not reported back to us
    assert not app.dialogs[0].connected and app.dialogs[0].ended_reason == "BYE sent"


async def test_cancel_gets_200_and_487_and_fires_on_cancel(sip: EmbeddedSipPort) -> None:
    app = Callee(sip, delay=1.0)
    r = await sipp_run("uac_cancel", sip, extra=["-m", "2", "-r", "10", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 2, r.explain()
    await until(lambda: len(app.errors) == 2)
    assert len(app.cancelled) == 2
    assert all(req.cancelled and req.final_sent for req in app.invites)
    # answering a cancelled INVITE is refused, nothing is sent
    assert [e.status for e in app.errors if isinstance(e, SipError)] == [487, 487]
    assert "SIP/2.0 487" in r.messages and sip.active_dialogs() == []


async def test_on_cancel_registered_late_still_fires(sip: EmbeddedSipPort) -> None:
    app = Callee(sip, delay=1.0)
    r = await sipp_run("uac_cancel", sip, extra=["-m", "1", "-s", "pbx"])
    assert r.rc == 0, r.explain()
    fired = asyncio.Event()
    app.invites[0].on_cancel(fired.set)
    await asyncio.wait_for(fired.wait(), 1)


async def test_2xx_retransmitted_until_ack(sip: EmbeddedSipPort) -> None:
    app = Callee(sip)
    r = await sipp_run("uac_invite_slow_ack", sip, extra=["-m", "1", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    # the 200 to the INVITE went out at 0 s and again at T1 = 0.5 s before the ACK
    assert count(r, "received", "SIP/2.0 200", "1 INVITE") >= 2, r.messages
    assert len(app.acks) == 1  # the ACK is delivered once


async def test_no_ack_sends_bye_with_reason(sip_fast_timers: EmbeddedSipPort) -> None:
    sip = sip_fast_timers
    app = Callee(sip)
    r = await sipp_run("uac_invite_no_ack", sip, extra=["-m", "1", "-s", "pbx"], timeout=20)
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    await asyncio.wait_for(app.ended.wait(), 5)
    assert 'Reason: SIP;cause=200;text="ACK timeout"' in r.messages
    (notice,) = app.byes
    assert notice.reason == "ACK timeout" and notice.final_sent  # type: ignore[attr-defined]
    assert not app.dialogs[0].connected and app.acks == []


async def test_late_offer_answer_arrives_in_ack(sip: EmbeddedSipPort) -> None:
    app = Callee(sip)
    r = await sipp_run("uac_late_offer", sip, extra=["-m", "1", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    d = app.dialogs[0]
    assert app.invites[0].body == b""
    assert d.remote_sdp is not None and b"s=late answer" in d.remote_sdp
    assert app.acks[0].body == d.remote_sdp


async def test_slow_application_answers_after_retransmissions(sip: EmbeddedSipPort) -> None:
    seen = []

    async def slow(req) -> None:  # type: ignore[no-untyped-def]
        seen.append(req)
        await asyncio.sleep(1.7)
        await req.reply(200, headers=[("Contact", f"{req.header('contact')};expires=60")])

    sip.on_request("REGISTER", slow)
    r = await sipp_run("register_uac", sip, extra=["-m", "1"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    assert r.stat("Retransmissions") >= 1, r.explain()
    assert len(seen) == 1  # retransmissions were absorbed by the transaction layer


async def test_invite_without_handler_gets_405(sip: EmbeddedSipPort) -> None:
    r = await sipp_run("uac_invite_bye", sip, extra=["-m", "1", "-s", "pbx"], timeout=5)
    assert r.rc != 0 and "SIP/2.0 405 Method Not Allowed" in r.messages


async def test_calls_complete_despite_packet_loss(sip: EmbeddedSipPort) -> None:
    app = Callee(sip)
    # SIPp drops 10 % of what it sends and receives; retransmissions on both sides recover
    r = await sipp_run("uac_invite_bye", sip, timeout=90,
                       extra=["-m", "20", "-r", "10", "-l", "20", "-s", "pbx", "-lost", "10"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 20, r.explain()
    assert r.stat("FailedCall") == 0
    # ~100 messages at 10 % loss: some were dropped (P(none) ≈ 3e-5)
    assert "UDP message lost" in r.messages or "voluntary lost" in r.messages
    # SIPp neither retransmits an ACK it "lost" nor sends the BYE of that call (it drops
    # the call): those dialogs wait for the ACK time-out; every ACKed one was BYE'd.
    acked = {a.dialog for a in app.acks}  # type: ignore[attr-defined]
    await until(lambda: all(not d.connected for d in acked))
    assert len(app.dialogs) == 20 and len(app.byes) >= len(acked) >= 10
    assert {d for d in app.dialogs if d.connected} == set(app.dialogs) - acked - {
        b.dialog for b in app.byes}  # type: ignore[attr-defined]


async def test_in_dialog_requests_to_our_uas_dialog(sip: EmbeddedSipPort) -> None:
    app = Callee(sip)
    events: dict[str, list] = {"reinvite": [], "info": []}

    def wire(dialog) -> None:  # type: ignore[no-untyped-def]
        async def reinvite(req) -> None:  # type: ignore[no-untyped-def]
            events["reinvite"].append(req)
            again = await req.answer(sdp=OUR_SDP.replace(b"a=sendrecv", b"a=recvonly"))
            assert again is dialog

        def info(req) -> None:  # type: ignore[no-untyped-def]
            events["info"].append(req)
            sip.spawn(req.reply(200), "info reply")

        dialog.on("reinvite", reinvite)
        dialog.on("info", info)

    original = app.handle

    async def handle(req) -> None:  # type: ignore[no-untyped-def]
        await original(req)
        wire(app.dialogs[-1])

    sip.on_request("INVITE", handle)
    r = await sipp_run("uac_indialog", sip, extra=["-m", "1", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    d = app.dialogs[0]
    assert len(events["reinvite"]) == 1 and len(events["info"]) == 1
    assert events["info"][0].body.strip().startswith(b"Signal=7")
    assert events["info"][0].dialog is d
    assert b"s=reoffer" in (d.remote_sdp or b"") and b"a=recvonly" in (d.local_sdp or b"")
    assert len(app.acks) == 2  # the INVITE's and the re-INVITE's ACK
    assert len(app.byes) == 1 and not d.connected
