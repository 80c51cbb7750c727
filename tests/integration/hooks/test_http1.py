"""The lean HTTP/1.1 webhook client against raw loopback servers with odd behaviour.

The aiohttp-server tests in ``test_hook_client.py`` cover the ordinary cases;
these servers misbehave on purpose: close idle connections, reply without
framing, compress, send garbage, stall, or speak before being asked.
"""

from __future__ import annotations

import asyncio
import base64
import gzip
import zlib
from collections.abc import AsyncIterator, Awaitable, Callable
from dataclasses import dataclass, field

import pytest

from engine.errors import HookError
from engine.hooks.client import HookClient
from engine.hooks.http1 import Http1Pool, parse_target

pytestmark = pytest.mark.integration

Handler = Callable[["Raw", asyncio.StreamReader, asyncio.StreamWriter], Awaitable[None]]


@dataclass
class Raw:
    """A raw TCP server; ``requests`` holds each request's head and body."""

    port: int = 0
    requests: list[tuple[bytes, bytes]] = field(default_factory=list)
    connections: int = 0

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hook"


async def read_request(reader: asyncio.StreamReader) -> tuple[bytes, bytes] | None:
    try:
        head = await reader.readuntil(b"\r\n\r\n")
    except (asyncio.IncompleteReadError, ConnectionError):
        return None
    length = 0
    for line in head.split(b"\r\n"):
        if line.lower().startswith(b"content-length:"):
            length = int(line.split(b":", 1)[1])
    body = await reader.readexactly(length) if length else b""
    return head, body


@pytest.fixture
async def serve() -> AsyncIterator[Callable[[Handler], Awaitable[Raw]]]:
    servers: list[asyncio.Server] = []

    async def start(handler: Handler) -> Raw:
        raw = Raw()

        async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
            raw.connections += 1
            try:
                await handler(raw, reader, writer)
            except (ConnectionError, asyncio.IncompleteReadError):
                pass
            finally:
                writer.close()

        server = await asyncio.start_server(on_conn, "127.0.0.1", 0)
        servers.append(server)
        raw.port = server.sockets[0].getsockname()[1]
        return raw

    yield start
    for server in servers:
        server.close()
        await server.wait_closed()


def reply(status: int, body: bytes, *extra: str) -> bytes:
    headers = "".join(f"{h}\r\n" for h in extra)
    return (f"HTTP/1.1 {status} X\r\nContent-Length: {len(body)}\r\n{headers}\r\n"
            .encode() + body)


@pytest.fixture
async def client() -> AsyncIterator[HookClient]:
    c = HookClient(user_agent="dragonpbx-test")
    yield c
    await c.close()


async def test_connection_closed_after_the_request_was_read_is_not_resent(serve,
                                                                          client) -> None:
    """A reused keep-alive connection dies after the request was written (the server
    read it, then closed without answering): the body reaches the server exactly
    once and the caller gets a ``connect`` failure, not a silent second delivery."""
    async def one_reply_then_close(raw: Raw, reader, writer) -> None:
        req = await read_request(reader)
        raw.requests.append(req)
        writer.write(reply(200, b'{"n":1}'))  # says keep-alive (HTTP/1.1 default) ...
        await writer.drain()
        # ... reads the next request, and closes without answering it (a server that
        # crashed while handling it, or whose keep-alive timer fired as it arrived).
        raw.requests.append(await read_request(reader))

    raw = await serve(one_reply_then_close)
    first = await client.post(raw.url, {"a": 1}, timeout=2)
    assert first.json == {"n": 1}
    with pytest.raises(HookError) as info:
        await client.post(raw.url, {"a": 2}, timeout=2)
    assert info.value.kind == "connect"
    await asyncio.sleep(0.1)  # a re-send, if any, would have arrived by now
    assert [body for _, body in raw.requests] == [b'{"a":1}', b'{"a":2}']
    assert raw.connections == 1


class _ThreadServer:
    """A keep-alive HTTP server in its own thread that answers each request and then
    closes the connection at once: its FIN can arrive while our event loop is busy
    and has not yet noticed, the keep-alive race the pool must survive."""

    def __init__(self) -> None:
        import socket
        import threading

        self.bodies: list[bytes] = []
        self.connections = 0
        self._listener = socket.create_server(("127.0.0.1", 0))
        self.port = self._listener.getsockname()[1]
        self.closed = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        while True:
            try:
                conn, _ = self._listener.accept()
            except OSError:
                return
            self.connections += 1
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                length = int(head.lower().split(b"content-length:")[1].split(b"\r\n")[0])
                while len(body) < length:
                    body += conn.recv(65536)
                self.bodies.append(body)
                conn.sendall(reply(200, b'{"ok":true}'))
            self.closed.set()  # the idle connection is closed by the server

    def stop(self) -> None:
        self._listener.close()


