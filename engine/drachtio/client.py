"""asyncio client for drachtio-server in inbound-connection mode (spec §3).

The engine dials the server's application port, authenticates with the shared
secret, sends one ``route`` per SIP method its machines handle, pings to notice a
dead or frozen server, and on any loss reconnects with capped exponential backoff
(with jitter) and routes again. :attr:`DrachtioClient.ready` is true only while the
connection is up, authenticated and routed.

Failures are operator-facing, not programmer-facing: an unreachable server, a wrong
secret or a malformed frame is one warning line per attempt naming host and port,
never a traceback, and never the secret. A request that may have reached the server
is never sent again: when the connection drops, every pending request fails with
:class:`DrachtioUnavailable` and the caller decides.

Incoming ``sip`` frames (new requests, responses to our requests, ACK/CANCEL notices,
``unsolicited`` BYEs) are handed to ``on_sip`` synchronously, in wire order; the
callback must not block (start a task for slow work).
"""

from __future__ import annotations

import asyncio
import contextlib
import enum
import functools
import random
import socket
from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

from engine.drachtio.wire import (
    LARGE_PAYLOAD,
    CdrFrame,
    Correlator,
    DrachtioFramingError,
    DrachtioProtocolError,
    FrameDecoder,
    MessageIds,
    ResponseFrame,
    ServerInfo,
    SipFrame,
    UnknownFrame,
    build_authenticate,
    build_ping,
    build_proxy,
    build_remove_route,
    build_route,
    build_sip,
    parse_server_frame,
    server_info,
)
from engine.errors import TransportError
from engine.log import get_logger

log = get_logger(__name__)

_READ_SIZE = 65536
_WRITE_HIGH_WATER = 1 << 20


class DrachtioError(TransportError):
    """A drachtio operation could not be completed."""


class DrachtioUnavailable(DrachtioError):
    """Not connected, or the connection dropped before the answer came. The frame may
    have reached the server: it is not sent again."""


class DrachtioTimeout(DrachtioError):
    """The server did not answer in time. The frame may have been acted on."""


class ClientState(enum.StrEnum):
    DISCONNECTED = "disconnected"
    CONNECTING = "connecting"
    AUTHENTICATING = "authenticating"
    ROUTING = "routing"
    READY = "ready"
    STOPPED = "stopped"


@dataclass(frozen=True, slots=True)
class Backoff:
    """Delays between connection attempts: ``first × factor**n`` capped at ``cap``, minus
    up to ``jitter`` of it at random so several engines do not reconnect in lockstep.
    The defaults follow srf (150 ms × 1.7, then × 1.7) with a 2 s cap, so a restarted
    server is seen again well within 5 s."""

    first: float = 0.255
    factor: float = 1.7
    cap: float = 2.0
    jitter: float = 0.25

    def delay(self, attempt: int, rand: Callable[[], float] = random.random) -> float:
        base = min(self.cap, self.first * self.factor ** max(0, attempt))
        return base * (1.0 - self.jitter * rand())


class _SetupFailed(Exception):
    """One connection attempt failed before readiness; the message is the log line's cause."""


class _Connection:
    """One TCP connection: its stream, frame decoder, pending requests and write gate."""

    def __init__(self, reader: asyncio.StreamReader, writer: asyncio.StreamWriter):
        self.reader = reader
        self.writer = writer
        self.decoder = FrameDecoder()
        self.correlator: Correlator[asyncio.Future[list[ResponseFrame]]] = Correlator()
        self.gate = asyncio.Event()  # set while no large frame awaits its answer (§1.2)
        self.gate.set()
        self.closed = asyncio.Event()
        self.error: str | None = None  # why it closed
        self.protocol_error = False

    def close(self, reason: str) -> None:
        if self.error is None:
            self.error = reason
        self.writer.transport.abort()

    def fail_pending(self, reason: str) -> None:
        for entry in self.correlator.drain():
            if not entry.token.done():
                entry.token.set_exception(DrachtioUnavailable(reason))
        self.gate.set()


