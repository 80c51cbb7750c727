"""The drachtio client against the real drachtio-server (tests/fixtures/drachtio.py).

Every test runs on the asyncio loop and on uvloop (the daemon uses uvloop when installed).
"""

from __future__ import annotations

import asyncio
import contextlib
import socket
import uuid
from collections.abc import AsyncIterator
from typing import Any

import pytest

from engine.drachtio.client import Backoff, DrachtioClient
from engine.drachtio.wire import SipFrame
from tests.fixtures.drachtio import Drachtio


def pytest_asyncio_loop_factories(config: pytest.Config, item: pytest.Item) -> dict[str, Any]:
    factories: dict[str, Any] = {"asyncio": asyncio.new_event_loop}
    try:
        import uvloop
    except ImportError:
        return factories
    factories["uvloop"] = uvloop.new_event_loop
    return factories


class Inbox:
    """``on_sip`` target: every frame the client delivered, awaitable."""

    def __init__(self) -> None:
        self.frames: list[SipFrame] = []
        self._queue: asyncio.Queue[SipFrame] = asyncio.Queue()

    def __call__(self, frame: SipFrame) -> None:
        self.frames.append(frame)
        self._queue.put_nowait(frame)

    async def next(self, timeout: float = 5.0) -> SipFrame:
        return await asyncio.wait_for(self._queue.get(), timeout)


@contextlib.asynccontextmanager
async def drachtio_client(server: Drachtio, *, secret: str | None = None,
                          verbs: tuple[str, ...] = ("options", "register", "invite"),
                          port: int | None = None, **kwargs: Any
                          ) -> AsyncIterator[tuple[DrachtioClient, Inbox]]:
    inbox = Inbox()
    kwargs.setdefault("backoff", Backoff())
    client = DrachtioClient(server.host, port or server.admin_port,
                            server.secret if secret is None else secret,
                            verbs=verbs, on_sip=inbox, **kwargs)
    client.start()
    try:
        yield client, inbox
    finally:
        await client.stop()


class UdpPhone:
    """A raw SIP UDP socket on loopback (drachtio is lenient: plain text is enough)."""

    def __init__(self) -> None:
        self.sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
        self.sock.bind(("127.0.0.1", 0))
        self.sock.setblocking(False)
        self.port = self.sock.getsockname()[1]

    def close(self) -> None:
        self.sock.close()

    def options(self, server: Drachtio, call_id: str | None = None) -> str:
        call_id = call_id or f"opt-{uuid.uuid4().hex[:12]}"
        text = (f"OPTIONS sip:app@{server.host}:{server.sip_port} SIP/2.0\r\n"
                f"Via: SIP/2.0/UDP 127.0.0.1:{self.port};branch=z9hG4bK{uuid.uuid4().hex};rport\r\n"
                "Max-Forwards: 70\r\n"
                f"From: <sip:alice@127.0.0.1:{self.port}>;tag=a{uuid.uuid4().hex[:8]}\r\n"
                f"To: <sip:app@{server.host}:{server.sip_port}>\r\n"
                f"Call-ID: {call_id}\r\nCSeq: 1 OPTIONS\r\nContent-Length: 0\r\n\r\n")
        self.sock.sendto(text.encode(), server.sip_address)
        return call_id

    async def response(self, call_id: str, timeout: float = 5.0) -> str:
        """The next response for ``call_id`` (stale retransmissions are skipped)."""
        loop = asyncio.get_running_loop()
        async with asyncio.timeout(timeout):
            while True:
                data = await loop.sock_recv(self.sock, 65536)
                text = data.decode(errors="replace")
                if f"Call-ID: {call_id}\r\n" in text or f"i: {call_id}\r\n" in text:
                    return text


@pytest.fixture
def phone() -> Any:
    p = UdpPhone()
    yield p
    p.close()
