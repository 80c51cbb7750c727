"""Out-of-dialog requests served by the embedded stack, SIPp or raw sockets as the peer."""

from __future__ import annotations

import asyncio

import pytest

from engine.ports import IncomingRequest
from engine.sip.builders import make_response
from engine.sip.parser import parse_message
from engine.transport import EmbeddedSipPort
from tests.integration.sip.conftest import RawUdp, sip_message, sipp_run

pytestmark = pytest.mark.integration


def serve_options(sip: EmbeddedSipPort) -> list[IncomingRequest]:
    seen: list[IncomingRequest] = []

    async def options(req: IncomingRequest) -> None:
        seen.append(req)
        await req.reply(200, headers=[("Allow", "INVITE, ACK, CANCEL, BYE, OPTIONS")])

    sip.on_request("OPTIONS", options)
    return seen


async def test_local_addresses_and_contact(sip: EmbeddedSipPort) -> None:
    addrs = {(a.transport, a.host, a.port) for a in sip.local_addresses()}
    assert addrs == {("udp", "127.0.0.1", sip.port), ("tcp", "127.0.0.1", sip.port)}
    assert sip.contact_uri() == f"sip:127.0.0.1:{sip.port}"
    assert sip.contact_uri(transport="tcp", user="bob") == (
        f"sip:bob@127.0.0.1:{sip.port};transport=tcp")


async def test_options_answered_200(sip: EmbeddedSipPort) -> None:
    seen = serve_options(sip)
    r = await sipp_run("options_uac", sip, extra=["-m", "5", "-r", "20", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 5, r.explain()
    assert len(seen) == 5
    req = seen[0]
    assert req.method == "OPTIONS" and req.source.transport == "udp"
    assert req.source.host == "127.0.0.1" and req.final_sent and not req.cancelled
    assert req.uri == f"sip:pbx@127.0.0.1:{sip.port}"
    assert req.header("cseq") == "1 OPTIONS" and req.flow is None


async def test_register_answered_with_distinct_users(sip: EmbeddedSipPort) -> None:
    users: list[str] = []

    async def register(req: IncomingRequest) -> None:
        users.append(req.message.to.uri.user)
        await req.reply(200, headers=[("Contact", f"{req.header('contact')};expires=300")])

    sip.on_request("register", register)  # method names are case-insensitive
    r = await sipp_run("register_uac", sip, extra=["-m", "50", "-r", "200"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 50, r.explain()
    assert len(set(users)) == 50
    assert "expires=300" in r.messages


async def test_no_handler_gets_405_with_allow(sip: EmbeddedSipPort) -> None:
    serve_options(sip)
    r = await sipp_run("message_405_uac", sip, extra=["-m", "2", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 2, r.explain()


async def test_unknown_dialog_gets_481(sip: EmbeddedSipPort) -> None:
    r = await sipp_run("bye_unknown_481_uac", sip, extra=["-m", "2", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 2, r.explain()


async def test_handler_exception_answers_500(sip: EmbeddedSipPort, raw_udp: RawUdp) -> None:
    async def broken(req: IncomingRequest) -> None:
        raise RuntimeError("application bug")

    sip.on_request("OPTIONS", broken)
    raw_udp.send(sip_message("OPTIONS", sip.port, raw_udp.local_port, branch="z9hG4bKe1",
                             call_id="boom"), sip.port)
    resp = parse_message(await raw_udp.recv())
    assert resp.status == 500  # type: ignore[union-attr]


async def test_second_final_response_is_ignored(sip: EmbeddedSipPort, raw_udp: RawUdp) -> None:
    done = asyncio.Event()

    async def twice(req: IncomingRequest) -> None:
        await req.reply(100)
        await req.reply(200)
        await req.reply(486)
        done.set()

    sip.on_request("OPTIONS", twice)
    raw_udp.send(sip_message("OPTIONS", sip.port, raw_udp.local_port, branch="z9hG4bKt1",
                             call_id="twice"), sip.port)
    await asyncio.wait_for(done.wait(), 2)
    first = parse_message(await raw_udp.recv())
    second = parse_message(await raw_udp.recv())
    assert (first.status, second.status) == (100, 200)  # type: ignore[union-attr]
    await asyncio.sleep(0.2)
    assert raw_udp.drain() == []
    assert second.to_tag  # the final carries our To tag


async def test_retransmitted_request_gets_the_same_response(
        sip: EmbeddedSipPort, raw_udp: RawUdp) -> None:
    seen = serve_options(sip)
    msg = sip_message("OPTIONS", sip.port, raw_udp.local_port, branch="z9hG4bKrt1",
                      call_id="retrans")
    raw_udp.send(msg, sip.port)
    first = await raw_udp.recv()
    raw_udp.send(msg, sip.port)
    again = await raw_udp.recv()
    assert first == again and len(seen) == 1


@pytest.mark.parametrize("garbage", [
    b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKm1\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: m1\r\nCSeq: x OPTIONS\r\n\r\n",
    b"OPTIONS sip:x SIP/2.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKm2\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCSeq: 1 OPTIONS\r\n\r\n",
    b"OPTIONS sip:x SIP/3.0\r\nVia: SIP/2.0/UDP 127.0.0.1:{lp};branch=z9hG4bKm3\r\n"
    b"From: <sip:a@b>;tag=1\r\nTo: <sip:b@c>\r\nCall-ID: m3\r\nCSeq: 1 OPTIONS\r\n\r\n",
])
async def test_malformed_request_gets_4xx_5xx_and_next_is_served(
        sip: EmbeddedSipPort, raw_udp: RawUdp, garbage: bytes) -> None:
    serve_options(sip)
    raw_udp.send(garbage.replace(b"{lp}", str(raw_udp.local_port).encode()), sip.port)
    status_line = (await raw_udp.recv()).split(b"\r\n", 1)[0]
    # the response echoes the broken header lines, so check its start line only
    assert status_line.split(b" ")[1] in (b"400", b"505"), status_line
    raw_udp.send(b"\x00\xff garbage without any structure", sip.port)  # dropped
    raw_udp.send(sip_message("OPTIONS", sip.port, raw_udp.local_port, branch="z9hG4bKok",
                             call_id="after"), sip.port)
    resp = parse_message(await raw_udp.recv())
    assert resp.status == 200 and resp.call_id == "after"  # type: ignore[union-attr]


async def test_busy_port_is_a_clear_error(sip: EmbeddedSipPort) -> None:
    from engine.errors import SipTransportError

    other = EmbeddedSipPort(host="127.0.0.1", port=sip.port, transports=("udp",))
    with pytest.raises(SipTransportError, match=f"udp 127.0.0.1:{sip.port}"):
        await other.start()
    await other.close()


async def test_runs_on_the_parametrized_loop(request: pytest.FixtureRequest) -> None:
    loop_module = type(asyncio.get_running_loop()).__module__
    assert ("uvloop" in loop_module) == request.node.name.endswith("[uvloop]")


@pytest.mark.parametrize("host", ["::1", "::"])
async def test_ipv6_listener(host: str) -> None:
    sip = EmbeddedSipPort(host=host, port=0, transports=("udp", "tcp"))
    await sip.start()
    try:
        serve_options(sip)
        families = {a.host for a in sip.local_addresses()}
        assert families == ({"::1"} if host == "::1" else {"::", "0.0.0.0"})
        loop = asyncio.get_running_loop()
        for target in (["::1", "127.0.0.1"] if host == "::" else ["::1"]):
            transport, proto = await loop.create_datagram_endpoint(
                RawUdp, local_addr=(target, 0))
            try:
                lp = transport.get_extra_info("sockname")[1]
                msg = sip_message("OPTIONS", sip.port, lp, branch=f"z9hG4bK6{lp}",
                                  call_id=f"v6-{target}").replace(
                    b"127.0.0.1", f"[{target}]".encode() if ":" in target else target.encode())
                transport.sendto(msg, (target, sip.port))
                resp = parse_message(await proto.recv())
                assert resp.status == 200  # type: ignore[union-attr]
            finally:
                transport.close()
        if host == "::1":
            assert sip.contact_uri() == f"sip:[::1]:{sip.port}"
    finally:
        await sip.close()


async def test_external_address_in_contact_and_via(raw_udp: RawUdp) -> None:
    sip = EmbeddedSipPort(host="127.0.0.1", port=0, transports=("udp",),
                          external_address="203.0.113.5")
    await sip.start()
    try:
        async def invite(req: IncomingRequest) -> None:
            await req.answer(sdp=b"v=0\r\n")

        sip.on_request("INVITE", invite)
        assert sip.contact_uri(user="pbx") == f"sip:pbx@203.0.113.5:{sip.port}"
        raw_udp.send(sip_message("INVITE", sip.port, raw_udp.local_port, branch="z9hG4bKx1",
                                 call_id="ext"), sip.port)
        while True:
            resp = parse_message(await raw_udp.recv())
            if resp.status == 200:  # type: ignore[union-attr]
                break
        assert resp.header("contact") == f"<sip:203.0.113.5:{sip.port}>"
        # our own requests carry it in Via (answers still reach us: rport/received)
        pending = asyncio.ensure_future(
            sip.request(f"sip:127.0.0.1:{raw_udp.local_port}", "OPTIONS"))
        data = await raw_udp.recv()
        while not data.startswith(b"OPTIONS"):
            data = await raw_udp.recv()
        req = parse_message(data)
        assert req.top_via.host == "203.0.113.5" and req.top_via.port == sip.port
        assert "203.0.113.5" in (req.header("from") or "")
        raw_udp.send(make_response(req, 200, to_tag="x").to_bytes(), sip.port)  # type: ignore[arg-type]
        assert (await asyncio.wait_for(pending, 2)).status == 200
    finally:
        await sip.close()


async def test_unsupported_require_gets_420(sip: EmbeddedSipPort, raw_udp: RawUdp) -> None:
    seen = serve_options(sip)
    raw_udp.send(sip_message("OPTIONS", sip.port, raw_udp.local_port, branch="z9hG4bKrq",
                             call_id="require", extra="Require: 100rel, timer\r\n"), sip.port)
    resp = parse_message(await raw_udp.recv())
    assert resp.status == 420 and resp.header("unsupported") == "100rel"  # type: ignore[union-attr]
    assert resp.header_values("unsupported") == ["100rel", "timer"]
    assert seen == []


async def test_merged_invite_gets_482(sip: EmbeddedSipPort, raw_udp: RawUdp) -> None:
    invites: list[IncomingRequest] = []

    async def ring(req: IncomingRequest) -> None:
        invites.append(req)
        await req.reply(180)

    sip.on_request("INVITE", ring)
    for branch in ("z9hG4bKpath1", "z9hG4bKpath2"):  # one INVITE forked to us twice
        raw_udp.send(sip_message("INVITE", sip.port, raw_udp.local_port, branch=branch,
                                 call_id="merged"), sip.port)
    statuses = sorted([parse_message(await raw_udp.recv()).status  # type: ignore[union-attr]
                       for _ in range(4)])
    assert statuses == [100, 100, 180, 482]
    assert len(invites) == 1
