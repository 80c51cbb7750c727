"""Our client side against SIPp as the callee / registrar / server: invite(), request(),
CANCEL, digest auth, forking, late offer, in-dialog requests both ways."""

from __future__ import annotations

import asyncio
import socket
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.errors import SipError
from engine.ports import Credentials, IncomingRequest, SipPort
from engine.sip.parser import parse_message
from engine.transport import EmbeddedSipPort
from engine.transport.dialogs import EmbeddedDialog
from tests.fixtures.procs import free_port, tcp_listening
from tests.fixtures.sipp import SippResult, SippServer, scenario, start_sipp
from tests.integration.sip.callee import OUR_SDP
from tests.integration.sip.conftest import count, logged, sipp_log

pytestmark = pytest.mark.integration

NEW_SDP = OUR_SDP.replace(b"a=sendrecv", b"a=recvonly").replace(b"o=pbx 1 1", b"o=pbx 1 2")


@pytest.fixture
async def uas() -> AsyncIterator[Any]:
    """``await uas(name, **kw)`` starts a SIPp UAS in the background (stopped after)."""
    servers: list[SippServer] = []

    async def start(name: str, transport: str = "udp", **kw: Any) -> SippServer:
        kw.setdefault("extra", ["-m", "1"])
        server = await asyncio.to_thread(start_sipp, scenario(name), transport=transport,
                                         timeout=30, **kw)
        servers.append(server)
        if transport == "tcp":
            await wait_tcp(server.port)
        return server

    yield start
    for s in servers:
        await asyncio.to_thread(s.stop)


async def wait_tcp(port: int) -> None:
    for _ in range(100):
        if tcp_listening(port):
            return
        await asyncio.sleep(0.05)
    raise TimeoutError(f"nothing listens on tcp {port}")


async def finished(server: SippServer, timeout: float = 15) -> SippResult:
    return await asyncio.to_thread(server.wait, timeout)


def uri(server: SippServer, user: str = "bob", params: str = "") -> str:
    return f"sip:{user}@127.0.0.1:{server.port}{params}"


async def test_port_satisfies_the_protocol(sip: EmbeddedSipPort) -> None:
    assert isinstance(sip, SipPort)


