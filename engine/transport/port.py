"""``EmbeddedSipPort``: the ``engine.ports.SipPort`` of the embedded backend.

It is the transaction user (TU) on top of the pure
:class:`~engine.sip.endpoint.EndpointCore`: the driver feeds the core and
hands every event effect to :meth:`EmbeddedSipPort._on_event`, which routes
requests to handlers and dialogs and responses to the requests/legs waiting
for them.

Threading and ordering: everything runs on the event loop that called
:meth:`start`. Handlers of out-of-dialog requests run as tasks (one per
request, started in arrival order); dialog listeners and ``on_cancel``/
``on_provisional`` callbacks are called synchronously from the socket
callback, in network order (a coroutine returned by a listener becomes a task).
"""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from engine.clock import LoopClock
from engine.errors import SipTransportError
from engine.log import get_logger
from engine.ports import Clock, IncomingRequest, Peer
from engine.sip.builders import IdGenerator
from engine.sip.effects import (
    Effect,
    MessageRejected,
    RequestReceived,
    TimerConfig,
    TransactionTerminated,
    TransactionTimeout,
)
from engine.sip.endpoint import EndpointCore
from engine.sip.errors import TransactionStateError
from engine.transport.addresses import LocalAddresses
from engine.transport.driver import Driver
from engine.transport.requests import EmbeddedIncomingRequest
from engine.transport.udp import UdpTransport

log = get_logger("engine.transport.port")

Handler = Callable[[IncomingRequest], Awaitable[None]]
_SWEEP_INTERVAL = 5.0