async def test_idle_connection_closed_by_the_server_is_replaced_transparently(
        client) -> None:
    import time

    server = _ThreadServer()
    url = f"http://127.0.0.1:{server.port}/hook"
    try:
        assert (await client.post(url, {"a": 1}, timeout=2)).json == {"ok": True}
        assert server.closed.wait(2)
        time.sleep(0.1)  # block the loop: the FIN is here, connection_lost has not run
        got = await client.post(url, {"a": 2}, timeout=2)
        assert got.json == {"ok": True}
        assert server.bodies == [b'{"a":1}', b'{"a":2}']
        assert server.connections == 2
    finally:
        server.stop()


async def test_a_fresh_connection_closed_before_replying_is_not_retried(serve, client) -> None:
    async def close_at_once(raw: Raw, reader, writer) -> None:
        raw.requests.append(await read_request(reader))

    raw = await serve(close_at_once)
    with pytest.raises(HookError) as info:
        await client.post(raw.url, {}, timeout=2)
    assert info.value.kind == "connect"
    assert len(raw.requests) == 1  # sent once: the server may have acted on it


async def test_reply_cut_mid_body_is_an_error(serve, client) -> None:
    async def truncated(raw: Raw, reader, writer) -> None:
        await read_request(reader)
        writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 100\r\n\r\n{\"partial")
        await writer.drain()

    raw = await serve(truncated)
    with pytest.raises(HookError) as info:
        await client.post(raw.url, {}, timeout=2)
    assert info.value.kind == "error"


async def test_read_until_close_reply(serve, client) -> None:
    async def unframed(raw: Raw, reader, writer) -> None:
        await read_request(reader)
        writer.write(b'HTTP/1.1 200 OK\r\nConnection: close\r\n\r\n{"status":"ok"}')
        await writer.drain()

    raw = await serve(unframed)
    for _ in range(2):  # the closed connection is not reused
        got = await client.post(raw.url, {}, timeout=2)
        assert (got.status, got.json) == (200, {"status": "ok"})
    assert raw.connections == 2


async def test_chunked_reply_with_interim_100_continue(serve, client) -> None:
    async def chunked(raw: Raw, reader, writer) -> None:
        while await read_request(reader):
            writer.write(b"HTTP/1.1 100 Continue\r\n\r\n"
                         b"HTTP/1.1 201 Created\r\nTransfer-Encoding: chunked\r\n\r\n"
                         b"5\r\n[1,2,\r\n2\r\n3]\r\n0\r\n\r\n")
            await writer.drain()

    raw = await serve(chunked)
    for _ in range(3):
        got = await client.post(raw.url, {}, timeout=2)
        assert (got.status, got.json) == (201, [1, 2, 3])
    assert raw.connections == 1


@pytest.mark.parametrize("coding", ["gzip", "deflate", "raw-deflate"])
async def test_compressed_replies_are_decoded(serve, client, coding: str) -> None:
    payload = b'{"status":"ok","pad":"' + b"x" * 500 + b'"}'
    if coding == "gzip":
        packed = gzip.compress(payload)
    elif coding == "deflate":
        packed = zlib.compress(payload)
    else:
        c = zlib.compressobj(wbits=-zlib.MAX_WBITS)
        packed = c.compress(payload) + c.flush()
    name = "gzip" if coding == "gzip" else "deflate"

    async def compressed(raw: Raw, reader, writer) -> None:
        await read_request(reader)
        writer.write(reply(200, packed, f"Content-Encoding: {name}"))
        await writer.drain()

    raw = await serve(compressed)
    got = await client.post(raw.url, {}, timeout=2)
    assert got.body == payload


async def test_compression_bomb_is_capped(serve) -> None:
    bomb = gzip.compress(b"0" * 5_000_000)  # ~5 KB on the wire, 5 MB decoded

    async def bomber(raw: Raw, reader, writer) -> None:
        await read_request(reader)
        writer.write(reply(200, bomb, "Content-Encoding: gzip"))
        await writer.drain()

    raw = await serve(bomber)
    small = HookClient(user_agent="t", max_reply_bytes=64 * 1024)
    try:
        with pytest.raises(HookError) as info:
            await small.post(raw.url, {}, timeout=2)
        assert info.value.kind == "too_large"
    finally:
        await small.close()


