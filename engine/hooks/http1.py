"""A lean HTTP/1.1 POST client with a keep-alive pool, for the webhook hot path.

Why not aiohttp here: a RegHook call sits inside every REGISTER and a CallHook
inside every call set-up. Profiling the registrar under load
(``bench/bench_registration.py --reghook``) showed aiohttp's client spending
~300 µs of CPU per request (session, tracing, cookie jar, header multidicts,
stream readers) — more than half of a whole digest registration's engine
cost. A webhook POST needs none of that: one request line, a handful of fixed
headers, a small JSON reply. This module writes the request as one pre-built
byte string and parses the reply with ``httptools`` (the C llhttp parser
uvicorn uses), on plain ``asyncio.Protocol`` connections. ``bench/bench_hooks.py``
compares it with aiohttp.

What it does and does not do:

* pooled HTTP/1.1 keep-alive connections per (scheme, host, port), at most
  ``limit_per_host`` at once (callers beyond that wait, inside their own
  timeout); idle connections older than ``keepalive`` seconds are not reused;
* ``http`` and ``https`` (default TLS context: certificates verified);
* user-info in the URL becomes ``Authorization: Basic``;
* Content-Length, chunked and read-until-close replies; ``gzip``/``deflate``
  content codings decoded; the reply size is capped (after decoding too);
* no redirects, no cookies, no proxies from the environment — a webhook URL
  means exactly that URL;
* a request is sent at most once. Before a pooled connection carries one, its
  socket is peeked (``engine.idle_check``): a connection the server already
  closed (the keep-alive race: its FIN is here, its ``connection_lost`` not yet
  run) is discarded and the request goes on another, or a new one. Once bytes
  are written, a connection that dies before the reply is a failure
  (``kind="connect"``), never a re-send: the server may have acted on the body.

Failures raise ``HookError`` with the kinds ``HookClient`` documents.
"""

from __future__ import annotations

import asyncio
import base64
import ssl
import time
import zlib
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from urllib.parse import quote, unquote, urlsplit

import httptools

from engine.errors import HookError
from engine.idle_check import peer_gone

_MAX_TARGETS = 4096  # parsed-URL cache bound; webhook URLs come from config, so few


@dataclass(frozen=True, slots=True)
class HttpTarget:
    """A webhook URL parsed once: where to connect and the request's first lines."""

    key: tuple[str, str, int]
    host: str
    port: int
    tls: bool
    display: str  # the URL without user-info or query string, for messages
    head: bytes  # "POST <path> HTTP/1.1\r\nHost: …\r\n[Authorization: …\r\n]"


def parse_target(url: str, display: str) -> HttpTarget:
    """``HttpTarget`` of an absolute http(s) URL; ``HookError(kind="url")`` otherwise."""
    try:
        parts = urlsplit(url)
        port = parts.port
    except ValueError as exc:
        raise HookError(f"invalid webhook URL {display}", kind="url") from exc
    scheme = parts.scheme.lower()
    host = parts.hostname
    if scheme not in ("http", "https") or not host:
        raise HookError(f"not an http(s) URL: {display}", kind="url")
    tls = scheme == "https"
    if port is None:
        port = 443 if tls else 80
    try:
        ascii_host = host if host.isascii() else host.encode("idna").decode("ascii")
    except UnicodeError as exc:
        raise HookError(f"invalid host in webhook URL {display}", kind="url") from exc
    if any(c in ascii_host for c in "\r\n\t /\\@"):
        raise HookError(f"invalid host in webhook URL {display}", kind="url")
    host_header = f"[{ascii_host}]" if ":" in ascii_host else ascii_host
    if port != (443 if tls else 80):
        host_header = f"{host_header}:{port}"
    # Re-quote like a browser: keep existing %-escapes and reserved characters,
    # escape what may not appear raw in a request line (spaces, CR/LF, non-ASCII).
    path = quote(parts.path or "/", safe="/%:@!$&'()*+,;=-._~")
    if parts.query:
        path = f"{path}?{quote(parts.query, safe='/?%:@!$&()*+,;=-._~')}"
    lines = [f"POST {path} HTTP/1.1\r\nHost: {host_header}\r\n"]
    if parts.username is not None:
        creds = f"{unquote(parts.username)}:{unquote(parts.password or '')}"
        token = base64.b64encode(creds.encode("utf-8")).decode("ascii")
        lines.append(f"Authorization: Basic {token}\r\n")
    return HttpTarget((scheme, ascii_host, port), ascii_host, port, tls, display,
                  "".join(lines).encode("ascii"))


