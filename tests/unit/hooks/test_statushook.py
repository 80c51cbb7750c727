"""StatusHook sender with a fake HookCaller: queueing, ordering, drops, shutdown."""

from __future__ import annotations

import asyncio
import json
from collections.abc import Mapping, Sequence
from typing import Any

import pytest

from engine.errors import HookError
from engine.hooks.client import HookClient
from engine.hooks.statushook import StatusHook
from engine.ports import HookCaller, HookReply


class FakeCaller:
    def __init__(self, *, delay: float = 0.0, status: int = 200,
                 fail: BaseException | None = None) -> None:
        self.delay = delay
        self.status = status
        self.fail = fail
        self.posts: list[tuple[str, Any, float]] = []
        self.gate: asyncio.Event | None = None

    async def post(self, url: str, payload: Mapping[str, Any] | Sequence[Any], *,
                   timeout: float) -> HookReply:
        if self.gate is not None:
            await self.gate.wait()
        if self.delay:
            await asyncio.sleep(self.delay)
        self.posts.append((url, json.loads(json.dumps(payload)), timeout))
        if self.fail is not None:
            raise self.fail
        return HookReply(status=self.status, body=b"")

    async def close(self) -> None:
        pass


def test_client_and_fake_satisfy_the_port() -> None:
    assert isinstance(HookClient(user_agent="x"), HookCaller)
    assert isinstance(FakeCaller(), HookCaller)


async def test_events_of_one_call_keep_their_order() -> None:
    caller = FakeCaller()
    sender = StatusHook(caller, timeout=1.5, workers=3)
    events = ["connect:start", "connect:trying", "connect:answered", "connect:hangup",
              "connect:complete"]
    for call in ("a", "b", "c", "d"):
        for e in events:
            assert sender.send("http://h/s", call, e, index=0)
    await sender.close(grace=1)
    for call in ("a", "b", "c", "d"):
        seen = [p[1]["event"] for p in caller.posts if p[1]["callId"] == call]
        assert seen == events
    assert {p[2] for p in caller.posts} == {1.5}
    assert sender.sent == 20


async def test_send_is_synchronous_and_drops_when_full() -> None:
    caller = FakeCaller()
    caller.gate = asyncio.Event()  # receiver stuck until released
    sender = StatusHook(caller, timeout=1, queue_size=4, workers=1)
    results = [sender.send("http://h/s", "c", "pause:start", duration=i) for i in range(10)]
    await asyncio.sleep(0)  # the worker takes one item and blocks on the gate
    assert results == [True] * 4 + [False] * 6
    assert sender.dropped == 6
    assert sender.send("http://h/s", "c", "pause:complete")  # room again after a take
    caller.gate.set()
    await sender.close(grace=1)
    assert [p[1]["duration"] for p in caller.posts[:4]] == [0, 1, 2, 3]
    assert sender.sent == 5


async def test_failures_are_counted_and_workers_survive(caplog: pytest.LogCaptureFixture) -> None:
    caller = FakeCaller(fail=HookError("down", kind="connect"))
    sender = StatusHook(caller, timeout=1, workers=1)
    sender.send("http://h/s", "c", "pause:start")
    caller_bug = FakeCaller(fail=RuntimeError("bug"))
    sender2 = StatusHook(caller_bug, timeout=1, workers=1)
    sender2.send("http://h/s", "c", "pause:start")
    sender2.send("http://h/s", "c", "pause:complete")
    rejected = StatusHook(FakeCaller(status=404), timeout=1)
    rejected.send("http://h/s", "c", "pause:start")
    await asyncio.gather(sender.close(grace=1), sender2.close(grace=1),
                         rejected.close(grace=1))
    assert (sender.sent, sender.failed) == (0, 1)
    assert (sender2.sent, sender2.failed) == (0, 2)  # the worker lived on after the bug
    assert (rejected.sent, rejected.failed) == (0, 1)


async def test_suppressed_and_urlless_events_are_not_queued() -> None:
    caller = FakeCaller()
    sender = StatusHook(caller, timeout=1)
    assert not sender.send("http://h/s", "c", "pause:start", label=False)
    assert not sender.send(None, "c", "pause:start")
    assert not sender.send("", "c", "pause:start")
    assert sender.pending == 0
    await sender.close()
    assert caller.posts == []


async def test_legacy_names_setting_applies() -> None:
    caller = FakeCaller()
    sender = StatusHook(caller, timeout=1, legacy_names=True)
    sender.send("http://h/s", "c", "connect:hangup", endedby="A", label=None)
    await sender.close(grace=1)
    assert caller.posts[0][1] == {"callId": "c", "event": "connect:hangup ", "endedby": "A",
                                  "label": None}


async def test_close_abandons_backlog_after_grace() -> None:
    caller = FakeCaller(delay=10)
    sender = StatusHook(caller, timeout=20, workers=1)
    for i in range(3):
        sender.send("http://h/s", "c", "pause:start", duration=i)
    loop = asyncio.get_running_loop()
    started = loop.time()
    await sender.close(grace=0.05)
    assert loop.time() - started < 1
    assert caller.posts == []
    assert not sender.send("http://h/s", "c", "pause:start")


def test_bad_sizes_rejected() -> None:
    with pytest.raises(ValueError):
        StatusHook(FakeCaller(), timeout=1, workers=0)
    with pytest.raises(ValueError):
        StatusHook(FakeCaller(), timeout=1, queue_size=2, workers=4)


async def test_cancelled_close_still_stops_workers() -> None:
    caller = FakeCaller(delay=10)
    sender = StatusHook(caller, timeout=20, workers=2)
    sender.send("http://h/s", "c", "pause:start")
    workers = list(sender._tasks)
    task = asyncio.create_task(sender.close(grace=5))
    await asyncio.sleep(0.01)
    task.cancel()
    with pytest.raises(asyncio.CancelledError):
        await task
    assert all(w.done() for w in workers)
