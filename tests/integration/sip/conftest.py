"""Fixtures for the embedded SIP stack against real peers (SIPp, raw sockets).

``sip`` is an ``EmbeddedSipPort`` started in-process on 127.0.0.1 with a free
port (SIP_PORT=0) on UDP and TCP; each test registers the handlers it needs.
SIPp runs in a thread (``sipp_run``) so the stack keeps serving on the loop.
Every test runs twice: on the asyncio loop and on uvloop.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.settings import load_settings
from engine.sip.effects import TimerConfig
from engine.transport import EmbeddedSipPort
from tests.fixtures.sipp import SippResult, run_sipp, scenario


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    """Every test here runs on both loops: the daemon uses uvloop when installed."""
    factories: dict[str, Any] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


@pytest.fixture
async def sip() -> AsyncIterator[EmbeddedSipPort]:
    settings = load_settings({"SIP_HOST": "127.0.0.1", "SIP_PORT": "0",
                              "SIP_TRANSPORTS": "udp,tcp"})
    port = EmbeddedSipPort.from_settings(settings)
    await port.start()
    try:
        yield port
    finally:
        await port.close()


@pytest.fixture
async def sip_fast_timers() -> AsyncIterator[EmbeddedSipPort]:
    """T1 = 50 ms: 64*T1 (ACK wait, transaction time-outs) is 3.2 s."""
    port = EmbeddedSipPort(host="127.0.0.1", port=0, transports=("udp", "tcp"),
                           timers=TimerConfig(t1=0.05, t2=0.4, t4=0.5))
    await port.start()
    try:
        yield port
    finally:
        await port.close()


async def sipp_run(name: str, port: EmbeddedSipPort, **kw: Any) -> SippResult:
    """Run a SIPp UAC scenario against ``port`` without blocking the loop."""
    return await asyncio.to_thread(run_sipp, scenario(name), f"127.0.0.1:{port.port}", **kw)


class RawUdp(asyncio.DatagramProtocol):
    """A bare UDP peer for malformed input and precise checks."""

    def __init__(self) -> None:
        self.queue: asyncio.Queue[bytes] = asyncio.Queue()
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        self.queue.put_nowait(data)

    @property
    def local_port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def send(self, data: bytes, port: int) -> None:
        assert self.transport is not None
        self.transport.sendto(data, ("127.0.0.1", port))

    async def recv(self, timeout: float = 2.0) -> bytes:
        return await asyncio.wait_for(self.queue.get(), timeout)

    def drain(self) -> list[bytes]:
        out = []
        while not self.queue.empty():
            out.append(self.queue.get_nowait())
        return out


@pytest.fixture
async def raw_udp() -> AsyncIterator[RawUdp]:
    loop = asyncio.get_running_loop()
    transport, proto = await loop.create_datagram_endpoint(RawUdp, local_addr=("127.0.0.1", 0))
    try:
        yield proto
    finally:
        transport.close()


def sip_message(method: str, port: int, local_port: int, *, branch: str, call_id: str,
                to_tag: str | None = None, cseq: int = 1, extra: str = "",
                body: str = "", transport: str = "UDP") -> bytes:
    """A request as a remote UA at 127.0.0.1:``local_port`` sends it."""
    to = f"<sip:pbx@127.0.0.1:{port}>" + (f";tag={to_tag}" if to_tag else "")
    text = (f"{method} sip:pbx@127.0.0.1:{port} SIP/2.0\r\n"
            f"Via: SIP/2.0/{transport} 127.0.0.1:{local_port};branch={branch};rport\r\n"
            f"From: <sip:raw@127.0.0.1:{local_port}>;tag=rawtag\r\n"
            f"To: {to}\r\nCall-ID: {call_id}\r\nCSeq: {cseq} {method}\r\n"
            f"Contact: <sip:raw@127.0.0.1:{local_port}>\r\nMax-Forwards: 70\r\n{extra}"
            f"Content-Length: {len(body.encode())}\r\n\r\n{body}")
    return text.encode()


def sipp_log(result: SippResult) -> list[tuple[str, str]]:
    """SIPp's message trace as ``(direction, message)``; direction ``sent``/``received``."""
    out: list[tuple[str, str]] = []
    for block in result.messages.split("-----------------------------------------------"):
        head, _, msg = block.partition("\n\n")
        if "message sent" in head:
            out.append(("sent", msg.strip()))
        elif "message received" in head:
            out.append(("received", msg.strip()))
    return out


def count(result: SippResult, direction: str, start: str, cseq: str | None = None) -> int:
    """How many messages SIPp ``direction`` whose start line begins with ``start``
    (and whose CSeq header is ``cseq``)."""
    n = 0
    for d, msg in sipp_log(result):
        if d == direction and msg.startswith(start) and (
                cseq is None or f"\nCSeq: {cseq}\n" in msg.replace("\r", "") + "\n"):
            n += 1
    return n


def logged(text: str) -> Any:
    """Parse a message from SIPp's trace (line ends and the body's length are not exact
    there, so Content-Length is dropped)."""
    from engine.sip.parser import parse_message

    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    lines = [ln for ln in head.split("\n") if not ln.lower().startswith("content-length")]
    return parse_message(("\r\n".join(lines) + "\r\n\r\n" + body).encode())
