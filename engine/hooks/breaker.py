"""Per-URL circuit breakers for RegHook and CallHook URLs (issue 10, defect 9).

Why: a RegHook answering in 10 s held every pooled connection for the whole
REGHOOK_TIMEOUT, so registrations queued behind it and 504s went on after the
hook had recovered. A breaker makes a URL that keeps failing fail *at once*
for a cool-down, so it costs neither connections nor the SIP client's time
(and the fallback URL, when one is configured, is asked straight away).

States of one URL's breaker:

* ``closed`` — requests go through; ``threshold`` consecutive failures open it;
* ``open`` — every request is refused without being sent, for ``cooldown``
  seconds;
* ``half_open`` — after the cool-down exactly one request (the probe) is let
  through while the others are still refused; its success closes the breaker,
  its failure opens it again for another cool-down.

A result only counts when it belongs to the breaker's current period: a
request admitted while the breaker was closed that finishes after it opened
changes nothing, and only the probe decides a half-open breaker.

Logged: one warning when a breaker opens (a failed probe re-opens it quietly,
at debug) and one info when it closes; URLs are logged without query string
or user-info (``safe_url``). Pure logic apart from the logger: the clock is
injected, so the unit tests drive it by hand.
"""

from __future__ import annotations

import time
from collections.abc import Awaitable, Callable
from dataclasses import dataclass
from typing import TypeVar

from engine.log import get_logger

log = get_logger(__name__)

CLOSED = "closed"
OPEN = "open"
HALF_OPEN = "half_open"

# Breakers are kept per distinct URL. Webhook URLs come from the configuration
# and from RegHook grants (dialplans), so there are few; the bound only guards
# against a hook that invents a new URL per call.
MAX_BREAKERS = 4096

R = TypeVar("R")


@dataclass(frozen=True, slots=True)
class Admission:
    """Permission to send one request; hand it back with ``CircuitBreaker.record``."""

    generation: int
    probe: bool


class CircuitBreaker:
    """The breaker of one URL (see the module docstring for the states)."""

    __slots__ = ("_clock", "_cooldown", "_failures", "_generation", "_opened_at",
                 "_probing", "_state", "_threshold", "display")

    def __init__(self, display: str, *, threshold: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic) -> None:
        if threshold < 1:
            raise ValueError("threshold must be at least 1")
        self.display = display  # the log-safe URL
        self._threshold = threshold
        self._cooldown = cooldown
        self._clock = clock
        self._state = CLOSED
        self._failures = 0  # consecutive failures while closed
        self._generation = 0  # bumped on every state change
        self._opened_at = 0.0
        self._probing = False

    @property
    def state(self) -> str:
        """``closed``, ``open`` or ``half_open`` now (an elapsed cool-down reads half-open)."""
        if self._state == OPEN and self._clock() - self._opened_at >= self._cooldown:
            return HALF_OPEN
        return self._state

    @property
    def failures(self) -> int:
        return self._failures

    def retry_in(self) -> float:
        """Seconds until the next probe may go out (0 when requests are let through)."""
        if self._state != OPEN:
            return 0.0
        return max(0.0, self._opened_at + self._cooldown - self._clock())

    def admit(self) -> Admission | None:
        """An ``Admission`` to send one request now, or None: fail fast without sending."""
        if self._state == CLOSED:
            return Admission(self._generation, probe=False)
        if self._state == OPEN:
            if self._clock() - self._opened_at < self._cooldown:
                return None
            self._change(HALF_OPEN)
        if self._probing:
            return None
        self._probing = True
        return Admission(self._generation, probe=True)

    def record(self, admission: Admission, *, failed: bool) -> None:
        """The outcome of an admitted request (success resets, failure counts)."""
        if admission.generation != self._generation:
            return  # admitted in an earlier period: says nothing about the current one
        if admission.probe:
            self._probing = False
            if failed:
                self._open(reopen=True)
            else:
                self._failures = 0
                self._change(CLOSED)
                log.info("webhook circuit closed", url=self.display)
            return
        if not failed:
            self._failures = 0
            return
        self._failures += 1
        if self._failures >= self._threshold:
            self._open(reopen=False)

    def abandon(self, admission: Admission) -> None:
        """The admitted request ended without an outcome (cancelled): free the probe slot."""
        if admission.probe and admission.generation == self._generation:
            self._probing = False

    def _open(self, *, reopen: bool) -> None:
        failures = self._failures
        self._change(OPEN)
        self._opened_at = self._clock()
        if reopen:
            log.debug("webhook circuit probe failed; open again", url=self.display,
                      cooldown_s=self._cooldown)
        else:
            log.warning("webhook circuit open: requests fail fast", url=self.display,
                        failures=failures, cooldown_s=self._cooldown)

    def _change(self, state: str) -> None:
        self._state = state
        self._generation += 1
        self._probing = False


class Breakers:
    """One ``CircuitBreaker`` per URL, created on first use; ``threshold`` 0 disables them."""

    def __init__(self, *, threshold: int, cooldown: float,
                 clock: Callable[[], float] = time.monotonic,
                 display: Callable[[str], str] = str, max_urls: int = MAX_BREAKERS) -> None:
        self.threshold = threshold
        self.cooldown = cooldown
        self._clock = clock
        self._display = display
        self._max = max_urls
        self._by_url: dict[str, CircuitBreaker] = {}

    @property
    def enabled(self) -> bool:
        return self.threshold > 0

    def for_url(self, url: str) -> CircuitBreaker | None:
        """The breaker of ``url`` (None when breakers are disabled)."""
        if self.threshold <= 0:
            return None
        breaker = self._by_url.get(url)
        if breaker is None:
            if len(self._by_url) >= self._max:
                self._forget_healthy()
            breaker = CircuitBreaker(self._display(url), threshold=self.threshold,
                                     cooldown=self.cooldown, clock=self._clock)
            self._by_url[url] = breaker
        return breaker

    def _forget_healthy(self) -> None:
        # A closed breaker without failures holds no information: drop those first.
        for url in [u for u, b in self._by_url.items()
                    if b._state == CLOSED and b.failures == 0]:
            del self._by_url[url]
        if len(self._by_url) >= self._max:
            self._by_url.clear()

    def __len__(self) -> int:
        return len(self._by_url)


async def guarded(breakers: Breakers | None, url: str, send: Callable[[], Awaitable[R]],
                  failed: Callable[[R], bool]) -> R | None:
    """``await send()`` under the breaker of ``url``; None (nothing sent) when it is open.

    ``failed(result)`` says whether the result counts as a failure; a cancelled
    or crashed request records nothing (it frees a probe slot).
    """
    breaker = breakers.for_url(url) if breakers is not None else None
    if breaker is None:
        return await send()
    admission = breaker.admit()
    if admission is None:
        return None
    try:
        result = await send()
    except BaseException:
        breaker.abandon(admission)
        raise
    breaker.record(admission, failed=failed(result))
    return result


__all__ = ["CLOSED", "HALF_OPEN", "MAX_BREAKERS", "OPEN", "Admission", "Breakers",
           "CircuitBreaker", "guarded"]