async def test_invite_answered_then_our_bye(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_answer")
    provisional: list[Any] = []
    leg = sip.invite(uri(server), sdp=OUR_SDP, on_provisional=provisional.append,
                     headers=[("X-Test", "leg-1")])
    dialog = await asyncio.wait_for(leg.result(), 10)
    assert isinstance(dialog, EmbeddedDialog) and dialog.role == "uac" and dialog.connected
    assert [p.status for p in provisional] == [180]
    assert dialog.call_id == leg.call_id and dialog.local_tag == leg.from_tag
    assert dialog.id == f"{leg.call_id};from-tag={leg.from_tag}"
    assert dialog.remote_sdp is not None and b"s=sipp uas" in dialog.remote_sdp
    assert dialog.local_sdp == OUR_SDP
    await dialog.bye()
    assert not dialog.connected and sip.active_dialogs() == []
    r = await finished(server)
    assert r.rc == 0, r.explain()
    (invite,) = [m for d, m in sipp_log(r) if d == "received" and m.startswith("INVITE")]
    assert "X-Test: leg-1" in invite and f"Contact: <sip:127.0.0.1:{sip.port}>" in invite
    assert "Max-Forwards: 70" in invite and f"Call-ID: {leg.call_id}" in invite


async def test_invite_answers_407_once_with_credentials(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_challenge407")
    leg = sip.invite(uri(server), sdp=OUR_SDP, auth=Credentials("alice", "secret"))
    dialog = await asyncio.wait_for(leg.result(), 10)
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()
    first, second = [logged(m) for d, m in sipp_log(r)
                     if d == "received" and m.startswith("INVITE")]
    assert first.call_id == second.call_id and first.from_tag == second.from_tag
    assert second.cseq.seq == first.cseq.seq + 1
    assert first.top_via.branch != second.top_via.branch
    creds = second.header("proxy-authorization") or ""
    assert 'username="alice"' in creds and 'realm="pbx.test"' in creds and "qop=auth" in creds
    assert f'uri="{second.uri}"' in creds  # the Request-URI as sent
    assert count(r, "received", "ACK ") == 2  # the 407's ACK (by the stack) and the 2xx's


async def test_invite_407_without_credentials_fails(sip: EmbeddedSipPort, uas: Any) -> None:
    leg = sip.invite(uri(await uas("uas_challenge407")), sdp=OUR_SDP)
    with pytest.raises(SipError) as info:
        await asyncio.wait_for(leg.result(), 10)
    assert info.value.status == 407 and info.value.response is not None


async def test_cancel_while_ringing(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_ring_cancel")
    ringing = asyncio.Event()
    leg = sip.invite(uri(server), sdp=OUR_SDP, on_provisional=lambda r: ringing.set())
    await asyncio.wait_for(ringing.wait(), 10)
    await leg.cancel(headers=[("Reason", 'SIP;cause=487;text="caller hung up"')])
    with pytest.raises(SipError) as info:
        await asyncio.wait_for(leg.result(), 10)
    assert info.value.status == 487
    r = await finished(server)
    assert r.rc == 0, r.explain()
    (cancel,) = [m for d, m in sipp_log(r) if d == "received" and m.startswith("CANCEL")]
    assert 'Reason: SIP;cause=487;text="caller hung up"' in cancel


async def test_2xx_crossing_cancel_is_acked_and_byed(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_answer_now")
    leg = sip.invite(uri(server), sdp=OUR_SDP)
    await leg.cancel()  # before any provisional: held by the stack, the 200 wins
    with pytest.raises(SipError) as info:
        await asyncio.wait_for(leg.result(), 10)
    assert info.value.status == 487
    r = await finished(server)
    assert r.rc == 0, r.explain()
    assert count(r, "received", "CANCEL") == 0
    (bye,) = [m for d, m in sipp_log(r) if d == "received" and m.startswith("BYE")]
    assert "CANCEL crossed the 2xx" in bye
    assert sip.active_dialogs() == []


async def test_cancel_of_an_answered_leg_byes_it(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_answer")
    leg = sip.invite(uri(server), sdp=OUR_SDP)
    dialog = await asyncio.wait_for(leg.result(), 10)
    await leg.cancel()
    assert not dialog.connected
    assert (await finished(server)).rc == 0


async def test_forked_second_2xx_is_acked_and_byed(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_fork")
    leg = sip.invite(uri(server), sdp=OUR_SDP)
    dialog = await asyncio.wait_for(leg.result(), 10)
    assert dialog.remote_tag.startswith("forkA")
    await asyncio.sleep(0.3)  # the stack ACKs and BYEs fork B meanwhile
    assert dialog.connected
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()


async def test_late_offer_acked_by_the_application(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_late_offer")
    leg = sip.invite(uri(server), sdp=None)
    dialog = await asyncio.wait_for(leg.result(), 10)
    assert dialog.remote_sdp is not None and b"s=sipp uas" in dialog.remote_sdp
    assert dialog.local_sdp is None
    await dialog.ack(sdp=OUR_SDP)
    assert dialog.local_sdp == OUR_SDP
    await dialog.ack(sdp=OUR_SDP)  # a second ACK is a no-op
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()
    assert count(r, "received", "ACK ") == 1


async def test_late_offer_not_acked_in_time(sip_fast_timers: EmbeddedSipPort,
                                            uas: Any) -> None:
    sip = sip_fast_timers
    server = await uas("uas_answer")
    leg = sip.invite(uri(server), sdp=None)
    dialog = await asyncio.wait_for(leg.result(), 10)
    ended: list[IncomingRequest] = []
    dialog.on("bye", ended.append)
    r = await finished(server)  # the port ACKs without a body and BYEs after 64*T1
    assert r.rc == 0, r.explain()
    assert [n.reason for n in ended] == ["ACK not sent by the application"]  # type: ignore[attr-defined]
    assert not dialog.connected


async def test_invite_times_out_with_408(sip_fast_timers: EmbeddedSipPort) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        leg = sip_fast_timers.invite(f"sip:x@127.0.0.1:{silent.getsockname()[1]}", sdp=OUR_SDP)
        with pytest.raises(SipError) as info:
            await asyncio.wait_for(leg.result(), 10)
        assert info.value.status == 408 and info.value.response is None
        req = parse_message(silent.recv(65535))
        assert req.method == "INVITE"  # type: ignore[union-attr]
    finally:
        silent.close()


async def test_invite_over_tcp_to_nobody_is_503(sip: EmbeddedSipPort) -> None:
    leg = sip.invite(f"sip:x@127.0.0.1:{free_port()};transport=tcp", sdp=OUR_SDP)
    with pytest.raises(SipError) as info:
        await asyncio.wait_for(leg.result(), 10)
    assert info.value.status == 503


async def test_invite_and_bye_over_tcp(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_answer", transport="tcp")
    leg = sip.invite(uri(server, params=";transport=tcp"), sdp=OUR_SDP)
    dialog = await asyncio.wait_for(leg.result(), 10)
    assert dialog.transport == "tcp"
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()
    (invite,) = [m for d, m in sipp_log(r) if d == "received" and m.startswith("INVITE")]
    assert "Via: SIP/2.0/TCP" in invite
    assert f"Contact: <sip:127.0.0.1:{sip.port};transport=tcp>" in invite


async def test_in_dialog_requests_both_ways(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_indialog")
    leg = sip.invite(uri(server), sdp=OUR_SDP)
    dialog = await asyncio.wait_for(leg.result(), 10)
    infos: list[IncomingRequest] = []
    got_info = asyncio.Event()

    async def on_info(req: IncomingRequest) -> None:
        infos.append(req)
        await req.reply(200)
        got_info.set()

    dialog.on("info", on_info)  # re-INVITE: no listener, answered 200 with our SDP
    await asyncio.wait_for(got_info.wait(), 10)
    assert infos[0].body.strip().startswith(b"Signal=5")
    assert dialog.remote_sdp is not None and b"s=sipp reinvite" in dialog.remote_sdp
    resp = await dialog.request("INFO", body=b"Signal=1\r\nDuration=100\r\n",
                                content_type="application/dtmf-relay")
    assert resp.status == 200
    resp = await dialog.reinvite(sdp=NEW_SDP)
    assert resp.status == 200 and dialog.local_sdp == NEW_SDP
    assert b"s=sipp uas" in (dialog.remote_sdp or b"")
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()
    ours = [logged(m) for d, m in sipp_log(r)
            if d == "received" and m.split(" ", 1)[0] in ("INFO", "INVITE", "BYE")]
    seqs = [m.cseq.seq for m in ours]
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # our CSeq grows
    # without a listener, their re-INVITE got 200 with our current SDP
    (ok,) = [m for d, m in sipp_log(r)
             if d == "received" and m.startswith("SIP/2.0 200") and "CSeq: 100 INVITE" in m]
    assert "o=pbx 1 1" in ok and "a=sendrecv" in ok


async def test_request_options(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_options")
    resp = await sip.request(f"sip:127.0.0.1:{server.port}", "OPTIONS")
    assert resp.status == 200
    assert (await finished(server)).rc == 0


async def test_request_to_a_name(sip: EmbeddedSipPort, uas: Any) -> None:
    server = await uas("uas_options")
    resp = await sip.request(f"sip:localhost:{server.port}", "options")
    assert resp.status == 200


async def test_register_with_and_without_credentials(sip: EmbeddedSipPort, uas: Any) -> None:
    keys = {"user": "alice", "pass": "secret"}
    registrar = await uas("uas_registrar", keys=keys)
    contact = f"<{sip.contact_uri(user='alice')}>"
    headers = [("From", "<sip:alice@pbx.test>;tag=trunk1"), ("To", "<sip:alice@pbx.test>"),
               ("Call-ID", "trunk-reg-1@pbx"), ("CSeq", "7 REGISTER"), ("Contact", contact),
               ("Expires", "300")]
    resp = await sip.request(f"sip:127.0.0.1:{registrar.port}", "REGISTER", headers=headers,
                             auth=Credentials("alice", "secret"))
    assert resp.status == 200 and "expires=300" in (resp.header("contact") or "")
    r = await finished(registrar)
    assert r.rc == 0, r.explain()
    first, second = [logged(m) for d, m in sipp_log(r)
                     if d == "received" and m.startswith("REGISTER")]
    for msg in (first, second):  # the caller's headers went out as given
        assert msg.call_id == "trunk-reg-1@pbx" and msg.from_tag == "trunk1"
        assert msg.header("contact") == contact and msg.header("expires") == "300"
    assert (first.cseq.seq, second.cseq.seq) == (7, 8)
    assert second.header("authorization") and not first.header("authorization")

    # without credentials the challenge is returned as is
    registrar = await uas("uas_registrar", keys=keys)
    resp = await sip.request(f"sip:127.0.0.1:{registrar.port}", "REGISTER", headers=headers)
    assert resp.status == 401 and resp.header("www-authenticate")

    # a wrong password: the registrar's 403 comes back (answered once, not again)
    registrar = await uas("uas_registrar", keys=keys)
    resp = await sip.request(f"sip:127.0.0.1:{registrar.port}", "REGISTER", headers=headers,
                             auth=Credentials("alice", "wrong"))
    assert resp.status == 403


async def test_request_timeout_is_a_local_408(sip_fast_timers: EmbeddedSipPort) -> None:
    silent = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    silent.bind(("127.0.0.1", 0))
    try:
        resp = await sip_fast_timers.request(f"sip:127.0.0.1:{silent.getsockname()[1]}",
                                             "OPTIONS")
        assert resp.status == 408 and (resp.header("cseq") or "").endswith("OPTIONS")
    finally:
        silent.close()


async def test_request_transport_failure_is_a_local_503(sip: EmbeddedSipPort) -> None:
    resp = await sip.request(f"sip:127.0.0.1:{free_port()};transport=tcp", "OPTIONS")
    assert resp.status == 503


async def test_request_rejects_invite_and_bad_uris(sip: EmbeddedSipPort) -> None:
    with pytest.raises(ValueError):
        await sip.request("sip:127.0.0.1", "INVITE")
    with pytest.raises(ValueError):
        await sip.request("tel:+4930123", "OPTIONS")
