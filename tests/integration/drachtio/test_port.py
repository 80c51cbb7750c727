"""``DrachtioSipPort`` (our client side) against SIPp through the real drachtio-server:
INVITE legs (provisional, BYE, digest, CANCEL, a 200 crossing the CANCEL, late offer)
and out-of-dialog requests (OPTIONS, REGISTER with and without credentials)."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.drachtio.client import Backoff
from engine.drachtio.dialogs import DrachtioDialog
from engine.drachtio.port import DrachtioSipPort
from engine.errors import SipError
from engine.ports import Credentials, SipPort
from tests.fixtures.drachtio import Drachtio
from tests.fixtures.sipp import SippResult, SippServer, scenario, start_sipp
from tests.integration.sip.callee import OUR_SDP
from tests.integration.sip.conftest import count, logged, sipp_log

pytestmark = pytest.mark.integration


@pytest.fixture
async def sip(drachtio_server: Drachtio) -> AsyncIterator[DrachtioSipPort]:
    port = DrachtioSipPort(drachtio_server.host, drachtio_server.admin_port,
                           drachtio_server.secret, backoff=Backoff())
    assert await port.start(timeout=10)
    try:
        yield port
    finally:
        await port.close()


@pytest.fixture
async def uas() -> AsyncIterator[Any]:
    servers: list[SippServer] = []

    async def start(name: str, **kw: Any) -> SippServer:
        kw.setdefault("extra", ["-m", "1"])
        server = await asyncio.to_thread(start_sipp, scenario(name), timeout=30, **kw)
        servers.append(server)
        return server

    yield start
    for s in servers:
        await asyncio.to_thread(s.stop)


async def finished(server: SippServer, timeout: float = 15) -> SippResult:
    return await asyncio.to_thread(server.wait, timeout)


def uri(server: SippServer, user: str = "bob") -> str:
    return f"sip:{user}@127.0.0.1:{server.port}"


async def test_port_satisfies_the_protocol(sip: DrachtioSipPort) -> None:
    assert isinstance(sip, SipPort)
    assert sip.contact_uri(user="x").startswith("sip:x@127.0.0.1:")
    assert sip.contact_uri(transport="tcp").endswith(";transport=tcp")


async def test_invite_answered_then_our_bye(sip: DrachtioSipPort, uas: Any) -> None:
    server = await uas("uas_answer")
    provisional: list[Any] = []
    leg = sip.invite(uri(server), sdp=OUR_SDP, on_provisional=provisional.append,
                     headers=[("X-Test", "leg-1")])
    dialog = await asyncio.wait_for(leg.result(), 10)
    assert isinstance(dialog, DrachtioDialog) and dialog.role == "uac" and dialog.connected
    assert [p.status for p in provisional] == [180]
    assert dialog.call_id == leg.call_id and dialog.local_tag == leg.from_tag
    assert dialog.id == f"{leg.call_id};from-tag={leg.from_tag}"
    assert dialog.remote_sdp is not None and b"s=sipp uas" in dialog.remote_sdp
    await dialog.bye()
    assert not dialog.connected and not sip.dialogs.by_id
    r = await finished(server)
    assert r.rc == 0, r.explain()
    (invite,) = [m for d, m in sipp_log(r) if d == "received" and m.startswith("INVITE")]
    assert "X-Test: leg-1" in invite and f"Call-ID: {leg.call_id}" in invite


async def test_invite_answers_407_once_with_credentials(sip: DrachtioSipPort,
                                                        uas: Any) -> None:
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
    creds = second.header("proxy-authorization") or ""
    assert 'username="alice"' in creds and f'uri="{second.uri}"' in creds
    assert count(r, "received", "ACK ") == 2  # the 407's (by drachtio) and the 2xx's (ours)


async def test_invite_407_without_credentials_fails(sip: DrachtioSipPort, uas: Any) -> None:
    leg = sip.invite(uri(await uas("uas_challenge407")), sdp=OUR_SDP)
    with pytest.raises(SipError) as info:
        await asyncio.wait_for(leg.result(), 10)
    assert info.value.status == 407 and info.value.response is not None


async def test_cancel_while_ringing(sip: DrachtioSipPort, uas: Any) -> None:
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
    assert "caller hung up" in cancel


async def test_late_offer_acked_by_the_application(sip: DrachtioSipPort, uas: Any) -> None:
    server = await uas("uas_late_offer")
    leg = sip.invite(uri(server), sdp=None)
    dialog = await asyncio.wait_for(leg.result(), 10)
    assert dialog.remote_sdp is not None and dialog.local_sdp is None
    await dialog.ack(sdp=OUR_SDP)
    assert dialog.local_sdp == OUR_SDP
    await dialog.ack(sdp=OUR_SDP)  # a second ACK is a no-op
    await asyncio.sleep(0.2)
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()
    (ack,) = [m for d, m in sipp_log(r) if d == "received" and m.startswith("ACK ")]
    assert "v=0" in ack


async def test_request_options(sip: DrachtioSipPort, uas: Any) -> None:
    server = await uas("uas_options")
    resp = await sip.request(f"sip:127.0.0.1:{server.port}", "OPTIONS")
    assert resp.status == 200
    assert (await finished(server)).rc == 0


async def test_register_with_and_without_credentials(sip: DrachtioSipPort, uas: Any) -> None:
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

    registrar = await uas("uas_registrar", keys=keys)
    resp = await sip.request(f"sip:127.0.0.1:{registrar.port}", "REGISTER", headers=headers)
    assert resp.status == 401 and resp.header("www-authenticate")


async def test_request_to_nobody_times_out_or_fails_locally(sip: DrachtioSipPort) -> None:
    resp = await sip.request("sip:127.0.0.1:9;transport=tcp", "OPTIONS")
    assert resp.status in (408, 503) and resp.header("Call-ID")


async def test_2xx_crossing_cancel_is_acked_and_byed_by_drachtio(sip: DrachtioSipPort,
                                                                 uas: Any) -> None:
    server = await uas("uas_answer_now")
    leg = sip.invite(uri(server), sdp=OUR_SDP)
    await leg.cancel()  # before the INVITE is even out: sent once it is, the 200 wins
    with pytest.raises(SipError) as info:
        await asyncio.wait_for(leg.result(), 10)
    assert info.value.status == 487
    r = await finished(server)
    assert r.rc == 0, r.explain()
    assert count(r, "received", "ACK ") == 1
    assert count(r, "received", "BYE ") == 1  # drachtio's, after our ACK (spec §5.3 item 10)
    assert not sip.dialogs.by_id


async def test_challenges_to_our_in_dialog_requests_are_answered(sip: DrachtioSipPort,
                                                                 uas: Any) -> None:
    """A trunk that challenges INFO (401), re-INVITE (407) and BYE (401) inside the
    dialog: each is answered once with the leg's credentials, as the embedded stack
    does; the digest covers the remote target drachtio put in the Request-URI."""
    server = await uas("uas_indialog_challenge")
    leg = sip.invite(uri(server), sdp=OUR_SDP, auth=Credentials("pbxuser", "regpass"))
    dialog = await asyncio.wait_for(leg.result(), 10)
    info = await dialog.request("INFO", body=b"Signal=5\r\nDuration=160\r\n",
                                content_type="application/dtmf-relay")
    assert info.status == 200
    reinvite = await dialog.reinvite(sdp=OUR_SDP)
    assert reinvite.status == 200 and dialog.connected
    await dialog.bye()
    r = await finished(server)
    assert r.rc == 0, r.explain()
    received = [logged(m) for d, m in sipp_log(r) if d == "received"]
    for method, header in (("INFO", "authorization"), ("INVITE", "proxy-authorization"),
                           ("BYE", "authorization")):
        sent = [m for m in received if m.method == method and m.to_tag]  # in the dialog
        assert len(sent) == 2, (method, [m.cseq for m in sent])
        first, retry = sent
        assert not first.header(header)
        creds = retry.header(header) or ""
        assert 'username="pbxuser"' in creds and f'uri="{retry.uri}"' in creds, creds
        assert retry.cseq.seq > first.cseq.seq
    assert not sip.dialogs.by_id


async def test_in_dialog_challenge_without_credentials_is_returned(sip: DrachtioSipPort,
                                                                    uas: Any) -> None:
    server = await uas("uas_indialog_challenge")
    leg = sip.invite(uri(server), sdp=OUR_SDP)
    dialog = await asyncio.wait_for(leg.result(), 10)
    info = await dialog.request("INFO", body=b"Signal=5\r\n",
                                content_type="application/dtmf-relay")
    assert info.status == 401 and info.header("www-authenticate")
    await dialog.bye()
