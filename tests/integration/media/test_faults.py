"""RTPEngine faults seen by the ng client and the media port, against real rtpengine
daemons (issue 10, defect 7): lost calls after a restart or an "Unknown call-id", a
freeze that keeps the calls, and deletes retried (or given up) in the background."""

from __future__ import annotations

import asyncio
import signal
import time
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from engine.media.files import MediaResolver
from engine.media.port import RtpEngineMedia
from engine.rtpengine.client import UP, RtpEngineClient
from engine.rtpengine.errors import NgUnknownCall
from engine.rtpengine.ng import CookieFactory, ResendPolicy
from tests.fixtures.procs import send_signal
from tests.fixtures.rtpengine import RtpEngine
from tests.integration.media.test_client import SDP, offer

pytestmark = pytest.mark.integration

FAST = ResendPolicy((0.2, 0.3))
_cookies = CookieFactory()


async def _until(predicate: Callable[[], Any], timeout: float = 5.0) -> None:
    end = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > end:
            raise AssertionError("condition not reached")
        await asyncio.sleep(0.02)


def _signal(engine: RtpEngine, sig: int) -> None:
    assert engine.service is not None
    send_signal(engine.service.proc.pid, sig, group=True)


async def _answer(client: RtpEngineClient, call_id: str) -> None:
    await client.command({"command": "answer", "call-id": call_id, "from-tag": "a1",
                          "to-tag": "b1", "sdp": SDP.replace("30000", "30002"),
                          "ICE": "remove"})


async def _direct(engine: RtpEngine, body: dict[str, Any]) -> dict[str, Any]:
    """A command straight to the daemon (not through the client under test)."""
    other = RtpEngineClient([engine.endpoint], policy=FAST, ping_interval=60,
                            cookie_factory=_cookies)
    try:
        return await other.command_on(engine.address, body)
    finally:
        await other.close()


async def test_restart_between_pings_reports_every_call_once(rtpengine_spare: RtpEngine
                                                             ) -> None:
    client = RtpEngineClient([rtpengine_spare.endpoint], ping_interval=0.3)
    lost: list[tuple[str, str, str]] = []
    client.on_lost(lambda *event: lost.append(event))
    try:
        await client.start()
        calls = [f"r-{uuid.uuid4()}" for _ in range(3)]
        for call_id in calls:
            await client.command(offer(call_id))
            await _answer(client, call_id)
        await asyncio.sleep(2.2)  # the uptime baseline is older than the restart
        rtpengine_spare.restart()  # faster than a ping: the instance never looks down
        await _until(lambda: len(lost) == 3)
        await asyncio.sleep(1.0)  # later pings report nothing again
        assert sorted(c for c, _, _ in lost) == sorted(calls)
        assert {(i, why) for _, i, why in lost} == {(rtpengine_spare.address, "restarted")}
    finally:
        await client.close()


async def test_unknown_call_id_for_a_live_call_reports_it(rtpengine_spare: RtpEngine) -> None:
    client = RtpEngineClient([rtpengine_spare.endpoint], ping_interval=60)
    lost: list[str] = []
    client.on_lost(lambda call_id, _i, _why: lost.append(call_id))
    try:
        await client.start()
        gone, kept = f"u-{uuid.uuid4()}", f"u-{uuid.uuid4()}"
        for call_id in (gone, kept):
            await client.command(offer(call_id))
            await _answer(client, call_id)
        await _direct(rtpengine_spare, {"command": "delete", "call-id": gone})
        with pytest.raises(NgUnknownCall):
            await client.command({"command": "play DTMF", "call-id": gone, "from-tag": "a1",
                                  "code": "1"})
        await _until(lambda: lost == [gone])
        await asyncio.sleep(0.3)
        assert lost == [gone]  # the other call is still there: not reported
    finally:
        await client.close()


async def test_frozen_then_thawed_instance_keeps_its_calls(rtpengine_spare: RtpEngine) -> None:
    client = RtpEngineClient([rtpengine_spare.endpoint], ping_interval=0.3, ping_policy=FAST)
    lost: list[str] = []
    client.on_lost(lambda call_id, _i, _why: lost.append(call_id))
    try:
        await client.start()
        call_id = f"f-{uuid.uuid4()}"
        await client.command(offer(call_id))
        _signal(rtpengine_spare, signal.SIGSTOP)
        await _until(lambda: client.statuses()[0].state != UP)
        _signal(rtpengine_spare, signal.SIGCONT)
        await _until(lambda: client.statuses()[0].state == UP)
        await asyncio.sleep(1.0)  # the check after the outage ran
        assert lost == []
    finally:
        _signal(rtpengine_spare, signal.SIGCONT)
        await client.close()


def _media(engine: RtpEngine, retry_secs: float) -> RtpEngineMedia:
    client = RtpEngineClient([engine.endpoint], ping_interval=0.3, ping_policy=FAST)
    return RtpEngineMedia(client, MediaResolver(Path("/nonexistent")),
                          delete_retry_secs=retry_secs)


async def test_delete_to_a_frozen_instance_is_retried_after_it_thaws(
        rtpengine_spare: RtpEngine) -> None:
    media = _media(rtpengine_spare, retry_secs=60)
    try:
        await media.start()
        call_id = f"d-{uuid.uuid4()}"
        await media.offer(call_id=call_id, from_tag="a1", sdp=SDP.encode())
        _signal(rtpengine_spare, signal.SIGSTOP)
        started = time.monotonic()
        await media.delete(call_id=call_id)  # times out, does not raise
        assert time.monotonic() - started < 5
        assert media.deletes.pending() == [call_id]
        _signal(rtpengine_spare, signal.SIGCONT)
        await _until(lambda: not media.deletes.pending(), timeout=5)
        assert media.deletes.recovered == 1 and media.deletes.given_up == 0
        assert media.client.instance_of(call_id) is None
        with pytest.raises(NgUnknownCall):
            await _direct(rtpengine_spare, {"command": "query", "call-id": call_id})
    finally:
        _signal(rtpengine_spare, signal.SIGCONT)
        await media.close()


async def test_delete_retries_end_with_a_warning(rtpengine_spare: RtpEngine,
                                                 caplog: pytest.LogCaptureFixture) -> None:
    media = _media(rtpengine_spare, retry_secs=2)
    try:
        await media.start()
        call_id = f"g-{uuid.uuid4()}"
        await media.offer(call_id=call_id, from_tag="a1", sdp=SDP.encode())
        _signal(rtpengine_spare, signal.SIGSTOP)
        await media.delete(call_id=call_id)
        assert media.deletes.pauses == [1.0, 1.0]
        await _until(lambda: not media.deletes.pending(), timeout=10)
        assert (media.deletes.given_up, media.deletes.recovered) == (1, 0), [
            (r.levelname, r.getMessage(), getattr(r, "fields", {})) for r in caplog.records]
        assert media.client.instance_of(call_id) is None  # forgotten: no leak in the client
        warnings = [getattr(r, "fields", {}) for r in caplog.records
                    if r.levelname == "WARNING" and "could not be deleted" in r.getMessage()]
        assert [w.get("call_id") for w in warnings] == [call_id], caplog.records
    finally:
        _signal(rtpengine_spare, signal.SIGCONT)
        await media.close()
