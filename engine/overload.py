"""Overload control: shed new work with a prompt 503 instead of queueing into time-outs.

Past saturation a SIP server that admits everything answers later and later: requests
wait in the kernel's socket buffer and in the loop's ready queue, clients retransmit,
the retransmissions add load, and every answer comes after the client gave up. Here a
new out-of-dialog REGISTER or INVITE is refused with ``503 Service Unavailable``,
``Retry-After`` and ``X-Reason: overloaded`` by the transaction layer itself — no
transaction, no machine, nothing kept — when any of these holds:

* **loop lag**: a tick scheduled every 50 ms (every second while the node is calm
  and no SIP message came since the last tick) ran ``SIP_OVERLOAD_LAG_MS`` late or
  more, two ticks in a row (one late tick is a stall: a reload, a collection). Then every
  new REGISTER/INVITE is shed until the lag has stayed below half the threshold for
  ``SIP_OVERLOAD_RECOVER_SECS`` (hysteresis: no flapping);
* **datagram age**, while overloaded: the UDP datagram carrying the request waited in
  the kernel's receive buffer ``SIP_OVERLOAD_LAG_MS`` or longer (its kernel receive
  timestamp, see ``engine.transport.udp``). The loop reads the socket in bursts, so a
  queue in the kernel shows here long before it shows as loop lag; old datagrams in
  two consecutive ticks make the node overloaded. One that waited 2.5 times the
  threshold is not even parsed: its client has retransmitted it by then, and the
  copy is discarded so the backlog drains at the cost of one read per datagram;
* **pending bound**: ``SIP_MAX_PENDING_REQUESTS`` admitted REGISTER/INVITE have not
  been answered yet (a final response, or for an INVITE any response above 100): more
  would only wait behind them.

Everything else is served as before: retransmissions of admitted requests (matched to
their transaction before any admission check), in-dialog requests, ACK, CANCEL, BYE,
responses, and OPTIONS — which answers 503 ``overloaded`` while shedding is recent, so a
SIP load balancer moves traffic away (``engine.health``). The node is ``overloaded``
from the first shed request (or persistent lag or old datagrams) until none of it for
``SIP_OVERLOAD_RECOVER_SECS``;
the log has one warning when that starts and one when it ends (with the counts), never
a line per request.
"""

from __future__ import annotations

import asyncio
import random
from dataclasses import dataclass
from typing import Any

from engine.health import Health
from engine.log import get_logger
from engine.memory import reclaim_memory

log = get_logger("engine.overload")

RECLAIM_AFTER_SECS = 40.0  # the burst's transactions are gone (timer J/K: 32 s) by then
TICK_SECS = 0.05  # how often the loop-lag tick is scheduled while there is SIP work
# While calm (not overloaded, fewer than MIN_PENDING requests in flight) a tick can change
# nothing, so it runs this rarely; the next SIP message brings the 50 ms tick back at once
# (the driver's ``on_input`` hook). Twenty wake-ups a second were half of an idle node's
# CPU (0.47-0.57 % of a core → 0.23-0.27 % on the Intel Xeon machine, bench/bench_idle.py).
IDLE_TICK_SECS = 1.0
# A REGISTER/INVITE datagram that waited this many times SIP_OVERLOAD_LAG_MS (500 ms by
# default: T1, the client's first retransmission interval) is discarded unread.
STALE_FACTOR = 2.5
LAG = "loop lag"
AGE = "queued datagrams"
PENDING = "pending requests"

Refusal = list[tuple[str, str]]


@dataclass(frozen=True)
class OverloadLimits:
    """The thresholds (from settings). ``lag`` 0 disables the lag and age checks,
    ``max_pending`` 0 the pending bound."""

    lag: float = 0.2  # seconds
    recover: float = 2.0  # seconds
    max_pending: int = 300
    retry_after: int = 5  # seconds; each 503 says a random value in [n, 2n]

    @classmethod
    def from_settings(cls, settings: Any) -> OverloadLimits:
        return cls(lag=settings.sip_overload_lag_ms / 1000,
                   recover=settings.sip_overload_recover_secs,
                   max_pending=settings.sip_max_pending_requests,
                   retry_after=settings.sip_overload_retry_after)


