"""The TCP flow table: which connection a message goes out on (no sockets)."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from engine.clock import FakeClock
from engine.ports import Peer
from engine.transport.tcp import TcpConnection, TcpTransport


class FakeTransport:
    def __init__(self, peer: tuple[str, int]):
        self.peer = peer
        self.written: list[bytes] = []
        self.closed = False

    def get_extra_info(self, name: str) -> Any:
        return {"peername": self.peer, "sockname": ("127.0.0.1", 5060)}[name]

    def write(self, data: bytes) -> None:
        self.written.append(data)

    def get_write_buffer_size(self) -> int:
        return 0

    def close(self) -> None:
        self.closed = True

    abort = close


class FakeDriver:
    def __init__(self) -> None:
        self.failed: list[tuple[int | None, str]] = []

    def send_failed(self, tx: int | None, reason: str) -> None:
        self.failed.append((tx, reason))


def make(loop: asyncio.AbstractEventLoop) -> tuple[TcpTransport, FakeDriver]:
    driver = FakeDriver()
    return TcpTransport(loop, FakeClock(), driver), driver  # type: ignore[arg-type]


def accept(tcp: TcpTransport, host: str, port: int) -> tuple[TcpConnection, FakeTransport]:
    conn = TcpConnection(tcp, outbound=False)
    t = FakeTransport((host, port))
    conn.connection_made(t)  # type: ignore[arg-type]
    return conn, t


async def test_flow_is_preferred_then_the_peer_address() -> None:
    tcp, _ = make(asyncio.get_running_loop())
    a, ta = accept(tcp, "192.0.2.1", 40001)
    b, tb = accept(tcp, "192.0.2.2", 40002)
    assert a.flow != b.flow and tcp.connection(a.flow) is a
    # the given flow wins even when the destination is another address
    tcp.send(b"x", Peer("192.0.2.9", 5060, "tcp"), a.flow, 1)
    assert ta.written == [b"x"]
    # no flow: an open connection to the destination address is reused
    tcp.send(b"y", Peer("192.0.2.2", 40002, "tcp"), None, 2)
    assert tb.written == [b"y"]
    # a dead flow falls back to the address
    b.connection_lost(None)
    assert tcp.connection(b.flow) is None and tcp.find("192.0.2.2", 40002) is None
    tcp.send(b"z", Peer("192.0.2.1", 40001, "tcp"), b.flow, 3)
    assert ta.written == [b"x", b"z"]


async def test_connection_refused_reports_each_queued_transaction() -> None:
    tcp, driver = make(asyncio.get_running_loop())
    tcp.connect_timeout = 2
    # nothing listens on port 9 of loopback: both messages wait for one connect, both fail
    tcp.send(b"one", Peer("127.0.0.1", 9, "tcp"), None, 11)
    tcp.send(b"two", Peer("127.0.0.1", 9, "tcp"), None, 12)
    assert len(tcp._pending) == 1
    for _ in range(100):
        if len(driver.failed) == 2:
            break
        await asyncio.sleep(0.02)
    assert [tx for tx, _ in driver.failed] == [11, 12]
    assert "connect to 127.0.0.1:9 failed" in driver.failed[0][1]


async def test_a_name_is_refused_at_once() -> None:
    tcp, _ = make(asyncio.get_running_loop())
    with pytest.raises(OSError, match="not an IP address"):
        tcp.send(b"x", Peer("pbx.example.com", 5060, "tcp"), None, 1)


async def test_unregister_reports_closed_flow() -> None:
    tcp, _ = make(asyncio.get_running_loop())
    closed: list[str] = []
    tcp.on_closed = closed.append
    a, _ = accept(tcp, "192.0.2.1", 40001)
    a.connection_lost(None)
    assert closed == [a.flow] and tcp.flows == {}
