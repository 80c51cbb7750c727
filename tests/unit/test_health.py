"""The health model (pure logic): states, what OPTIONS is told, one log line per change,
and the watcher's checks (with plain coroutines as checks, no network)."""

from __future__ import annotations

import asyncio
import logging

import pytest

from engine.health import REDIS, RTPENGINE, SIP, Health, Watcher


def _lines(caplog: pytest.LogCaptureFixture, msg: str) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.getMessage() == msg and r.levelno >= logging.INFO]


def test_unknown_and_up_serve_down_and_draining_do_not() -> None:
    health = Health()
    assert health.problems() == []
    health.report(REDIS, True)
    health.report(SIP, True)
    assert health.problems() == [] and not health.is_down(REDIS)
    health.report(REDIS, False, "connect refused")
    health.report(RTPENGINE, False, "every instance down")
    assert health.problems() == ["redis unavailable", "rtpengine unavailable"]
    health.draining = True
    assert health.problems()[0] == "draining"
    assert health.snapshot()[REDIS] == {"up": False, "reason": "connect refused",
                                        "since": health.dependency(REDIS).since}


def test_only_gating_dependencies_take_the_node_out() -> None:
    health = Health(gating=(REDIS, SIP))
    health.report(RTPENGINE, False, "every instance down")
    assert health.problems() == []
    assert health.is_down(RTPENGINE)


def test_one_warning_when_down_and_one_when_back(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="engine.health")
    now = [100.0]
    health = Health(clock=lambda: now[0])
    health.report(REDIS, True)  # first learnt state: not an event
    for _ in range(5):
        health.report(REDIS, False, "no reply")
    now[0] = 103.5
    for _ in range(5):
        health.report(REDIS, True)
    downs, ups = _lines(caplog, "dependency down"), _lines(caplog, "dependency up")
    assert len(downs) == 1 and downs[0].levelno == logging.WARNING
    assert len(ups) == 1 and ups[0].levelno == logging.WARNING
    assert ups[0].fields == {"dependency": "redis", "down_secs": 3.5}  # type: ignore[attr-defined]
    assert health.dependency(REDIS).reason is None


async def test_watcher_reports_failures_timeouts_and_recovery() -> None:
    health = Health()
    state = {"mode": "ok"}

    async def check() -> None:
        if state["mode"] == "hang":
            await asyncio.sleep(10)
        if state["mode"] == "fail":
            raise OSError("connection refused")

    watcher = Watcher(health, REDIS, check, interval=0.05, timeout=0.05, min_gap=0.0)
    assert await watcher.run_once() and health.dependency(REDIS).up is True
    state["mode"] = "hang"
    assert not await watcher.run_once()
    assert health.dependency(REDIS).reason == "no answer within 0.05s"
    state["mode"] = "fail"
    assert not await watcher.run_once()
    state["mode"] = "ok"
    watcher.start()
    try:
        for _ in range(100):
            if health.dependency(REDIS).up:
                break
            await asyncio.sleep(0.01)
        assert health.dependency(REDIS).up is True  # the periodic check brought it back
    finally:
        await watcher.stop()


async def test_poke_runs_a_check_at_once() -> None:
    health = Health()
    ran = asyncio.Event()

    async def check() -> None:
        ran.set()

    watcher = Watcher(health, REDIS, check, interval=60, timeout=1)
    watcher.start()
    try:
        await asyncio.sleep(0.01)
        assert not ran.is_set()
        watcher.poke()
        await asyncio.wait_for(ran.wait(), 1)
    finally:
        await watcher.stop()