class EmbeddedSipPort:
    """The embedded SIP stack behind the ``SipPort`` API.

    Construct with :meth:`from_settings` (or the keyword arguments), then
    ``await start()`` to bind the listeners and ``await close()`` to stop.
    ``timers`` (RFC 3261 T1/T2/T4) exists so tests can shorten 64*T1;
    ``server_header``/``user_agent`` are added to responses/requests we build.
    """

    def __init__(
        self, *, host: str = "0.0.0.0", port: int = 5060,
        transports: tuple[str, ...] = ("udp", "tcp"), external_address: str | None = None,
        clock: Clock | None = None, timers: TimerConfig | None = None,
        tcp_idle_timeout: float = 900.0, server_header: str | None = "DragonPBX",
        user_agent: str | None = "DragonPBX", ids: IdGenerator | None = None,
    ):
        bad = [t for t in transports if t not in ("udp", "tcp")]
        if bad or not transports:
            raise ValueError(f"unsupported SIP transports {bad or transports}")
        self.host = host
        self.requested_port = port
        self.transports = tuple(transports)
        self.clock: Clock = clock or LoopClock()
        self.ids = ids or IdGenerator()
        self.timers = timers or TimerConfig()
        self.tcp_idle_timeout = tcp_idle_timeout
        self.user_agent = user_agent
        self.addresses = LocalAddresses(host, port, external_address)
        self.core = EndpointCore(timers=self.timers, ids=self.ids, server_header=server_header)
        self.driver = Driver(self.core, self.clock, self._on_event)
        self._loop: asyncio.AbstractEventLoop | None = None
        self._handlers: dict[str, Handler] = {}
        self._unanswered: dict[int, tuple[float, EmbeddedIncomingRequest]] = {}
        self._tasks: set[asyncio.Task[Any]] = set()
        self._sweeper: Any = None
        self._started = False
        self._closed = False
        self._dispatch: dict[type, Callable[[Any], None]] = {
            RequestReceived: self._on_request,
            TransactionTimeout: self._on_timeout,
            TransactionTerminated: self._on_terminated,
            MessageRejected: self._on_rejected,
        }

    @classmethod
    def from_settings(cls, settings: Any, clock: Clock | None = None,
                      **options: Any) -> EmbeddedSipPort:
        """From ``engine.settings.Settings``: SIP_HOST, SIP_PORT (0 = any free port),
        SIP_TRANSPORTS, SIP_EXTERNAL_ADDRESS. ``options`` go to the constructor."""
        return cls(host=settings.sip_host, port=settings.sip_port,
                   transports=tuple(settings.sip_transports),
                   external_address=settings.sip_external_address, clock=clock, **options)

    # ------------------------------------------------------------------ lifecycle

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    @property
    def port(self) -> int:
        """The bound SIP port (after :meth:`start`)."""
        return self.addresses.port

    async def start(self) -> None:
        """Bind every transport on SIP_HOST:SIP_PORT. Raises ``SipTransportError``
        naming the address when it cannot (port taken, address not local)."""
        if self._started:
            return
        loop = self.loop
        attempts = 20 if self.requested_port == 0 else 1
        for attempt in range(attempts):
            try:
                port = await self._bind_all(loop, self.requested_port)
                break
            except SipTransportError:
                if attempt == attempts - 1:
                    raise
        self.addresses.port = port
        self.core.sent_by = {t: (self.addresses.host_for(None), port) for t in self.transports}
        self._started = True
        self._sweeper = loop.call_later(_SWEEP_INTERVAL, self._sweep)
        log.info("SIP listening", host=self.host, port=port, transports=",".join(self.transports),
                 external=self.addresses.external)

    async def _bind_all(self, loop: asyncio.AbstractEventLoop, port: int) -> int:
        udp = tcp = None
        try:
            if "udp" in self.transports:
                udp = UdpTransport(loop, self.driver.on_datagram)
                port = await udp.open(self.host, port)
            if "tcp" in self.transports:
                from engine.transport.tcp import TcpTransport

                tcp = TcpTransport(loop, self.clock, self.driver,
                                   idle_timeout=self.tcp_idle_timeout)
                port = await tcp.open(self.host, port)
        except BaseException:
            if udp is not None:
                udp.close()
            if tcp is not None:
                await tcp.close()
            raise
        self.driver.udp = udp
        self.driver.tcp = tcp
        return port

    async def close(self) -> None:
        """Stop listening, close every connection, cancel handler tasks and timers.
        Live calls are not BYE'd (the daemon drains before closing)."""
        if self._closed:
            return
        self._closed = True
        if self._sweeper is not None:
            self._sweeper.cancel()
        tasks = [t for t in self._tasks if not t.done()]
        for t in tasks:
            t.cancel()
        if tasks:
            await asyncio.gather(*tasks, return_exceptions=True)
        self.driver.close()
        if self.driver.udp is not None:
            self.driver.udp.close()
        if self.driver.tcp is not None:
            await self.driver.tcp.close()
        log.info("SIP stopped", port=self.port)

    def local_addresses(self) -> list[Peer]:
        """Every bound listener as ``Peer(host, port, transport)``."""
        out: list[Peer] = []
        for name, t in (("udp", self.driver.udp), ("tcp", self.driver.tcp)):
            if t is not None:
                out += [Peer(h, p, name) for h, p in t.addresses]
        return out

    def contact_uri(self, *, transport: str = "udp", user: str | None = None) -> str:
        """Our own Contact URI for ``transport`` (``sip:[user@]host:port[;transport=tcp]``,
        host = SIP_EXTERNAL_ADDRESS when set, else the listen address, else for a
        wildcard listener the address of the default-route interface)."""
        return self.addresses.contact(transport, user)

    # ------------------------------------------------------------------ routing

    def on_request(self, method: str, handler: Handler) -> None:
        """Route out-of-dialog requests of ``method`` to ``handler(req)`` (a coroutine
        function, run as a task per request). One handler per method (a new one
        replaces the old). Methods without a handler are answered 405 with Allow.
        If the handler raises before a final response, the port answers 500; a
        non-INVITE request left unanswered for 64*T1 is answered 408."""
        self._handlers[method.upper()] = handler

    def allow_header(self) -> str:
        methods = dict.fromkeys(["ACK", "CANCEL", "BYE", *sorted(self._handlers)])
        return ", ".join(methods)

    # ------------------------------------------------------------------ helpers for the TU parts

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the port (cancelled on close; an exception
        is logged, never lost)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        task.what = what  # type: ignore[attr-defined]
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("SIP task failed", what=getattr(task, "what", "?"),
                          error=f"{type(exc).__name__}: {exc}")

    def safe_call(self, callback: Callable[..., Any], what: str, *args: Any) -> None:
        """Call an application callback; a returned coroutine becomes a task, an
        exception is logged (never propagated into the stack)."""
        try:
            result = callback(*args)
        except Exception:
            log.exception("SIP callback failed", what=what)
            return
        if inspect.isawaitable(result):
            self.spawn(_await(result), what)

    def answered(self, req: EmbeddedIncomingRequest) -> None:
        """A final response went out on ``req`` (bookkeeping)."""
        if req.tx is not None:
            self._unanswered.pop(req.tx, None)

    def respond(self, tx: int, status: int, reason: str | None = None,
                headers: list[tuple[str, str]] | None = None) -> None:
        """Answer a server transaction directly (405, 481, 500…), ignoring a race
        with a response already sent."""
        try:
            _, effects = self.core.respond(tx, status, reason, headers=headers or ())
        except TransactionStateError:
            return
        self.driver.run(effects)

    # ------------------------------------------------------------------ TU events

    def _on_event(self, effect: Effect) -> None:
        handler = self._dispatch.get(type(effect))
        if handler is not None:
            handler(effect)

    def _on_request(self, ev: RequestReceived) -> None:
        req = ev.request
        tx = ev.tx
        if tx is None:
            return  # an ACK for a 2xx: no dialogs yet
        if req.to_tag is not None:
            self.respond(tx, 481)  # no dialog can match yet
            return
        handler = self._handlers.get(req.method)
        if handler is None:
            self.respond(tx, 405, None, [("Allow", self.allow_header())])
            return
        ireq = EmbeddedIncomingRequest(self, req, tx, ev.source, ev.flow)
        if req.method != "INVITE":
            self._unanswered[tx] = (self.clock.monotonic(), ireq)
        self.spawn(self._run_handler(handler, ireq), req.method)

    async def _run_handler(self, handler: Handler, req: EmbeddedIncomingRequest) -> None:
        try:
            result = handler(req)
            if inspect.isawaitable(result):
                await result
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("SIP request handler failed", method=req.method, call_id=req.call_id)
            if not req.final_sent:
                req.send_response(500)

    def _on_timeout(self, ev: TransactionTimeout) -> None:
        log.debug("SIP transaction timed out", tx=ev.tx, timer=ev.timer,
                  method=ev.request.method, call_id=ev.request.call_id)

    def _on_terminated(self, ev: TransactionTerminated) -> None:
        self._unanswered.pop(ev.tx, None)

    def _on_rejected(self, ev: MessageRejected) -> None:
        log.debug("malformed SIP message", source=f"{ev.source.host}:{ev.source.port}",
                  transport=ev.source.transport, reason=ev.error.reason, answered=ev.replied)

    def _sweep(self) -> None:
        """Answer 408 to non-INVITE requests the application left unanswered for
        64*T1 (the client has given up; the transaction would otherwise live forever)."""
        try:
            limit = self.clock.monotonic() - self.timers.timeout
            stale: list[EmbeddedIncomingRequest] = []
            for started, req in self._unanswered.values():
                if started > limit:
                    break  # insertion order = arrival order
                stale.append(req)
            for req in stale:
                log.warning("request left unanswered by the application: 408", method=req.method,
                            call_id=req.call_id)
                req.send_response(408)
                self._unanswered.pop(req.tx, None)  # type: ignore[arg-type]
        except Exception:
            log.exception("SIP sweep failed")
        finally:
            if not self._closed:
                self._sweeper = self.loop.call_later(_SWEEP_INTERVAL, self._sweep)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable
