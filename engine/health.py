"""Whether this instance can serve: its dependencies, the draining and the overload flags.

Each dependency (``redis``, ``rtpengine`` — every instance down —, ``sip``, the
SIP backend) is up, down, or not known yet. Its adapter reports changes: from
real traffic (a Redis command that timed out or found the connection refused)
and from a cheap periodic check (``Watcher``), so a dependency that comes back
is noticed without traffic and one that hangs is noticed without traffic too.

What reads it: OPTIONS to the PBX (``engine.dispatch``: 503 while ``problems()``
is not empty, so a SIP load balancer takes the node out; ``overloaded`` is set by
``engine.overload`` while it sheds new requests), the Redis store
(fails fast while Redis is down instead of making every request wait for a
timeout), and the operator: one warning when a dependency goes away and one
when it is back, never a line per request.
"""

from __future__ import annotations

import asyncio
import contextlib
import time
from collections.abc import Awaitable, Callable, Iterable
from dataclasses import dataclass

from engine.log import get_logger

log = get_logger("engine.health")

REDIS = "redis"
RTPENGINE = "rtpengine"
SIP = "sip"


@dataclass
class Dependency:
    """One dependency's last known state. ``up`` is None until first reported."""

    name: str
    up: bool | None = None
    reason: str | None = None  # why it is down (for logs and the API, not for SIP peers)
    since: float = 0.0  # monotonic time of the last change

    @property
    def down(self) -> bool:
        return self.up is False


class Health:
    """The dependencies' states and the draining and overloaded flags of one daemon.

    ``gating`` names the dependencies whose loss makes the instance unready (what
    OPTIONS reports); the others are tracked and logged but do not take the node out.
    """

    def __init__(self, gating: Iterable[str] = (REDIS, RTPENGINE, SIP),
                 clock: Callable[[], float] = time.monotonic):
        self.gating = frozenset(gating)
        self.draining = False
        self.overloaded = False  # shedding new requests (engine.overload)
        self._clock = clock
        self._deps: dict[str, Dependency] = {}

    def dependency(self, name: str) -> Dependency:
        """The live state object of ``name`` (created unknown); cheap to poll."""
        dep = self._deps.get(name)
        if dep is None:
            dep = self._deps[name] = Dependency(name, since=self._clock())
        return dep

    def report(self, name: str, up: bool, reason: str | None = None) -> None:
        """Record ``name``'s state; a change is logged once (down: warning, back: warning)."""
        dep = self.dependency(name)
        if dep.up is up:
            return
        was, now = dep.up, self._clock()
        outage = now - dep.since
        dep.up, dep.since = up, now
        dep.reason = None if up else (reason or "unknown")
        if not up:
            log.warning("dependency down", dependency=name, reason=dep.reason)
        elif was is False:
            log.warning("dependency up", dependency=name, down_secs=round(outage, 1))
        else:
            log.debug("dependency up", dependency=name)

    def is_down(self, name: str) -> bool:
        dep = self._deps.get(name)
        return dep is not None and dep.up is False

    def problems(self) -> list[str]:
        """Why this instance should get no new work, e.g. ``["draining", "redis
        unavailable"]``; empty when it serves. Names only: this goes to SIP peers."""
        out = ["draining"] if self.draining else []
        if self.overloaded:
            out.append("overloaded")
        out += [f"{d.name} unavailable" for d in sorted(self._deps.values(), key=_by_name)
                if d.down and d.name in self.gating]
        return out

    def snapshot(self) -> dict[str, dict[str, object]]:
        """Every dependency as ``{name: {"up", "reason", "since"}}`` (for an API)."""
        return {d.name: {"up": d.up, "reason": d.reason, "since": d.since}
                for d in sorted(self._deps.values(), key=_by_name)}


def _by_name(dep: Dependency) -> str:
    return dep.name


Check = Callable[[], Awaitable[None]]


class Watcher:
    """Runs ``check`` every ``interval`` seconds (bounded by ``timeout``) and reports the
    outcome for ``name``: returning is up, raising (or timing out) is down with the
    error as the reason. ``poke()`` runs a check now, e.g. after real traffic failed."""

    def __init__(self, health: Health, name: str, check: Check, *, interval: float,
                 timeout: float, min_gap: float = 0.05):
        self.health = health
        self.name = name
        self.check = check
        self.interval = interval
        self.timeout = timeout
        self.min_gap = min_gap  # pokes from a burst of failing requests: one check at a time
        self._wake = asyncio.Event()
        self._task: asyncio.Task[None] | None = None

    def start(self) -> None:
        if self._task is None:
            self._task = asyncio.get_running_loop().create_task(
                self._run(), name=f"health {self.name}")

    def poke(self) -> None:
        self._wake.set()

    async def run_once(self) -> bool:
        """One check now; True when it passed."""
        try:
            async with asyncio.timeout(self.timeout):
                await self.check()
        except TimeoutError:
            self.health.report(self.name, False, f"no answer within {self.timeout:g}s")
            return False
        except Exception as exc:  # any failure of the check means "not usable"
            self.health.report(self.name, False, str(exc) or type(exc).__name__)
            return False
        self.health.report(self.name, True)
        return True

    async def _run(self) -> None:
        while True:
            with contextlib.suppress(TimeoutError):
                async with asyncio.timeout(self.interval):
                    await self._wake.wait()
            self._wake.clear()
            await self.run_once()
            await asyncio.sleep(self.min_gap)

    async def stop(self) -> None:
        task, self._task = self._task, None
        if task is not None:
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task


__all__ = ["REDIS", "RTPENGINE", "SIP", "Dependency", "Health", "Watcher"]