class DrachtioClient:
    """One engine's control connection to one drachtio-server."""

    def __init__(self, host: str, port: int, secret: str, *, verbs: Iterable[str],
                 on_sip: Callable[[SipFrame], None],
                 on_cdr: Callable[[CdrFrame], None] | None = None,
                 on_connection_lost: Callable[[int], None] | None = None,
                 on_ready: Callable[[int], None] | None = None,
                 tags: Sequence[str] = (), ping_interval: float = 15.0,
                 ping_timeout: float | None = None, request_timeout: float = 10.0,
                 connect_timeout: float = 3.0, backoff: Backoff = Backoff(),
                 rand: Callable[[], float] = random.random):
        self.host = host
        self.port = port
        self._secret = secret
        self.verbs = tuple(dict.fromkeys(v.lower() for v in verbs))
        self.tags = tuple(tags)
        self.on_sip = on_sip
        self.on_cdr = on_cdr
        self.on_connection_lost = on_connection_lost
        self.on_ready = on_ready
        self.ping_interval = ping_interval
        self.ping_timeout = ping_timeout if ping_timeout is not None else ping_interval
        self.request_timeout = request_timeout
        self.connect_timeout = connect_timeout
        self.backoff = backoff
        self._rand = rand
        self._ids = MessageIds()
        self._state = ClientState.DISCONNECTED
        self._ready_event = asyncio.Event()
        self._conn: _Connection | None = None
        self._task: asyncio.Task[None] | None = None
        self.server: ServerInfo | None = None
        #: Increments each time a connection becomes ready; dialogs and transactions of an
        #: older epoch are dead (the server answers their in-dialog requests 481, §3.6).
        self.epoch = 0
        self.attempts = 0  # failed connection attempts since the last ready connection
        #: True between :meth:`withdraw_routes` and :meth:`restore_routes`: no connection
        #: (not even a new one after a reconnect) asks for new requests meanwhile.
        self.withdrawn = False
        self._routing = asyncio.Lock()  # one route change at a time on the wire

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> DrachtioClient:
        """Build from ``DRACHTIO_HOST``/``DRACHTIO_PORT``/``DRACHTIO_SECRET``."""
        return cls(settings.drachtio_host, settings.drachtio_port, settings.drachtio_secret,
                   **kwargs)

    @property
    def address(self) -> str:
        return f"{self.host}:{self.port}"

    @property
    def state(self) -> ClientState:
        return self._state

    @property
    def ready(self) -> bool:
        return self._state is ClientState.READY

    # ------------------------------------------------------------------ lifecycle

    def start(self) -> None:
        """Start connecting in the background (returns at once; see :meth:`wait_ready`)."""
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"drachtio-client {self.address}")

    async def wait_ready(self, timeout: float | None = None) -> bool:
        """True once ready (connected, authenticated, routed); False on timeout."""
        try:
            async with asyncio.timeout(timeout):
                await self._ready_event.wait()
        except TimeoutError:
            return False
        return True

    async def stop(self) -> None:
        """Close the connection and stop reconnecting; pending requests fail."""
        self._set_state(ClientState.STOPPED)
        conn = self._conn
        if conn is not None:
            conn.close("client stopped")
            conn.fail_pending("drachtio client stopped")
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
            self._task = None

    async def add_verb(self, verb: str) -> None:
        """Ask for new requests of ``verb`` too: on every future connection, and now when
        connected (``route``; never ``remove_route``, which drops every route, §3.4)."""
        verb = verb.lower()
        if verb in self.verbs:
            return
        self.verbs = (*self.verbs, verb)
        async with self._routing:
            conn = self._conn
            if conn is not None and self.ready and not self.withdrawn:
                await self._route(conn, (verb,))

    async def withdraw_routes(self) -> None:
        """Ask for no new requests any more (a draining engine whose peers take them):
        ``remove_route``, which drops every route of the connection (§3.4) — exactly what
        is wanted here. In-dialog requests and responses of our own dialogs and
        transactions still arrive (§3.3). Holds across reconnections until
        :meth:`restore_routes`. Raises :class:`DrachtioError` when the server could not be
        told (the flag is set anyway: a new connection will not route)."""
        async with self._routing:
            self.withdrawn = True
            conn = self._conn
            if conn is not None and self.ready and self.verbs:
                verb = self.verbs[0]
                answer = (await self._call(conn, lambda mid: build_remove_route(mid, verb),
                                           "remove_route", self.connect_timeout))[-1]
                if not answer.ok:
                    raise DrachtioError(f"drachtio at {self.address} refused remove_route "
                                        f"({answer.reason})")

    async def restore_routes(self) -> None:
        """Undo :meth:`withdraw_routes`: ``route`` every verb again (now, when connected,
        and on every later connection)."""
        async with self._routing:
            self.withdrawn = False
            conn = self._conn
            if conn is not None and self.ready:
                await self._route(conn, self.verbs)

    async def _route(self, conn: _Connection, verbs: Sequence[str]) -> None:
        routes = [self._call(conn, functools.partial(build_route, verb=verb), "route",
                             self.connect_timeout) for verb in verbs]
        for verb, answers in zip(verbs, await asyncio.gather(*routes), strict=True):
            if not answers[-1].ok:
                log.warning("drachtio refused a route", verb=verb, reason=answers[-1].reason,
                            host=self.host, port=self.port)

    # ------------------------------------------------------------------ requests

    async def send_sip(self, message: str, *, transaction_id: str = "", dialog_id: str = "",
                       route_uri: str | None = None, timeout: float | None = None
                       ) -> ResponseFrame:
        """Send a SIP request or response (§4.3) and return the server's answer.

        ``NOK`` (SIP-level failure) is returned, not raised: some are expected, e.g. the
        ACK of a non-2xx (§5.3). Raises :class:`DrachtioUnavailable`/:class:`DrachtioTimeout`.
        """
        return (await self._request(
            lambda mid: build_sip(mid, message, transaction_id, dialog_id, route_uri),
            "sip", timeout))[-1]

    async def respond(self, transaction_id: str, message: str,
                      timeout: float | None = None) -> ResponseFrame:
        """Answer the received request ``transaction_id`` with the response ``message``."""
        return await self.send_sip(message, transaction_id=transaction_id, timeout=timeout)

    async def proxy(self, transaction_id: str, destinations: Sequence[str], message: str,
                    timeout: float | None = None, **options: Any) -> list[ResponseFrame]:
        """Proxy a received request (§4.4); every answer, the last one ``done``/``NOK``."""
        return await self._request(
            lambda mid: build_proxy(mid, transaction_id, destinations, message, **options),
            "proxy", timeout)

    async def ping(self, timeout: float | None = None) -> bool:
        """True when the server answers ``pong``."""
        answers = await self._request(build_ping, "ping", timeout)
        return answers[-1].ok

    async def _request(self, build: Callable[[str], bytes], kind: str,
                       timeout: float | None) -> list[ResponseFrame]:
        conn = self._conn
        if conn is None or not self.ready:
            raise DrachtioUnavailable(f"drachtio at {self.address} is not connected")
        return await self._call(conn, build, kind, timeout)

    def submit_sip(self, message: str, *, transaction_id: str = "", dialog_id: str = "",
                   route_uri: str | None = None, timeout: float | None = None
                   ) -> asyncio.Future[list[ResponseFrame]]:
        """:meth:`send_sip` without waiting: the frame is written now (or, behind a large
        frame, as soon as it may be) and the returned future gets the server's answers.
        For callers that must not suspend (a machine's reply). Raises
        :class:`DrachtioUnavailable` when not connected, ``FrameTooLarge``/``InvalidToken``
        for a frame that cannot be sent."""
        conn = self._conn
        if conn is None or not self.ready or conn.error is not None:
            raise DrachtioUnavailable(f"drachtio at {self.address} is not connected")
        msg_id = self._ids()
        data = build_sip(msg_id, message, transaction_id, dialog_id, route_uri)
        if conn.correlator.large_outstanding:
            return asyncio.get_running_loop().create_task(
                self._call(conn, lambda _mid: data, "sip", timeout, msg_id))
        return self._write(conn, msg_id, "sip", data, self._limit(timeout))

    def _limit(self, timeout: float | None) -> float:
        return self.request_timeout if timeout is None else timeout

    def _write(self, conn: _Connection, msg_id: str, kind: str, data: bytes,
               limit: float, shown: float | None = None
               ) -> asyncio.Future[list[ResponseFrame]]:
        """Register ``msg_id`` and write its frame; the future fails with
        :class:`DrachtioTimeout` after ``limit`` seconds without an answer."""
        loop = asyncio.get_running_loop()
        future: asyncio.Future[list[ResponseFrame]] = loop.create_future()
        large = len(data) > LARGE_PAYLOAD
        conn.correlator.add(msg_id, kind, future, large=large)
        if large:
            conn.gate.clear()
        conn.writer.write(data)
        timer = loop.call_later(limit, self._expire, conn, msg_id, kind,
                                limit if shown is None else shown, future)
        future.add_done_callback(lambda _f: timer.cancel())
        return future

    def _expire(self, conn: _Connection, msg_id: str, kind: str, limit: float,
                future: asyncio.Future[list[ResponseFrame]]) -> None:
        conn.correlator.discard(msg_id)
        if not conn.correlator.large_outstanding:
            conn.gate.set()
        if not future.done():
            future.set_exception(DrachtioTimeout(
                f"drachtio at {self.address} did not answer {kind} within {limit:g} s"))

    async def _call(self, conn: _Connection, build: Callable[[str], bytes], kind: str,
                    timeout: float | None, msg_id: str | None = None) -> list[ResponseFrame]:
        # the deadline is the answer future's own timer (_write), shared with submit_sip
        msg_id = msg_id or self._ids()
        data = build(msg_id)  # FrameTooLarge/InvalidToken reach the caller before any I/O
        limit = self._limit(timeout)
        loop = asyncio.get_running_loop()
        deadline = loop.time() + limit
        while conn.correlator.large_outstanding and conn.error is None:
            try:  # nothing behind a large frame (§1.2)
                async with asyncio.timeout_at(deadline):
                    await conn.gate.wait()
            except TimeoutError:
                raise DrachtioTimeout(f"drachtio at {self.address} did not answer {kind} "
                                      f"within {limit:g} s") from None
            if conn.correlator.large_outstanding:
                conn.gate.clear()
        if conn.error is not None:
            raise DrachtioUnavailable(f"drachtio at {self.address}: {conn.error}")
        future = self._write(conn, msg_id, kind, data, max(0.0, deadline - loop.time()), limit)
        if conn.writer.transport.get_write_buffer_size() > _WRITE_HIGH_WATER:
            await conn.writer.drain()  # a stalled server must not grow our buffer
        return await future

    # ------------------------------------------------------------------ connection loop

    def _set_state(self, state: ClientState) -> None:
        if self._state is ClientState.STOPPED:
            return
        self._state = state
        if state is ClientState.READY:
            self._ready_event.set()
        else:
            self._ready_event.clear()

    async def _run(self) -> None:
        while self._state is not ClientState.STOPPED:
            try:
                was_ready, cause = await self._attempt()
            except Exception as exc:  # safety net: the client must keep reconnecting
                log.exception("drachtio connection attempt failed", host=self.host,
                              port=self.port)
                was_ready, cause = False, f"drachtio at {self.address}: {type(exc).__name__}"
            if self._state is ClientState.STOPPED:
                return
            self._set_state(ClientState.DISCONNECTED)
            if was_ready:
                self.attempts = 0
                if self.on_connection_lost is not None:
                    try:
                        self.on_connection_lost(self.epoch)
                    except Exception:
                        log.exception("drachtio connection-lost handler failed")
            delay = self.backoff.delay(self.attempts, self._rand)
            self.attempts += 1
            log.warning(f"{cause}; retrying in {delay:.2f} s", host=self.host, port=self.port,
                        attempt=self.attempts)
            await asyncio.sleep(delay)

    async def _attempt(self) -> tuple[bool, str]:
        """One connection from dial to loss: (whether it became ready, why it ended)."""
        self._set_state(ClientState.CONNECTING)
        try:
            reader, writer = await asyncio.wait_for(
                asyncio.open_connection(self.host, self.port), self.connect_timeout)
        except TimeoutError:
            return False, (f"cannot reach drachtio at {self.address}: no TCP connection "
                           f"within {self.connect_timeout:g} s")
        except OSError as exc:
            why = exc.strerror or str(exc) or type(exc).__name__
            return False, f"cannot reach drachtio at {self.address}: {why}"
        sock = writer.get_extra_info("socket")
        if sock is not None:
            with contextlib.suppress(OSError):  # as srf does (§1.1)
                sock.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
                sock.setsockopt(socket.SOL_SOCKET, socket.SO_KEEPALIVE, 1)
        conn = _Connection(reader, writer)
        self._conn = conn
        reader_task = asyncio.get_running_loop().create_task(self._read_loop(conn))
        ping_task: asyncio.Task[None] | None = None
        try:
            await self._set_up(conn)
            self.epoch += 1
            self.attempts = 0
            self._set_state(ClientState.READY)
            log.info("drachtio ready", host=self.host, port=self.port,
                     version=self.server.version if self.server else "",
                     routes="" if self.withdrawn else ",".join(self.verbs), epoch=self.epoch)
            if self.on_ready is not None:
                try:
                    self.on_ready(self.epoch)
                except Exception:
                    log.exception("drachtio ready handler failed")
            ping_task = asyncio.get_running_loop().create_task(self._ping_loop(conn))
            await conn.closed.wait()
            if conn.protocol_error:
                return True, (f"malformed frame from drachtio at {self.address} ({conn.error}); "
                              "connection reset")
            return True, f"connection to drachtio at {self.address} lost ({conn.error})"
        except _SetupFailed as exc:
            return False, str(exc)
        finally:
            self._set_state(ClientState.DISCONNECTED)
            conn.close(conn.error or "connection closed")
            conn.fail_pending(f"connection to drachtio at {self.address} lost")
            for task in (ping_task, reader_task):
                if task is not None:
                    task.cancel()
                    with contextlib.suppress(asyncio.CancelledError):
                        await task
            if self._conn is conn:
                self._conn = None

    async def _set_up(self, conn: _Connection) -> None:
        """authenticate, then route every verb; raise :class:`_SetupFailed` with the cause."""
        where = f"drachtio at {self.address}"
        self._set_state(ClientState.AUTHENTICATING)
        try:
            answer = (await self._call(
                conn, lambda mid: build_authenticate(mid, self._secret, self.tags),
                "authenticate", self.connect_timeout))[-1]
            if not answer.ok:
                raise _SetupFailed(f"{where} refused authentication ({answer.reason or 'NO'}); "
                                   "check DRACHTIO_SECRET")
            try:
                self.server = server_info(answer)
            except DrachtioProtocolError as exc:
                conn.protocol_error = True
                raise _SetupFailed(f"malformed authenticate answer from {where}: {exc}") \
                    from None
            self._set_state(ClientState.ROUTING)
            async with self._routing:  # a withdrawal (drain) stays one after a reconnect
                verbs = () if self.withdrawn else self.verbs
                routes = [self._call(conn, functools.partial(build_route, verb=verb), "route",
                                     self.connect_timeout) for verb in verbs]
                for verb, answers in zip(verbs, await asyncio.gather(*routes), strict=True):
                    if not answers[-1].ok:
                        raise _SetupFailed(
                            f"{where} refused route {verb} ({answers[-1].reason})")
        except DrachtioTimeout as exc:
            raise _SetupFailed(str(exc)) from None
        except DrachtioUnavailable:
            if conn.protocol_error:
                raise _SetupFailed(f"malformed frame from {where} during set-up ({conn.error}); "
                                   "connection reset") from None
            raise _SetupFailed(f"{where} closed the connection during set-up "
                               f"({conn.error})") from None

    async def _ping_loop(self, conn: _Connection) -> None:
        """A frozen server keeps the TCP connection open: only missing pongs reveal it."""
        while conn.error is None:
            await asyncio.sleep(self.ping_interval)
            try:
                await self._call(conn, build_ping, "ping", self.ping_timeout)
            except DrachtioTimeout:
                conn.close(f"no pong within {self.ping_timeout:g} s")
                return
            except DrachtioUnavailable:
                return

    async def _read_loop(self, conn: _Connection) -> None:
        try:
            while True:
                data = await conn.reader.read(_READ_SIZE)
                if not data:
                    conn.error = conn.error or "closed by the server"
                    return
                try:
                    payloads = conn.decoder.feed(data)
                except DrachtioFramingError as exc:
                    payloads = exc.frames  # complete before the corruption: still valid
                    for payload in payloads:
                        self._dispatch(conn, parse_server_frame(payload))
                    raise
                for payload in payloads:
                    self._dispatch(conn, parse_server_frame(payload))
        except DrachtioProtocolError as exc:
            conn.protocol_error = True
            conn.error = str(exc)
        except OSError as exc:
            conn.error = conn.error or (exc.strerror or type(exc).__name__)
        except Exception as exc:  # a bug here must reset this connection, not the client
            log.exception("drachtio reader failed", host=self.host, port=self.port)
            conn.error = f"internal error: {type(exc).__name__}"
        finally:
            conn.close(conn.error or "closed")
            conn.fail_pending(f"connection to drachtio at {self.address} lost: {conn.error}")
            conn.closed.set()

    def _dispatch(self, conn: _Connection,
                  frame: SipFrame | ResponseFrame | CdrFrame | UnknownFrame) -> None:
        if isinstance(frame, ResponseFrame):
            entry = conn.correlator.resolve(frame)
            if entry is None:
                log.debug("drachtio answer for no pending request", msg_id=frame.request_id)
            elif entry.done:
                if not conn.correlator.large_outstanding:
                    conn.gate.set()
                if not entry.token.done():
                    entry.token.set_result(entry.responses)
        elif isinstance(frame, SipFrame):
            self._deliver(self.on_sip, frame)
        elif isinstance(frame, CdrFrame):
            if self.on_cdr is not None:
                self._deliver(self.on_cdr, frame)
        else:
            log.warning("drachtio sent an unknown frame type; ignored", kind=frame.kind[:40],
                        host=self.host, port=self.port)

    @staticmethod
    def _deliver(callback: Callable[[Any], None], frame: SipFrame | CdrFrame) -> None:
        try:
            callback(frame)
        except Exception:  # a handler bug must not take the connection (and every call) down
            log.exception("drachtio frame handler failed")