class _Connection(asyncio.Protocol):
    """One HTTP/1.1 connection: one request at a time, the reply parsed by llhttp."""

    __slots__ = (
        "_cap",
        "_chunks",
        "_encoding",
        "_framed",
        "_got_bytes",
        "_headers_done",
        "_keep_alive",
        "_key",
        "_parser",
        "_pool",
        "_size",
        "_status",
        "_waiter",
        "closed",
        "last_used",
        "transport",
    )

    def __init__(self, pool: Http1Pool, key: tuple[str, str, int]) -> None:
        self.transport: asyncio.Transport | None = None
        self.closed = False
        self.last_used = 0.0
        self._pool: Http1Pool | _DetachedPool = pool
        self._key = key
        self._parser: httptools.HttpResponseParser | None = None
        self._waiter: asyncio.Future[tuple[int, bytes]] | None = None
        self._reset(0)

    def _reset(self, cap: int) -> None:
        self._status = 0
        self._chunks: list[bytes] = []
        self._size = 0
        self._cap = cap
        self._encoding = b""
        self._headers_done = False
        self._framed = False  # Content-Length or chunked: the reply has a known end
        self._got_bytes = False
        self._keep_alive = False

    # -- asyncio.Protocol ---------------------------------------------------------------

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def data_received(self, data: bytes) -> None:
        waiter = self._waiter
        if waiter is None or waiter.done():
            # Bytes nobody asked for (a server talking on an idle connection):
            # the connection's framing can no longer be trusted.
            self.abort()
            return
        self._got_bytes = True
        try:
            self._parser.feed_data(data)  # type: ignore[union-attr]
        except httptools.HttpParserUpgrade:
            self._fail(HookError("webhook server switched protocols", kind="error"))
        except httptools.HttpParserError as exc:
            cause = exc.__context__  # a callback's own error (the size cap) comes wrapped
            self._fail(cause if isinstance(cause, HookError)
                       else HookError(f"malformed HTTP reply: {exc}", kind="error"))

    def eof_received(self) -> bool:
        return False  # close our side too; connection_lost follows

    def connection_lost(self, exc: Exception | None) -> None:
        self.closed = True
        self._pool._forget(self)
        waiter = self._waiter
        if waiter is None or waiter.done():
            return
        if self._headers_done and not self._framed:
            self._finish()  # a read-until-close reply ends here
            return
        if not self._got_bytes:
            # The request was written: the server may have processed it. Not retried.
            self._fail(HookError("server closed the connection before replying",
                                 kind="connect"))
        else:
            self._fail(HookError("server closed the connection mid-reply", kind="error"))

    # -- httptools callbacks ------------------------------------------------------------

    def on_header(self, name: bytes, value: bytes) -> None:
        lname = name.lower()
        if lname == b"content-length":
            self._framed = True
            try:
                length = int(value)
            except ValueError:
                return  # llhttp rejects it itself
            if length > self._cap:
                raise HookError(f"reply is {length} bytes (cap {self._cap})", kind="too_large")
        elif lname == b"transfer-encoding":
            self._framed = True
        elif lname == b"content-encoding":
            self._encoding = value.strip().lower()

    def on_headers_complete(self) -> None:
        self._headers_done = True
        self._status = self._parser.get_status_code()  # type: ignore[union-attr]
        if 100 <= self._status < 200:
            # An interim reply (100 Continue, 103 Early Hints): the real one follows.
            self._headers_done = False
            self._framed = False
            self._encoding = b""

    def on_body(self, body: bytes) -> None:
        self._size += len(body)
        if self._size > self._cap:
            raise HookError(f"reply exceeds {self._cap} bytes", kind="too_large")
        self._chunks.append(body)

    def on_message_complete(self) -> None:
        if not self._headers_done:
            return  # end of an interim 1xx reply
        self._keep_alive = self._parser.should_keep_alive()  # type: ignore[union-attr]
        self._finish()

    # -- request/reply ------------------------------------------------------------------

    def send(self, data: bytes, cap: int) -> asyncio.Future[tuple[int, bytes]]:
        """Write one request; the future resolves to ``(status, body)``."""
        if self.closed or self.transport is None or self.transport.is_closing():
            # Nothing was written: safe to send on another connection.
            raise HookError("connection closed before the request was sent",
                            kind="connect", retryable=True)
        self._reset(cap)
        self._parser = httptools.HttpResponseParser(self)
        self._waiter = waiter = asyncio.get_running_loop().create_future()
        self.transport.write(data)
        return waiter

    @property
    def reusable(self) -> bool:
        return self._keep_alive and not self.closed

    def _finish(self) -> None:
        waiter = self._waiter
        body = b"".join(self._chunks) if len(self._chunks) != 1 else self._chunks[0]
        self._chunks = []
        if self._encoding in (b"gzip", b"x-gzip", b"deflate"):
            try:
                body = _decode(body, self._encoding, self._cap)
            except HookError as exc:
                self._fail(exc)
                return
        if waiter is not None and not waiter.done():
            waiter.set_result((self._status, body))

    def _fail(self, exc: HookError) -> None:
        self._keep_alive = False
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_exception(exc)
        self.abort()

    def abort(self) -> None:
        self._keep_alive = False
        if self.transport is not None and not self.closed:
            self.closed = True
            self.transport.abort()


