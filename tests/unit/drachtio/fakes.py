"""A fake drachtio server for unit tests of the client, and its frame builders.

Only for what the real server cannot be made to do (send a malformed frame, answer
late, withhold an answer); everything else is tested against the real drachtio-server
in tests/integration/drachtio/.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Awaitable, Callable, Sequence

from engine.drachtio.wire import (
    STATUSES,
    AppFrame,
    AppSipFrame,
    AuthenticateFrame,
    DrachtioProtocolError,
    FrameDecoder,
    InvalidToken,
    Meta,
    PingFrame,
    ProxyFrame,
    RouteFrame,
    encode_frame,
    parse_app_frame,
)

CRLF = "\r\n"


def _field(value: str) -> str:
    if "|" in value or "\r" in value or "\n" in value:
        raise InvalidToken("a field must not contain '|', CR or LF")
    return value


def _payload(tokens: Sequence[str], message: str | None) -> str:
    head = "|".join(_field(t) for t in tokens)
    return head if message is None else head + CRLF + message


def build_response(server_msg_id: str, request_id: str, status: str,
                   fields: Sequence[str] = (), message: str | None = None) -> bytes:
    """A server → app ``response`` frame."""
    if status not in STATUSES:
        raise InvalidToken(f"status must be one of {sorted(STATUSES)}")
    return encode_frame(_payload([server_msg_id, "response", request_id, status, *fields],
                                 message), limit=None)


def build_server_sip(server_msg_id: str, meta: Meta, transaction_id: str, dialog_id: str,
                     message: str, received_on: tuple[str, int] | None = None) -> bytes:
    """A server → app ``sip`` frame in the server's layout (trailing empty field)."""
    tokens = [server_msg_id, "sip", meta.source, str(meta.size), meta.protocol, meta.address,
              "" if meta.port is None else str(meta.port), meta.time, transaction_id, dialog_id]
    if received_on is not None:
        tokens += [received_on[0], str(received_on[1])]
    tokens.append("")
    return encode_frame(_payload(tokens, message), limit=None)


# --------------------------------------------------------------------------- a fake server

AUTH_FIELDS = ("tcp/127.0.0.1:5080,udp/127.0.0.1:5080", "v0.9.10-fake",
               "tcp/127.0.0.1:5080,udp/127.0.0.1:5080")


class FakeConnection:
    """One app connection to :class:`FakeDrachtio`: every frame it received, and a way
    to send raw bytes back. ``authenticate``/``route``/``ping`` are answered by the
    server's policy; ``sip``/``proxy`` frames wait in :attr:`requests` for the test."""

    def __init__(self, server: FakeDrachtio, reader: asyncio.StreamReader,
                 writer: asyncio.StreamWriter):
        self.server = server
        self.reader = reader
        self.writer = writer
        self.received: list[AppFrame] = []
        self.requests: asyncio.Queue[AppSipFrame | ProxyFrame] = asyncio.Queue()
        self.closed = asyncio.Event()
        self._ids = itertools.count(1)

    def send(self, data: bytes) -> None:
        self.writer.write(data)

    def answer(self, request_id: str, status: str = "OK", fields: Sequence[str] = (),
               message: str | None = None) -> None:
        self.send(build_response(f"srv-{next(self._ids)}", request_id, status, fields, message))

    def close(self) -> None:
        self.writer.transport.abort()

    async def serve(self) -> None:
        decoder = FrameDecoder()
        try:
            while data := await self.reader.read(65536):
                for payload in decoder.feed(data):
                    frame = parse_app_frame(payload)
                    self.received.append(frame)
                    await self.server.policy(self, frame)
        except (ConnectionError, DrachtioProtocolError):
            pass
        finally:
            self.closed.set()
            self.writer.transport.abort()


async def default_policy(conn: FakeConnection, frame: AppFrame) -> None:
    if isinstance(frame, AuthenticateFrame):
        if frame.secret == conn.server.secret:
            conn.answer(frame.msg_id, "OK", AUTH_FIELDS)
        else:
            conn.answer(frame.msg_id, "NO", ["incorrect secret"])
            conn.close()
    elif isinstance(frame, RouteFrame | PingFrame):
        conn.answer(frame.msg_id, "OK", ["pong"] if isinstance(frame, PingFrame) else [])
    elif isinstance(frame, AppSipFrame | ProxyFrame):
        conn.requests.put_nowait(frame)


class FakeDrachtio:
    """A loopback TCP server speaking the server side of the protocol (unit tests only)."""

    def __init__(self, secret: str = "s3cret",
                 policy: Callable[[FakeConnection, AppFrame], Awaitable[None]] = default_policy):
        self.secret = secret
        self.policy = policy
        self.connections: list[FakeConnection] = []
        self.new_connection = asyncio.Condition()
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self.port = 0

    async def start(self) -> FakeDrachtio:
        self._server = await asyncio.start_server(self._accept, "127.0.0.1", 0)
        self.port = self._server.sockets[0].getsockname()[1]
        return self

    async def _accept(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        conn = FakeConnection(self, reader, writer)
        async with self.new_connection:
            self.connections.append(conn)
            self.new_connection.notify_all()
        await conn.serve()

    async def connection(self, index: int, timeout: float = 5.0) -> FakeConnection:
        async with asyncio.timeout(timeout), self.new_connection:
            await self.new_connection.wait_for(lambda: len(self.connections) > index)
            return self.connections[index]

    async def close(self) -> None:
        for conn in self.connections:
            conn.close()
        if self._server is not None:
            self._server.close()
            await self._server.wait_closed()
