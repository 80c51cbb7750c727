"""Circuit breaker state logic (engine.hooks.breaker) with a hand-driven clock."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.hooks.breaker import CLOSED, HALF_OPEN, OPEN, Breakers, CircuitBreaker, guarded


class Clock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def make(threshold: int = 3, cooldown: float = 10.0) -> tuple[CircuitBreaker, Clock]:
    clock = Clock()
    return CircuitBreaker("http://h/reg", threshold=threshold, cooldown=cooldown,
                          clock=clock), clock


def fail(b: CircuitBreaker, times: int = 1) -> None:
    for _ in range(times):
        adm = b.admit()
        assert adm is not None
        b.record(adm, failed=True)


def test_opens_after_threshold_consecutive_failures() -> None:
    b, _ = make(threshold=3)
    fail(b, 2)
    assert b.state == CLOSED and b.admit() is not None
    fail(b)
    assert b.state == OPEN
    assert b.admit() is None  # fails fast: nothing may be sent


def test_a_success_resets_the_count() -> None:
    b, _ = make(threshold=3)
    fail(b, 2)
    adm = b.admit()
    assert adm is not None
    b.record(adm, failed=False)
    fail(b, 2)
    assert b.state == CLOSED


def test_after_cooldown_exactly_one_probe_then_success_closes() -> None:
    b, clock = make(threshold=1, cooldown=10)
    fail(b)
    clock.now += 9.9
    assert b.admit() is None and b.retry_in() == pytest.approx(0.1)
    clock.now += 0.1
    assert b.state == HALF_OPEN
    probe = b.admit()
    assert probe is not None and probe.probe
    assert b.admit() is None  # only one probe in flight; the others still fail fast
    b.record(probe, failed=False)
    assert b.state == CLOSED and b.failures == 0
    assert b.admit() is not None and b.admit() is not None


def test_failed_probe_opens_for_another_cooldown() -> None:
    b, clock = make(threshold=2, cooldown=5)
    fail(b, 2)
    clock.now += 5
    probe = b.admit()
    assert probe is not None
    b.record(probe, failed=True)
    assert b.state == OPEN and b.admit() is None
    clock.now += 4.9
    assert b.admit() is None
    clock.now += 0.1
    assert b.admit() is not None


def test_results_of_an_earlier_period_do_not_count() -> None:
    b, clock = make(threshold=2, cooldown=5)
    early = b.admit()  # sent while closed, answers after the breaker opened
    assert early is not None
    fail(b, 2)
    b.record(early, failed=False)
    assert b.state == OPEN  # a late success does not close it: only the probe decides
    clock.now += 5
    probe = b.admit()
    assert probe is not None
    b.record(early, failed=True)
    assert b.state == HALF_OPEN and b.admit() is None  # still waiting for the probe
    b.record(probe, failed=False)
    assert b.state == CLOSED


def test_an_abandoned_probe_frees_the_slot() -> None:
    b, clock = make(threshold=1, cooldown=1)
    fail(b)
    clock.now += 1
    probe = b.admit()
    assert probe is not None and b.admit() is None
    b.abandon(probe)
    assert b.admit() is not None


def test_one_warning_when_it_opens_and_one_info_when_it_closes(
        caplog: pytest.LogCaptureFixture) -> None:
    b, clock = make(threshold=2, cooldown=1)
    with caplog.at_level(logging.DEBUG, logger="engine.hooks.breaker"):
        fail(b, 2)
        for _ in range(5):
            assert b.admit() is None
        clock.now += 1
        probe = b.admit()
        assert probe is not None
        b.record(probe, failed=True)  # re-open after a failed probe: no second warning
        clock.now += 1
        probe = b.admit()
        assert probe is not None
        b.record(probe, failed=False)
    warnings = [r for r in caplog.records if r.levelno == logging.WARNING]
    infos = [r for r in caplog.records if r.levelno == logging.INFO]
    assert [r.getMessage() for r in warnings] == ["webhook circuit open: requests fail fast"]
    assert [r.getMessage() for r in infos] == ["webhook circuit closed"]
    assert warnings[0].fields["url"] == "http://h/reg"  # type: ignore[attr-defined]
    assert warnings[0].fields["failures"] == 2  # type: ignore[attr-defined]


def test_breakers_are_per_url_and_log_safe() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown=5, clock=clock,
                        display=lambda u: u.split("?")[0])
    a = breakers.for_url("http://h/a?token=secret")
    assert a is not None and a.display == "http://h/a"
    fail(a)
    b = breakers.for_url("http://h/b")
    assert b is not None and b.admit() is not None  # another URL is not affected
    assert breakers.for_url("http://h/a?token=secret") is a


def test_threshold_zero_disables_breakers() -> None:
    assert Breakers(threshold=0, cooldown=5).for_url("http://h/a") is None


def test_breaker_table_is_bounded_and_keeps_open_breakers() -> None:
    breakers = Breakers(threshold=1, cooldown=5, clock=Clock(), max_urls=3)
    bad = breakers.for_url("http://h/bad")
    assert bad is not None
    fail(bad)
    for i in range(10):
        breakers.for_url(f"http://h/{i}")
    assert len(breakers) <= 3
    assert breakers.for_url("http://h/bad") is bad and bad.state == OPEN


def test_guarded_sends_nothing_while_open() -> None:
    clock = Clock()
    breakers = Breakers(threshold=2, cooldown=5, clock=clock)
    sent: list[str] = []

    async def send() -> str:
        sent.append("x")
        return "bad"

    async def run() -> list[str | None]:
        return [await guarded(breakers, "http://h/a", send, lambda r: r == "bad")
                for _ in range(5)]

    assert asyncio.run(run()) == ["bad", "bad", None, None, None]
    assert len(sent) == 2


def test_guarded_cancelled_probe_records_nothing() -> None:
    clock = Clock()
    breakers = Breakers(threshold=1, cooldown=5, clock=clock)
    b = breakers.for_url("http://h/a")
    assert b is not None
    fail(b)
    clock.now += 5

    async def hang() -> str:
        await asyncio.sleep(10)
        return "ok"

    async def run() -> None:
        task = asyncio.ensure_future(guarded(breakers, "http://h/a", hang, lambda r: False))
        await asyncio.sleep(0)
        task.cancel()
        with pytest.raises(asyncio.CancelledError):
            await task

    asyncio.run(run())
    assert b.state == HALF_OPEN and b.admit() is not None  # the next request probes
