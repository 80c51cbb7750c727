"""Actions run as ordinary task code, whichever way their event arrived.

The daemon's events arrive from loop callbacks (a datagram, a timer, a finished webhook
task) through ``Instance.post``. Actions must then be able to use what needs a current
task — ``asyncio.timeout()`` above all — from their first line, not only after a first
``await``."""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from engine.clock import FakeClock
from engine.fsm import Registry, load_text
from engine.fsm.runtime import Runtime

MACHINE = """
machine: timed
inputs: [start, poke]
initial: idle
states:
  idle: {on: {start: working}}
  working:
    entry: [t.bounded]
    after: [{delay: 60, target: failed}]  # a fake clock: never fires here
    on:
      action.error: failed
      poke: {target: poked, actions: [t.mark]}
  poked: {final: true}
  failed: {final: true}
"""


def make_runtime() -> Runtime:
    reg = Registry()
    reg.declare_events("test", ["start", "poke"])

    @reg.action(name="t.bounded")
    async def bounded(ctx: Any, p: Any) -> None:
        # asyncio.timeout() entered before any await: needs a current task at once
        ctx.vars.seen.append(("task", asyncio.current_task() is not None))
        async with asyncio.timeout(ctx.vars.limit):
            await ctx.vars.wait_for.wait()
        ctx.vars.seen.append(("waited", True))

    @reg.action(name="t.mark")
    async def mark(ctx: Any, p: Any) -> None:
        ctx.vars.seen.append(("poke", ctx.state))

    class Library:
        def __init__(self) -> None:
            result = load_text(MACHINE, "test.yaml", reg)
            assert result.ok, "\n".join(map(str, result.diagnostics))
            self.compiled = result.compiled

        def get(self, name: str) -> Any:
            return self.compiled

    return Runtime(Library(), SimpleNamespace(), FakeClock())


def spawn(rt: Runtime, limit: float) -> tuple[Any, asyncio.Event]:
    wait_for = asyncio.Event()
    inst = rt.spawn("timed", vars={"seen": [], "limit": limit, "wait_for": wait_for})
    return inst, wait_for


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


async def test_action_enters_asyncio_timeout_before_its_first_await() -> None:
    rt = make_runtime()
    inst, wait_for = spawn(rt, limit=5.0)
    asyncio.get_running_loop().call_soon(inst.post, "start")  # as a datagram callback does
    await settle()
    assert inst.state == "working" and not inst.done
    assert inst.vars.seen == [("task", True)]
    # an event posted while the action waits is queued behind the step, not lost
    inst.post("poke")
    await settle()
    assert inst.state == "working"
    wait_for.set()
    await settle()
    assert inst.vars.seen == [("task", True), ("waited", True), ("poke", "poked")]
    assert inst.state == "poked" and inst.status == "done"
    assert inst.trace.entries[0].failed is None


async def test_an_expired_asyncio_timeout_fails_only_the_action() -> None:
    rt = make_runtime()
    inst, _ = spawn(rt, limit=0.01)
    asyncio.get_running_loop().call_soon(inst.post, "start")
    for _ in range(100):
        await asyncio.sleep(0.005)
        if inst.done:
            break
    assert inst.state == "failed" and inst.status == "done"
    failed = inst.trace.entries[0].failed
    assert failed is not None and "TimeoutError" in failed


async def test_a_posted_event_runs_on_a_later_loop_turn_not_inside_the_poster() -> None:
    rt = make_runtime()
    inst, wait_for = spawn(rt, limit=5.0)
    wait_for.set()
    inst.post("start")
    assert inst.state == "idle" and inst.vars.seen == []  # the poster's step is not interrupted
    await settle()
    assert inst.state == "working" and inst.vars.seen == [("task", True), ("waited", True)]
