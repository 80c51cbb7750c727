"""asyncio driver for the ng protocol: UDP sockets, timeouts, several instances.

The pure parts (bencode, cookies, correlation, resend timers, error mapping)
live in :mod:`engine.rtpengine.ng`; this module adds what needs a loop:

* one *connected* UDP socket per configured instance, so an ICMP "port
  unreachable" (a dead daemon on a reachable host) arrives as
  ``ConnectionRefusedError`` on that instance at once instead of after the
  full resend budget;
* a **health** state per instance: a periodic ``ping`` (every
  ``ping_interval`` s), a command that times out or is refused marks the
  instance down, any reply marks it up; a command for a down instance probes it
  in the background (rate-limited) so recovery is seen within
  ``probe_interval`` rather than at the next periodic ping;
* **placement**: a call stays on the instance that took its first ``offer``
  (``call-id`` → instance map); new calls go to healthy instances in
  rendezvous-hash order (:mod:`engine.rtpengine.selection`), and a new call
  whose preferred instance fails is offered to the next one. Commands for a
  call whose instance is down, and new calls when no instance is up, fail at
  once with ``MediaUnavailable`` (D-30: a dead instance must not stall calls);
* **lost calls** (issue 10): an instance that comes back after being down, or
  whose ``statistics`` uptime went back (a restart between two pings), or that
  answers "Unknown call-id" to a command for a call placed on it, has its
  placed calls checked with ``query``; every call it no longer knows is
  reported to the ``on_lost`` listener (the media port turns that into a
  ``media.lost`` event of the call's machine), with one warning per instance
  event saying how many calls were affected.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import logging
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

from engine.clock import LoopClock
from engine.log import get_logger
from engine.ports import Clock
from engine.rtpengine.errors import (
    MediaError,
    MediaTimeout,
    MediaUnavailable,
    NgLoadLimit,
    NgUnknownCall,
)
from engine.rtpengine.ng import NgCorrelator, NgTransaction, ResendPolicy, cookies
from engine.rtpengine.selection import rank
from engine.settings import HostPort

log = get_logger(__name__)

#: Commands that create or extend a call on the instance that runs them.
_PLACING = frozenset({"offer", "answer", "publish", "subscribe request"})

UP, DOWN, UNKNOWN = "up", "down", "unknown"

#: ``(call_id, instance, why)``: a call placed on ``instance`` is no longer known there.
LostListener = Callable[[str, str, str], None]
#: ``(instance)``: an instance was marked up (retries waiting for it may go now).
UpListener = Callable[[str], None]

#: The ``statistics`` uptime is whole seconds (an estimate of the boot time is up to 1 s
#: late) and the reply takes a moment: a boot time estimated later than the earliest
#: known one by more than this is a restart.
RESTART_SLACK = 1.5
#: Queries in flight at once while checking an instance's calls after a restart.
VERIFY_CONCURRENCY = 32
#: A call reported lost is not reported again within this many seconds (a command's
#: "Unknown call-id" and the sweep it starts both find it).
REPORT_QUIET = 10.0


def call_is_gone(exc: NgUnknownCall) -> bool:
    """The error says the whole call is unknown (not just one of its tags)."""
    reason = exc.reason.lower()
    return "unknown call-id" in reason or "call-id not found" in reason


def uptime_of(reply: Mapping[str, Any]) -> float | None:
    """Seconds since the daemon started, from a ``statistics`` reply (None if absent)."""
    stats = reply.get("statistics")
    total = stats.get("totalstatistics") if isinstance(stats, Mapping) else None
    value = total.get("uptime") if isinstance(total, Mapping) else None
    try:
        return float(value) if value is not None else None
    except (TypeError, ValueError):
        return None


@dataclass(frozen=True, slots=True)
class InstanceStatus:
    """A snapshot of one instance for health endpoints and logs."""

    endpoint: str
    state: str  # up | down | unknown
    since: float  # monotonic time of the last state change
    calls: int  # calls placed on it by this client
    pending: int  # commands in flight
    last_error: str | None


def _same(inst: _Instance) -> _Instance:
    """Protocol factory for an instance that already exists (it is its own protocol)."""
    return inst


class _Instance(asyncio.DatagramProtocol):
    """One RTPEngine endpoint: its socket, correlator and health."""

    def __init__(self, owner: RtpEngineClient, endpoint: HostPort, clock: Clock,
                 cookie_factory: Callable[[], str]):
        self.owner = owner
        self.endpoint = endpoint
        self.name = str(endpoint)
        self.correlator = NgCorrelator(clock, cookie_factory=cookie_factory,
                                     name=f"rtpengine {self.name}")
        self.transport: asyncio.DatagramTransport | None = None
        self.state = UNKNOWN
        self.since = 0.0  # set at the first state change (no loop needed to construct)
        self.calls = 0
        self.last_error: str | None = None
        self.last_probe = float("-inf")
        self.probe: asyncio.Task[None] | None = None
        self.boot: float | None = None  # monotonic estimate of the daemon's start
        self.back_at: float | None = None  # when it was last seen up again after down
        self.verify: asyncio.Task[None] | None = None
        self.verify_again: str | None = None  # a reason that came in while verifying

    # --- asyncio.DatagramProtocol
    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        try:
            self.correlator.feed(data)
        except MediaError as exc:  # no readable cookie: nothing to complete
            log.warning("rtpengine sent an unreadable datagram", instance=self.name,
                        error=str(exc), size=len(data))
            return
        self.owner._mark_up(self)

    def error_received(self, exc: Exception) -> None:
        if isinstance(exc, ConnectionRefusedError):
            self.owner._mark_down(self, "connection refused (nothing listens on the ng port)")
            self.correlator.fail_all(lambda tx: MediaUnavailable(
                f"rtpengine {self.name} refused {tx.command} (not running?)"))
        else:
            log.warning("rtpengine socket error", instance=self.name, error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        self.transport = None
        self.correlator.fail_all(lambda tx: MediaUnavailable(
            f"rtpengine {self.name}: socket closed during {tx.command}"))

    # --- sending
    def send(self, datagram: bytes) -> None:
        transport = self.transport
        if transport is None or transport.is_closing():
            raise OSError(f"no socket towards rtpengine {self.name}")
        transport.sendto(datagram)

    def status(self) -> InstanceStatus:
        return InstanceStatus(self.name, self.state, self.since, self.calls,
                              len(self.correlator), self.last_error)


class RtpEngineClient:
    """ng client over UDP for one or more RTPEngine instances.

    ``await start()`` opens the sockets and pings every instance once (it is
    also called lazily by the first command); ``await close()`` stops the
    health checker and fails anything still in flight.
    """

    def __init__(self, endpoints: Sequence[HostPort | tuple[str, int]], *,
                 policy: ResendPolicy | None = None,
                 ping_policy: ResendPolicy | None = None,
                 ping_interval: float = 5.0, probe_interval: float = 0.5,
                 clock: Clock | None = None,
                 cookie_factory: Callable[[], str] = cookies,
                 max_calls: int = 200_000):
        if not endpoints:
            raise ValueError("at least one rtpengine endpoint is required")
        self.policy = policy or ResendPolicy()
        # A ping survives two lost datagrams: one lost packet must not mark an
        # instance down (that would fail every command of its calls until the
        # next probe).
        self.ping_policy = ping_policy or ResendPolicy((0.5, 1.0, 1.5))
        self.ping_interval = ping_interval
        self.probe_interval = probe_interval
        self._clock: Clock = clock or LoopClock()
        hostports = [e if isinstance(e, HostPort) else HostPort(*e) for e in endpoints]
        self._instances = [_Instance(self, hp, self._clock, cookie_factory) for hp in hostports]
        self._names = [i.name for i in self._instances]
        self._calls: OrderedDict[str, _Instance] = OrderedDict()
        self._max_calls = max_calls
        self._health: asyncio.Task[None] | None = None
        self._start_lock = asyncio.Lock()
        self._opened = False
        self._closed = False
        self._tasks: set[asyncio.Task[Any]] = set()
        self._lost_listener: LostListener | None = None
        self._up_listeners: list[UpListener] = []
        self._reported: dict[str, float] = {}
        self._ending: set[str] = set()  # delete sent: no longer a live call to verify

    @classmethod
    def from_settings(cls, settings: Any, **kwargs: Any) -> RtpEngineClient:
        kwargs.setdefault("ping_interval", getattr(settings, "rtpengine_ping_secs", 5.0))
        return cls(settings.rtpengine_endpoints, **kwargs)

    def on_lost(self, listener: LostListener | None) -> None:
        """Call ``listener(call_id, instance, why)`` for each placed call an instance lost."""
        self._lost_listener = listener

    def on_up(self, listener: UpListener) -> None:
        """Call ``listener(instance)`` whenever an instance is marked up."""
        self._up_listeners.append(listener)

    # ------------------------------------------------------------------ lifecycle

    async def start(self) -> None:
        """Open one socket per instance and learn which instances are up."""
        if self._closed:
            raise MediaUnavailable("rtpengine client is closed")
        if self._opened:
            return
        async with self._start_lock:  # concurrent first commands open the sockets once
            if not self._opened and not self._closed:
                await self._open()
                self._opened = True

    async def _open(self) -> None:
        loop = asyncio.get_running_loop()
        for inst in self._instances:
            try:
                await loop.create_datagram_endpoint(
                    functools.partial(_same, inst),
                    remote_addr=(inst.endpoint.host, inst.endpoint.port))
            except OSError as exc:  # unresolvable host, no route: down, retried by health
                self._mark_down(inst, f"cannot open socket: {exc}")
        # the first uptime of each instance: a restart from now on is noticed
        await asyncio.gather(*(self._ping(i, check_restart=True) for i in self._instances))
        self._health = asyncio.create_task(self._health_loop(), name="rtpengine-health")
        up = [i.name for i in self._instances if i.state == UP]
        log.info("rtpengine client started", instances=self._names, up=up)

    async def close(self) -> None:
        if self._closed:
            return
        self._closed = True
        tasks = [t for t in (self._health, *self._tasks) if t is not None]
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)
        for inst in self._instances:
            inst.correlator.fail_all(lambda tx: MediaUnavailable("rtpengine client closed"))
            if inst.transport is not None:
                inst.transport.close()
        self._calls.clear()

    async def __aenter__(self) -> RtpEngineClient:
        await self.start()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    # ------------------------------------------------------------------ health

    def statuses(self) -> list[InstanceStatus]:
        return [i.status() for i in self._instances]

    def any_up(self) -> bool:
        return any(i.state == UP for i in self._instances)

    def instance_of(self, call_id: str) -> str | None:
        """Name (``host:port``) of the instance holding ``call_id``, if placed by us."""
        inst = self._calls.get(call_id)
        return inst.name if inst else None

    def _mark_up(self, inst: _Instance) -> None:
        if inst.state != UP:
            previous = inst.state
            inst.state = UP
            inst.since = self._clock.monotonic()
            inst.last_error = None
            (log.info if previous == UNKNOWN else log.warning)(
                "rtpengine instance up", instance=inst.name, was=previous)
            if previous == DOWN:
                inst.back_at = inst.since
                if inst.calls:  # it may have restarted while down: its calls may be gone
                    self._verify_soon(inst, "back after an outage")
            for listener in self._up_listeners:
                try:
                    listener(inst.name)
                except Exception as exc:  # a listener must not break the health check
                    log.warning("rtpengine up listener failed", error=repr(exc))

    def _mark_down(self, inst: _Instance, reason: str) -> None:
        inst.last_error = reason
        if inst.state != DOWN:
            inst.state = DOWN
            inst.since = self._clock.monotonic()
            log.warning("rtpengine instance down", instance=inst.name, reason=reason)

    async def _health_loop(self) -> None:
        while True:
            await asyncio.sleep(self.ping_interval)
            await asyncio.gather(*(self._ping(i, check_restart=True) for i in self._instances))

    async def _check_restart(self, inst: _Instance) -> None:
        """``statistics`` uptime → boot time; a later boot time than known is a restart
        that happened between two pings (the instance never looked down)."""
        try:
            reply = await self._exchange(inst, {"command": "statistics"}, self.ping_policy)
        except MediaError:
            return  # an old daemon without statistics, or a lost datagram: ping decides
        uptime = uptime_of(reply)
        if uptime is None:
            return
        boot = self._clock.monotonic() - uptime
        known = inst.boot
        if known is None or boot < known:
            inst.boot = boot  # keep the earliest estimate: uptime is rounded down
        elif boot > known + RESTART_SLACK:
            inst.boot = boot
            if inst.back_at is not None and inst.back_at >= boot - RESTART_SLACK:
                return  # it was seen coming back after this boot: already checked
            log.info("rtpengine instance restarted between pings", instance=inst.name,
                     uptime=uptime, calls=inst.calls)
            if inst.calls:
                self._verify_soon(inst, "restarted")

    # ------------------------------------------------------------------ lost calls

    def _verify_soon(self, inst: _Instance, why: str) -> None:
        """Check (in the background) which of ``inst``'s placed calls it still knows."""
        if self._closed:
            return
        if inst.verify is not None and not inst.verify.done():
            inst.verify_again = why
            return
        inst.verify = asyncio.get_running_loop().create_task(
            self._verify(inst, why), name=f"rtpengine-verify {inst.name}")
        self._tasks.add(inst.verify)
        inst.verify.add_done_callback(self._tasks.discard)

    async def _verify(self, inst: _Instance, why: str) -> None:
        while True:
            calls = [cid for cid, placed in self._calls.items()
                     if placed is inst and cid not in self._ending]
            if not calls:  # only calls being deleted: nothing live to lose
                inst.verify_again = None
                return
            lost = await self._unknown_calls(inst, calls)
            fresh = [c for c in lost if self._report_lost(c, inst, why)]
            if fresh:  # one warning per restart/outage, however many calls it cost
                log.warning("rtpengine instance lost calls", instance=inst.name, why=why,
                            affected=len(fresh), checked=len(calls))
            else:
                log.info("rtpengine instance checked", instance=inst.name, why=why,
                         checked=len(calls), lost_before=len(lost))
            if inst.verify_again is None:
                return
            why, inst.verify_again = inst.verify_again, None

    async def _unknown_calls(self, inst: _Instance, calls: list[str]) -> list[str]:
        """Those of ``calls`` that ``inst`` answers "Unknown call-id" to a ``query``."""
        gate = asyncio.Semaphore(VERIFY_CONCURRENCY)
        lost: list[str] = []

        async def check(call_id: str) -> None:
            async with gate:
                try:
                    await self._exchange(inst, {"command": "query", "call-id": call_id},
                                         self.policy)
                except NgUnknownCall as exc:
                    if call_is_gone(exc) and self._calls.get(call_id) is inst:
                        lost.append(call_id)
                except MediaError:
                    pass  # unreachable again: its next up transition checks again

        await asyncio.gather(*(check(c) for c in calls))
        return lost

    def _report_lost(self, call_id: str, inst: _Instance, why: str) -> bool:
        """Tell the listener; False when this call was reported moments ago."""
        now = self._clock.monotonic()
        if now - self._reported.get(call_id, float("-inf")) < REPORT_QUIET:
            return False
        self._reported[call_id] = now
        listener = self._lost_listener
        if listener is None:
            return True
        try:
            listener(call_id, inst.name, why)
        except Exception as exc:  # one call's handler must not stop the others
            log.warning("rtpengine lost-call listener failed", call_id=call_id,
                        error=repr(exc))
        return True

    async def _ping(self, inst: _Instance, check_restart: bool = False) -> None:
        inst.last_probe = self._clock.monotonic()
        if inst.transport is None:
            with contextlib.suppress(OSError):
                await asyncio.get_running_loop().create_datagram_endpoint(
                    lambda: inst, remote_addr=(inst.endpoint.host, inst.endpoint.port))
            if inst.transport is None:
                return
        try:
            await self._exchange(inst, {"command": "ping"}, self.ping_policy)
        except MediaError as exc:
            self._mark_down(inst, f"ping failed: {exc}")
        else:
            self._mark_up(inst)
            if check_restart:
                await self._check_restart(inst)

    def _probe_soon(self, inst: _Instance) -> None:
        """Ping a down instance now unless one was sent within ``probe_interval``."""
        if self._closed or (inst.probe is not None and not inst.probe.done()):
            return
        if self._clock.monotonic() - inst.last_probe < self.probe_interval:
            return
        inst.probe = asyncio.create_task(self._ping(inst), name=f"rtpengine-probe {inst.name}")
        self._tasks.add(inst.probe)
        inst.probe.add_done_callback(self._tasks.discard)

    # ------------------------------------------------------------------ commands

    async def command(self, body: Mapping[str, Any], *,
                      policy: ResendPolicy | None = None) -> dict[str, Any]:
        """Send one ng command and return the (successful) reply dict.

        Raises ``NgError`` subclasses for error replies, ``MediaTimeout`` when
        no reply arrived within the resend policy, ``MediaUnavailable`` when no
        suitable instance is up.
        """
        if self._closed or not self._opened:  # the lock and the await only until opened
            await self.start()
        policy = policy or self.policy
        command = str(body.get("command", ""))
        call_id = body.get("call-id")
        if call_id is None:
            return await self._any_instance(body, policy)
        call_id = str(call_id)
        placed = self._calls.get(call_id)
        if placed is not None:
            if command == "delete":
                self._ending.add(call_id)
            if placed.state == DOWN:
                self._probe_soon(placed)
                raise MediaUnavailable(
                    f"rtpengine {placed.name} holding call {call_id} is down")
            try:
                reply = await self._on(placed, body, policy)
            except NgUnknownCall as exc:
                if command != "delete" and call_is_gone(exc) and self._calls.get(call_id):
                    # A live call the instance does not know: it lost it (a restart?). The
                    # sweep reports this call and every other one it lost, counted once.
                    self._verify_soon(placed, f"{command} answered {exc.reason!r}")
                raise
            if command == "delete":
                self.forget(call_id)
            return reply
        return await self._new_call(call_id, command, body, policy)

    async def _new_call(self, call_id: str, command: str, body: Mapping[str, Any],
                        policy: ResendPolicy) -> dict[str, Any]:
        """A call not placed yet: try healthy instances in rendezvous order."""
        order = [self._instances[i] for i in rank(call_id, self._names)]
        candidates = [i for i in order if i.state != DOWN]
        for inst in order:
            if inst.state == DOWN:
                self._probe_soon(inst)
        if not candidates:
            raise MediaUnavailable(f"no rtpengine instance is up for {command} ({call_id})")
        if command not in _PLACING:
            # The call is not ours (or we restarted); ask where it would have been placed.
            return await self._on(candidates[0], body, policy)
        last: MediaError | None = None
        for inst in candidates:
            try:
                reply = await self._on(inst, body, policy)
            except (MediaTimeout, MediaUnavailable, NgLoadLimit) as exc:
                last = exc
                log.warning("rtpengine instance failed a new call, trying the next",
                            instance=inst.name, call_id=call_id, error=str(exc))
                continue
            self._place(call_id, inst)
            return reply
        assert last is not None
        raise last

    async def _any_instance(self, body: Mapping[str, Any],
                            policy: ResendPolicy) -> dict[str, Any]:
        for inst in self._instances:
            if inst.state != DOWN:
                return await self._on(inst, body, policy)
            self._probe_soon(inst)
        raise MediaUnavailable(f"no rtpengine instance is up for {body.get('command')}")

    async def command_on(self, instance: str, body: Mapping[str, Any], *,
                         policy: ResendPolicy | None = None) -> dict[str, Any]:
        """Send to a named instance regardless of placement (diagnostics, ``list``)."""
        await self.start()
        for inst in self._instances:
            if inst.name == instance:
                return await self._on(inst, body, policy or self.policy)
        raise KeyError(instance)

    async def _on(self, inst: _Instance, body: Mapping[str, Any],
                  policy: ResendPolicy) -> dict[str, Any]:
        started = time.perf_counter()
        try:
            reply = await self._exchange(inst, body, policy)
        except MediaTimeout as exc:
            self._mark_down(inst, str(exc))
            raise
        self._mark_up(inst)
        if "warning" in reply:
            log.info("rtpengine warning", instance=inst.name, command=body.get("command"),
                     call_id=body.get("call-id"), warning=reply["warning"])
        if log.is_enabled(logging.DEBUG):
            log.debug("rtpengine command", instance=inst.name, command=body.get("command"),
                      call_id=body.get("call-id"),
                      ms=round((time.perf_counter() - started) * 1000, 2))
        return reply

    async def _exchange(self, inst: _Instance, body: Mapping[str, Any],
                        policy: ResendPolicy) -> dict[str, Any]:
        loop = asyncio.get_running_loop()
        future: asyncio.Future[dict[str, Any]] = loop.create_future()

        def done(tx: NgTransaction, reply: Mapping[str, Any] | None,
                 error: Exception | None) -> None:
            if future.done():
                return
            if error is not None:
                future.set_exception(error)
            else:
                future.set_result(dict(reply or {}))

        tx = inst.correlator.start(body, send=inst.send, on_done=done, policy=policy)
        try:
            return await future
        except asyncio.CancelledError:
            inst.correlator.cancel(tx.cookie)
            raise

    # ------------------------------------------------------------------ placement

    def _place(self, call_id: str, inst: _Instance) -> None:
        if call_id in self._calls:
            self._calls.move_to_end(call_id)
            return
        self._calls[call_id] = inst
        inst.calls += 1
        if len(self._calls) > self._max_calls:
            old_id, old = self._calls.popitem(last=False)
            old.calls -= 1
            self._ending.discard(old_id)
            self._reported.pop(old_id, None)
            log.warning("rtpengine call map full; forgetting the oldest call",
                        call_id=old_id, limit=self._max_calls)

    def forget(self, call_id: str) -> None:
        """Drop the placement of a call (after ``delete``)."""
        inst = self._calls.pop(call_id, None)
        if inst is not None:
            inst.calls -= 1
        self._reported.pop(call_id, None)
        self._ending.discard(call_id)


__all__ = ["DOWN", "UNKNOWN", "UP", "InstanceStatus", "LostListener", "RtpEngineClient",
           "call_is_gone", "uptime_of"]
