"""TCP: SIPp calls over TCP, connection reuse, framing, keep-alives, idle time-out."""

from __future__ import annotations

import asyncio

import pytest

from engine.ports import IncomingRequest
from engine.sip.parser import parse_message
from engine.transport import EmbeddedSipPort
from engine.transport.tcp_limits import TcpLimits
from tests.integration.sip.callee import Callee
from tests.integration.sip.conftest import count, sip_message, sipp_run

pytestmark = pytest.mark.integration


async def test_invite_bye_over_tcp(sip: EmbeddedSipPort) -> None:
    app = Callee(sip)
    r = await sipp_run("uac_invite_bye", sip, transport="tcp", extra=["-m", "3", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 3, r.explain()
    assert len(app.acks) == len(app.byes) == 3
    req = app.invites[0]
    assert req.source.transport == "tcp" and req.flow is not None
    assert req.flow.startswith("tcp-")
    assert f"Contact: <sip:127.0.0.1:{sip.port};transport=tcp>" in r.messages
    assert "TCP message" in r.messages


async def test_our_bye_reuses_the_callers_connection(sip: EmbeddedSipPort) -> None:
    app = Callee(sip, hangup_after=0.1)
    tcp = sip.driver.tcp
    assert tcp is not None
    opened: list[tuple] = []
    original = tcp._queue
    tcp._queue = lambda *a: (opened.append(a), original(*a))  # type: ignore[method-assign]
    r = await sipp_run("uac_invite_wait_bye", sip, transport="tcp", extra=["-m", "1", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 1, r.explain()
    await asyncio.wait_for(app.ended.wait(), 5)
    assert count(r, "received", "BYE ") == 1
    assert opened == []  # no new connection: the BYE went over the caller's flow


async def test_options_over_tcp(sip: EmbeddedSipPort) -> None:
    async def options(req: IncomingRequest) -> None:
        await req.reply(200)

    sip.on_request("OPTIONS", options)
    r = await sipp_run("options_uac", sip, transport="tcp", extra=["-m", "5", "-s", "pbx"])
    assert r.rc == 0 and r.stat("SuccessfulCall") == 5, r.explain()


class TcpPeer:
    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer

    @property
    def local_port(self) -> int:
        return self.writer.get_extra_info("sockname")[1]

    async def read_message(self, timeout: float = 2.0) -> bytes:
        head = await asyncio.wait_for(self.reader.readuntil(b"\r\n\r\n"), timeout)
        length = 0
        for line in head.split(b"\r\n"):
            if line.lower().startswith(b"content-length:"):
                length = int(line.split(b":", 1)[1])
        body = await asyncio.wait_for(self.reader.readexactly(length), timeout) if length else b""
        return head + body

    async def closed(self, timeout: float = 3.0) -> bool:
        data = await asyncio.wait_for(self.reader.read(), timeout)
        return data == b"" or self.reader.at_eof()


async def connect(sip: EmbeddedSipPort) -> TcpPeer:
    reader, writer = await asyncio.open_connection("127.0.0.1", sip.port)
    return TcpPeer(reader, writer)


def serve_options(sip: EmbeddedSipPort) -> list[IncomingRequest]:
    seen: list[IncomingRequest] = []

    async def options(req: IncomingRequest) -> None:
        seen.append(req)
        await req.reply(200)

    sip.on_request("OPTIONS", options)
    return seen


async def test_pipelined_and_fragmented_messages(sip: EmbeddedSipPort) -> None:
    seen = serve_options(sip)
    peer = await connect(sip)
    lp = peer.local_port
    a = sip_message("OPTIONS", sip.port, lp, branch="z9hG4bKp1", call_id="p1", transport="TCP")
    b = sip_message("OPTIONS", sip.port, lp, branch="z9hG4bKp2", call_id="p2", transport="TCP",
                    extra="Content-Type: text/plain\r\n", body="a body")
    peer.writer.write(a + b)  # two messages in one segment
    c = sip_message("OPTIONS", sip.port, lp, branch="z9hG4bKp3", call_id="p3", transport="TCP")
    for i in range(0, len(c), 7):  # one message in many segments
        peer.writer.write(c[i:i + 7])
        await peer.writer.drain()
        await asyncio.sleep(0.001)
    got = [parse_message(await peer.read_message()) for _ in range(3)]
    assert [m.call_id for m in got] == ["p1", "p2", "p3"]
    assert all(m.status == 200 for m in got)  # type: ignore[union-attr]
    assert seen[1].body == b"a body"
    assert len({r.flow for r in seen}) == 1 and seen[0].source.port == lp
    peer.writer.close()


async def test_crlf_keepalive_gets_a_pong(sip: EmbeddedSipPort) -> None:
    serve_options(sip)
    peer = await connect(sip)
    peer.writer.write(b"\r\n\r\n")
    assert await asyncio.wait_for(peer.reader.readexactly(2), 2) == b"\r\n"
    # the connection still carries SIP afterwards
    peer.writer.write(sip_message("OPTIONS", sip.port, peer.local_port, branch="z9hG4bKka",
                                  call_id="ka", transport="TCP"))
    assert parse_message(await peer.read_message()).status == 200  # type: ignore[union-attr]
    peer.writer.close()


async def test_unparseable_message_gets_400_and_connection_stays(sip: EmbeddedSipPort) -> None:
    serve_options(sip)
    peer = await connect(sip)
    bad = sip_message("OPTIONS", sip.port, peer.local_port, branch="z9hG4bKb1", call_id="b1",
                      transport="TCP").replace(b"CSeq: 1 OPTIONS", b"CSeq: one OPTIONS")
    peer.writer.write(bad)
    first = await peer.read_message()
    assert first.startswith(b"SIP/2.0 400")
    peer.writer.write(sip_message("OPTIONS", sip.port, peer.local_port, branch="z9hG4bKb2",
                                  call_id="b2", transport="TCP"))
    assert parse_message(await peer.read_message()).status == 200  # type: ignore[union-attr]
    peer.writer.close()


async def test_unframeable_stream_gets_400_then_close(sip: EmbeddedSipPort) -> None:
    serve_options(sip)
    peer = await connect(sip)
    bad = sip_message("OPTIONS", sip.port, peer.local_port, branch="z9hG4bKf1", call_id="f1",
                      transport="TCP").replace(b"Content-Length: 0", b"Content-Length: zero")
    peer.writer.write(bad)
    first = await peer.read_message()
    assert first.startswith(b"SIP/2.0 400")
    assert await peer.closed()


async def test_idle_connection_is_closed() -> None:
    sip = EmbeddedSipPort(host="127.0.0.1", port=0, transports=("tcp",),
                          tcp_limits=TcpLimits(idle_timeout=1.0))
    await sip.start()
    try:
        peer = await connect(sip)
        await asyncio.sleep(0.1)
        assert len(sip.driver.tcp.flows) == 1  # type: ignore[union-attr]
        assert await peer.closed(timeout=4.0)
        assert sip.driver.tcp.flows == {}  # type: ignore[union-attr]
    finally:
        await sip.close()


async def test_tcp_only_port_answers_and_refuses_udp() -> None:
    sip = EmbeddedSipPort(host="127.0.0.1", port=0, transports=("tcp",))
    await sip.start()
    try:
        serve_options(sip)
        assert {a.transport for a in sip.local_addresses()} == {"tcp"}
        r = await sipp_run("options_uac", sip, transport="tcp", extra=["-m", "1", "-s", "pbx"])
        assert r.rc == 0, r.explain()
    finally:
        await sip.close()