class OverloadState:
    """The hysteresis, without clock or loop: ``update`` once per tick with what was
    measured since the previous one. One late tick or one old datagram is a stall (a
    reload, a collection, the scheduler), not overload: a signal counts once it held
    for ``PERSIST`` consecutive ticks.

    ``lagging``: every new request is shed. Entered when the loop lag stayed at the
    threshold or above for ``PERSIST`` ticks, left when it stayed below half of it for
    ``recover`` seconds.
    ``overloaded``: what health reports, and when old datagrams are shed. Entered when
    lagging, when the pending bound shed something, or when datagrams were read past
    the threshold for ``PERSIST`` ticks; left after ``recover`` seconds of none of it.
    Lag and age count only while at least ``MIN_PENDING`` requests are in flight.
    """

    PERSIST = 2
    # Lag or old datagrams with (almost) no SIP work in flight come from something else
    # (a reload, the machine's other work): shedding the few requests would not help.
    MIN_PENDING = 8

    def __init__(self, limits: OverloadLimits):
        self.limits = limits
        self.lagging = False
        self.overloaded = False
        self.since = 0.0  # when overloaded began
        self._calm_since: float | None = None
        self._last_busy = 0.0
        self._late_ticks = 0  # consecutive ticks with lag at the threshold
        self._old_ticks = 0  # consecutive ticks with a datagram past the threshold

    def update(self, now: float, lag: float, age: float, shed: int,
               pending: int) -> str | None:
        """``lag``: how late this tick ran; ``age``: the oldest datagram read since the
        last tick; ``shed``: requests refused since the last tick; ``pending``: admitted
        requests not answered yet. Returns "overloaded" or "recovered" when
        ``overloaded`` changes, else None."""
        threshold = self.limits.lag if pending >= self.MIN_PENDING else 0.0
        late = threshold > 0 and lag >= threshold
        self._late_ticks = self._late_ticks + 1 if late else 0
        old = threshold > 0 and (age >= threshold or late)
        self._old_ticks = self._old_ticks + 1 if old else 0
        if self._late_ticks >= self.PERSIST:
            self.lagging = True
            self._calm_since = None
        elif self.lagging:
            if lag >= self.limits.lag / 2:
                self._calm_since = None
            elif self._calm_since is None:
                self._calm_since = now
            elif now - self._calm_since >= self.limits.recover:
                self.lagging = False
                self._calm_since = None
        busy = self.lagging or shed > 0 or self._old_ticks >= self.PERSIST
        if busy:
            self._last_busy = now
            if not self.overloaded:
                self.overloaded = True
                self.since = now
                return "overloaded"
        elif self.overloaded and now - self._last_busy >= self.limits.recover:
            self.overloaded = False
            return "recovered"
        return None


