"""TCP abuse bounds of the embedded stack, in process on both loops: admission caps,
deadlines and the buffered-bytes bound, with the guard's books checked after each
case (every counted connection and byte is released). The daemon-level tests
(descriptor limit, webhooks under a flood, RSS) are in tests/e2e/test_tcp_limits.py."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Awaitable, Callable

import pytest

from engine.transport import EmbeddedSipPort
from engine.transport.tcp_limits import TcpLimits
from tests.integration.sip.conftest import sip_message
from tests.integration.sip.test_tcp import TcpPeer, serve_options

pytestmark = pytest.mark.integration

Start = Callable[..., Awaitable[EmbeddedSipPort]]


@pytest.fixture
async def limited() -> AsyncIterator[Start]:
    ports: list[EmbeddedSipPort] = []

    async def start(**limits: float) -> EmbeddedSipPort:
        sip = EmbeddedSipPort(host="127.0.0.1", port=0, transports=("tcp",),
                              tcp_limits=TcpLimits(**limits))  # type: ignore[arg-type]
        await sip.start()
        serve_options(sip)
        ports.append(sip)
        return sip

    yield start
    for sip in ports:
        await sip.close()


async def open_peer(sip: EmbeddedSipPort, source: str = "127.0.0.1") -> TcpPeer:
    reader, writer = await asyncio.open_connection("127.0.0.1", sip.port,
                                                   local_addr=(source, 0))
    return TcpPeer(reader, writer)


async def closed(peer: TcpPeer, timeout: float) -> bool:
    try:
        return await peer.closed(timeout)
    except (ConnectionResetError, BrokenPipeError):
        return True
    except TimeoutError:
        return False


async def options_ok(sip: EmbeddedSipPort, peer: TcpPeer, n: int = 1) -> bool:
    peer.writer.write(sip_message("OPTIONS", sip.port, peer.local_port, branch=f"z9hG4bKl{n}",
                                  call_id=f"lim-{peer.local_port}-{n}", transport="TCP"))
    return (await peer.read_message()).startswith(b"SIP/2.0 200")


async def books_balance(sip: EmbeddedSipPort) -> None:
    """Once every connection is gone, nothing stays counted."""
    tcp = sip.driver.tcp
    assert tcp is not None
    for _ in range(100):
        if not tcp.flows:
            break
        await asyncio.sleep(0.02)
    guard = tcp.guard
    assert (tcp.flows, guard.inbound, guard.per_source, guard.buffered_total) == ({}, 0, {}, 0)


async def test_per_source_and_total_caps(limited: Start) -> None:
    sip = await limited(max_per_source=2, max_connections=3)
    a1, a2, a3 = [await open_peer(sip) for _ in range(3)]
    assert await closed(a3, 1.0) and not await closed(a1, 0.1)
    b1 = await open_peer(sip, "127.0.0.2")
    b2 = await open_peer(sip, "127.0.0.3")  # per-source fine, but the total is 3
    assert await closed(b2, 1.0)
    assert await options_ok(sip, a1) and await options_ok(sip, b1)
    guard = sip.driver.tcp.guard  # type: ignore[union-attr]
    assert guard.per_source == {"127.0.0.1": 2, "127.0.0.2": 1} and guard.inbound == 3
    a2.writer.close()
    await asyncio.sleep(0.1)
    a4 = await open_peer(sip)
    assert await options_ok(sip, a4)
    for p in (a1, a4, b1):
        p.writer.close()
    await books_balance(sip)


async def test_first_byte_and_message_deadlines(limited: Start) -> None:
    sip = await limited(first_byte_timeout=0.3, message_timeout=0.6)
    silent = await open_peer(sip)
    slow = await open_peer(sip)
    good = await open_peer(sip)
    assert await options_ok(sip, good)
    msg = sip_message("OPTIONS", sip.port, slow.local_port, branch="z9hG4bKs", call_id="s",
                      transport="TCP")
    slow.writer.write(msg[:10])
    assert await closed(silent, 1.0)
    assert not await closed(slow, 0.2)
    assert await closed(slow, 1.0)  # 0.6 s after its first byte
    await asyncio.sleep(0.3)  # past both deadlines, but complete: only idle applies
    assert await options_ok(sip, good, 2)
    good.writer.close()
    await books_balance(sip)


async def test_buffered_bytes_bound_closes_the_oldest_partial_messages(
        limited: Start) -> None:
    sip = await limited(max_buffered_bytes=210_000)
    guard = sip.driver.tcp.guard  # type: ignore[union-attr]
    peers = []
    for i in range(8):  # 8 × 40 kB of header section without its end
        p = await open_peer(sip)
        p.writer.write(b"OPTIONS sip:x SIP/2.0\r\nX-Pad: " + b"a" * 40_000)
        await p.writer.drain()
        peers.append(p)
        await asyncio.sleep(0.05)
        assert guard.buffered_total <= 210_000, i
    # 5 fit (200 kB); the sixth passes the bound: the oldest go until ≤ 3/4 of it is
    # held (3 closed, 3 left); the seventh and eighth fit again.
    assert [await closed(p, 0.3) for p in peers] == [True] * 3 + [False] * 5
    ok = await open_peer(sip)
    assert await options_ok(sip, ok)
    for p in (*peers[3:], ok):
        p.writer.close()
    await books_balance(sip)


async def test_pipelined_and_fragmented_input_leaves_nothing_counted(
        limited: Start) -> None:
    sip = await limited(message_timeout=0.5)
    peer = await open_peer(sip)
    lp = peer.local_port
    a = sip_message("OPTIONS", sip.port, lp, branch="z9hG4bKq1", call_id="q1", transport="TCP")
    b = sip_message("OPTIONS", sip.port, lp, branch="z9hG4bKq2", call_id="q2", transport="TCP")
    data = b"\r\n\r\n" + a + b
    for i in range(0, len(data), 100):  # every segment ends inside a message
        peer.writer.write(data[i:i + 100])
        await asyncio.sleep(0.02)
    assert (await peer.read_message()).startswith(b"\r\nSIP/2.0 200")
    assert (await peer.read_message()).startswith(b"SIP/2.0 200")
    guard = sip.driver.tcp.guard  # type: ignore[union-attr]
    assert guard.buffered_total == 0 and not guard._partial
    await asyncio.sleep(0.7)  # the completed messages start no deadline
    assert not await closed(peer, 0.1)
    peer.writer.close()
    await books_balance(sip)