def _decode(body: bytes, encoding: bytes, cap: int) -> bytes:
    """Body decoded from gzip/deflate, never more than ``cap`` bytes (no zip bombs)."""
    if encoding == b"deflate":
        # "deflate" in HTTP is zlib-wrapped, but some servers send raw deflate.
        wbits = zlib.MAX_WBITS if body[:1] == b"\x78" else -zlib.MAX_WBITS
    else:
        wbits = zlib.MAX_WBITS | 16
    decoder = zlib.decompressobj(wbits)
    try:
        out = decoder.decompress(body, cap + 1)
    except zlib.error as exc:
        raise HookError(f"reply is not valid {encoding.decode()}", kind="error") from exc
    if len(out) > cap or decoder.unconsumed_tail:
        raise HookError(f"decoded reply exceeds {cap} bytes", kind="too_large")
    return out


class Http1Pool:
    """Keep-alive connections per (scheme, host, port), bounded per host."""

    def __init__(self, *, limit_per_host: int, keepalive: float) -> None:
        self._limit = limit_per_host
        self._keepalive = keepalive
        self._idle: dict[tuple[str, str, int], deque[_Connection]] = {}
        self._open: dict[tuple[str, str, int], int] = {}  # connecting + busy + idle
        self._waiters: dict[tuple[str, str, int], deque[asyncio.Future[None]]] = {}
        self._targets: dict[str, HttpTarget] = {}
        self._ssl: ssl.SSLContext | None = None
        self._closed = False

    def target(self, url: str, display: Callable[[str], str]) -> HttpTarget:
        """The parsed ``url`` (cached: parsed once per URL, not per request);
        ``display(url)`` makes the log-safe form, only on a miss."""
        target = self._targets.get(url)
        if target is None:
            target = parse_target(url, display(url))
            if len(self._targets) >= _MAX_TARGETS:
                self._targets.clear()
            self._targets[url] = target
        return target

    async def request(self, target: HttpTarget, tail: bytes, cap: int) -> tuple[int, bytes]:
        """Send ``target.head + tail`` (the rest of the headers and the body)."""
        data = target.head + tail
        conn = await self._acquire(target)
        try:
            try:
                reply = conn.send(data, cap)
            except HookError as exc:
                if not exc.retryable:  # raised before writing: nothing left
                    raise
                self._release(conn)
                conn = await self._acquire(target, fresh=True)
                reply = conn.send(data, cap)
            status, body = await reply  # written: whatever happens now, never re-sent
        except BaseException:
            conn.abort()  # timeout, cancellation or error: its framing is unknown now
            self._release(conn)
            raise
        self._release(conn)
        return status, body

    async def _acquire(self, target: HttpTarget, *, fresh: bool = False) -> _Connection:
        key = target.key
        while True:
            if self._closed:
                raise HookError("webhook client is closed", kind="closed")
            idle = self._idle.get(key)
            if idle and not fresh:
                stale_before = time.monotonic() - self._keepalive
                while idle:
                    conn = idle.pop()  # most recently used first: least likely to be stale
                    if conn.closed or conn.last_used < stale_before or \
                            peer_gone(conn.transport):
                        conn.abort()
                        self._forget(conn)  # after pop: no longer in idle
                        continue
                    return conn
            if self._open.get(key, 0) < self._limit:
                return await self._connect(target)
            waiter = asyncio.get_running_loop().create_future()
            self._waiters.setdefault(key, deque()).append(waiter)
            try:
                await waiter
            finally:
                queue = self._waiters.get(key)
                if queue is not None and waiter in queue:
                    queue.remove(waiter)

    async def _connect(self, target: HttpTarget) -> _Connection:
        key = target.key
        self._open[key] = self._open.get(key, 0) + 1
        conn = _Connection(self, key)
        loop = asyncio.get_running_loop()
        try:
            if target.tls:
                if self._ssl is None:
                    self._ssl = ssl.create_default_context()
                await loop.create_connection(lambda: conn, target.host, target.port,
                                             ssl=self._ssl, server_hostname=target.host)
            else:
                await loop.create_connection(lambda: conn, target.host, target.port)
        except BaseException as exc:
            conn.closed = True
            self._forget(conn)
            if isinstance(exc, OSError):
                raise HookError(f"cannot connect to {target.display}: {exc}",
                                kind="connect") from exc
            raise
        return conn

    def _release(self, conn: _Connection) -> None:
        if conn.reusable and not self._closed:
            conn.last_used = time.monotonic()
            conn._waiter = None
            self._idle.setdefault(conn._key, deque()).append(conn)
            self._wake(conn._key)
        else:
            conn.abort()
            self._forget(conn)

    def _forget(self, conn: _Connection) -> None:
        """Drop a closed connection from the books (idempotent: it detaches itself)."""
        if conn._pool is not self:
            return
        conn._pool = _NO_POOL
        key = conn._key
        idle = self._idle.get(key)
        if idle and conn in idle:
            idle.remove(conn)
        self._open[key] -= 1
        self._wake(key)

    def _wake(self, key: tuple[str, str, int]) -> None:
        queue = self._waiters.get(key)
        while queue:
            waiter = queue.popleft()
            if not waiter.done():
                waiter.set_result(None)
                return

    async def close(self) -> None:
        """Close every connection and refuse further requests."""
        self._closed = True
        for idle in list(self._idle.values()):
            for conn in list(idle):
                conn.abort()
        self._idle.clear()
        for queue in self._waiters.values():
            for waiter in queue:
                if not waiter.done():
                    waiter.set_result(None)  # wakes into the "closed" refusal
        await asyncio.sleep(0)  # let transports run their connection_lost


class _DetachedPool:
    """Stand-in pool of a connection already forgotten: further ``_forget`` is a no-op."""

    def _forget(self, conn: _Connection) -> None:
        return None


_NO_POOL = _DetachedPool()