async def test_garbage_reply_is_an_error_and_the_daemon_goes_on(serve, client) -> None:
    async def garbage(raw: Raw, reader, writer) -> None:
        await read_request(reader)
        writer.write(b"SIP/2.0 200 OK\r\n\r\n")
        await writer.drain()

    raw = await serve(garbage)
    with pytest.raises(HookError) as info:
        await client.post(raw.url, {}, timeout=2)
    assert info.value.kind == "error"


async def test_timeout_discards_the_connection(serve, client) -> None:
    async def slow_first(raw: Raw, reader, writer) -> None:
        n = 0
        while req := await read_request(reader):
            raw.requests.append(req)
            n += 1
            if raw.connections == 1:
                await asyncio.sleep(0.5)  # first connection: too slow
            writer.write(reply(200, b"{}"))
            await writer.drain()

    raw = await serve(slow_first)
    with pytest.raises(HookError) as info:
        await client.post(raw.url, {}, timeout=0.1)
    assert info.value.kind == "timeout"
    got = await client.post(raw.url, {}, timeout=2)
    assert got.status == 200
    assert raw.connections == 2  # the late reply on the first never reached the second call


async def test_unsolicited_bytes_on_an_idle_connection_retire_it(serve, client) -> None:
    async def chatty(raw: Raw, reader, writer) -> None:
        while await read_request(reader):
            writer.write(reply(200, b"{}"))
            await writer.drain()
            await asyncio.sleep(0.05)
            writer.write(b"HTTP/1.1 200 OK\r\nContent-Length: 2\r\n\r\n[]")  # nobody asked
            await writer.drain()

    raw = await serve(chatty)
    assert (await client.post(raw.url, {}, timeout=2)).json == {}
    await asyncio.sleep(0.2)
    assert (await client.post(raw.url, {}, timeout=2)).json == {}  # not the stray []
    assert raw.connections == 2


async def test_user_info_becomes_basic_auth_and_path_is_quoted(serve, client) -> None:
    async def record(raw: Raw, reader, writer) -> None:
        raw.requests.append(await read_request(reader))
        writer.write(reply(200, b"{}"))
        await writer.drain()

    raw = await serve(record)
    await client.post(f"http://us%40er:p%3Ass@127.0.0.1:{raw.port}/a b/ü?x=1 2", {},
                      timeout=2)
    head = raw.requests[0][0].decode()
    assert head.startswith("POST /a%20b/%C3%BC?x=1%202 HTTP/1.1\r\n")
    assert f"Host: 127.0.0.1:{raw.port}\r\n" in head
    token = base64.b64encode(b"us@er:p:ss").decode()
    assert f"Authorization: Basic {token}\r\n" in head
    assert "Content-Length: 2\r\n" in head


async def test_pool_bounds_connections_per_host(serve) -> None:
    active = 0
    peak = 0

    async def slow(raw: Raw, reader, writer) -> None:
        nonlocal active, peak
        while await read_request(reader):
            active += 1
            peak = max(peak, active)
            await asyncio.sleep(0.05)
            active -= 1
            writer.write(reply(200, b"{}"))
            await writer.drain()

    raw = await serve(slow)
    pool = Http1Pool(limit_per_host=3, keepalive=4.0)
    target = parse_target(raw.url, raw.url)
    try:
        tail = b"Content-Length: 0\r\n\r\n"
        results = await asyncio.gather(*(pool.request(target, tail, 1024) for _ in range(12)))
    finally:
        await pool.close()
    assert all(status == 200 for status, _ in results)
    assert peak == 3 and raw.connections == 3


async def test_tls_with_an_untrusted_certificate_is_refused(tmp_path, client) -> None:
    import ssl
    import subprocess

    key, crt = tmp_path / "k.pem", tmp_path / "c.pem"
    subprocess.run(["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-subj",
                    "/CN=127.0.0.1", "-days", "1", "-keyout", key, "-out", crt],
                   check=True, capture_output=True)
    ctx = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    ctx.load_cert_chain(crt, key)

    async def on_conn(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
        writer.close()

    server = await asyncio.start_server(on_conn, "127.0.0.1", 0, ssl=ctx)
    port = server.sockets[0].getsockname()[1]
    try:
        with pytest.raises(HookError) as info:
            await client.post(f"https://127.0.0.1:{port}/hook", {}, timeout=2)
        assert info.value.kind == "connect"
    finally:
        server.close()


@pytest.mark.parametrize("url", ["http://", "http://exa mple.com/", "http://h:99999/",
                                 "ftp://h/", "http://[::1/"])
def test_bad_urls_are_refused_before_any_io(url: str) -> None:
    with pytest.raises(HookError) as info:
        parse_target(url, "u")
    assert info.value.kind == "url"