class Overload:
    """Admission control of one SIP port: ``attach`` makes the transaction layer ask
    ``admit`` for every new out-of-dialog REGISTER/INVITE; ``start`` runs the tick."""

    def __init__(self, limits: OverloadLimits, health: Health | None = None,
                 rng: random.Random | None = None):
        self.limits = limits
        self.state = OverloadState(limits)
        self.health = health
        self.shed: dict[str, int] = {LAG: 0, AGE: 0, PENDING: 0}  # since start
        self._shed_total_at_tick = 0
        self._episode_start: dict[str, int] = {**self.shed, "discarded": 0}
        self._port: Any = None
        self._handle: asyncio.TimerHandle | None = None
        self._due = 0.0
        self._slow = False  # the tick is IDLE_TICK_SECS apart, the driver's hook armed
        self._loop: asyncio.AbstractEventLoop | None = None
        rng = rng or random.Random()
        n = max(1, limits.retry_after)
        # A fixed Retry-After sends every refused client back at the same moment.
        self._refusals: list[Refusal] = [
            [("Retry-After", str(n + rng.randrange(n + 1))), ("X-Reason", "overloaded")]
            for _ in range(16)]
        self._next_refusal = 0

    @classmethod
    def from_settings(cls, settings: Any, health: Health | None = None) -> Overload:
        return cls(OverloadLimits.from_settings(settings), health)

    # ------------------------------------------------------------------ the hot path

    def attach(self, port: Any) -> None:
        """Install ``admit`` in ``port``'s transaction layer (an ``EmbeddedSipPort``)."""
        self._port = port
        port.core.admission = self.admit

    def admit(self, pending: int) -> Refusal | None:
        """None to admit a new REGISTER/INVITE, else the headers of its 503."""
        limits = self.limits
        if self.state.lagging:
            return self._refuse(LAG)
        if self.state.overloaded and limits.lag > 0:
            udp = self._port.driver.udp
            if udp is not None and udp.age >= limits.lag:
                return self._refuse(AGE)
        if 0 < limits.max_pending <= pending:
            return self._refuse(PENDING)
        return None

    def _refuse(self, cause: str) -> Refusal:
        self.shed[cause] += 1
        i = self._next_refusal = (self._next_refusal + 1) % len(self._refusals)
        return self._refusals[i]

    # ------------------------------------------------------------------ the tick

    def start(self) -> None:
        self._loop = asyncio.get_running_loop()
        self._schedule(TICK_SECS)

    def stop(self) -> None:
        if self._handle is not None:
            self._handle.cancel()
            self._handle = None
        self._disarm()
        self._loop = None

    def _schedule(self, delay: float) -> None:
        loop = self._loop
        if loop is None:
            return
        self._due = loop.time() + delay
        self._handle = loop.call_at(self._due, self._tick)

    def _tick(self) -> None:
        loop = self._loop
        if loop is None:
            return
        calm = False
        try:
            now = loop.time()
            self.observe(now, now - self._due)
            calm = self._calm()
        except Exception:  # the tick must go on whatever a report does
            log.exception("overload tick failed")
        finally:
            if calm:
                self._arm()
            else:
                self._disarm()
            self._schedule(IDLE_TICK_SECS if calm else TICK_SECS)

    @property
    def idle(self) -> bool:
        """The tick runs IDLE_TICK_SECS apart: calm, waiting for SIP input."""
        return self._slow

    def _calm(self) -> bool:
        """Nothing a tick could change until SIP input arrives: not lagging or
        overloaded, and too little work in flight for lag to count (``MIN_PENDING``).
        Only with a driver whose hook can bring the fast tick back."""
        state = self.state
        return (not state.lagging and not state.overloaded
                and self._pending() < OverloadState.MIN_PENDING
                and getattr(self._port, "driver", None) is not None)

    def _arm(self) -> None:
        self._slow = True
        self._port.driver.on_input = self._input_arrived

    def _disarm(self) -> None:
        if self._slow:
            self._slow = False
            driver = getattr(self._port, "driver", None)
            if driver is not None and driver.on_input == self._input_arrived:
                driver.on_input = None

    def _input_arrived(self) -> None:
        """The driver's hook (called once, then cleared by the driver): SIP input after
        a calm spell, so the next tick comes in TICK_SECS again, not IDLE_TICK_SECS."""
        self._slow = False
        if self._handle is not None:
            self._handle.cancel()
        self._schedule(TICK_SECS)

    def observe(self, now: float, lag: float) -> None:
        """One tick's measurements into the state; health and log follow its changes."""
        udp = self._port.driver.udp if self._port is not None else None
        age, discarded = 0.0, 0
        if udp is not None:
            age, udp.max_age = udp.max_age, 0.0
            discarded = udp.discarded
        total = sum(self.shed.values()) + discarded
        shed, self._shed_total_at_tick = total - self._shed_total_at_tick, total
        change = self.state.update(now, lag, age, shed, self._pending())
        if change is None:
            return
        if self.health is not None:
            self.health.overloaded = self.state.overloaded
        if udp is not None:  # stale copies are discarded only while overloaded
            udp.stale_age = (self.limits.lag * STALE_FACTOR
                             if self.state.overloaded and self.limits.lag > 0 else float("inf"))
        if change == "overloaded":
            self._episode_start = {**self.shed, "discarded": discarded}
            log.warning("overloaded: shedding new REGISTER/INVITE with 503",
                        lag_ms=round(lag * 1000), queued_ms=round(age * 1000),
                        pending=self._pending())
        else:
            counts = {k.replace(" ", "_"): v - self._episode_start[k]
                      for k, v in {**self.shed, "discarded": discarded}.items()}
            log.warning("overload over", secs=round(now - self.state.since, 1),
                        shed=sum(counts.values()) - counts["discarded"], **counts)
            if self._loop is not None:
                self._loop.call_later(RECLAIM_AFTER_SECS, reclaim_memory)

    def _pending(self) -> int:
        core = getattr(self._port, "core", None)
        return core.pending if core is not None else 0


__all__ = ["AGE", "LAG", "PENDING", "Overload", "OverloadLimits", "OverloadState"]
