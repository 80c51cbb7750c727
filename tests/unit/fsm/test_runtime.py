"""Runtime semantics: queueing, guards, always, timers, started work, failures, versions."""

from __future__ import annotations

import asyncio
from dataclasses import dataclass
from types import SimpleNamespace
from typing import Any

import pytest

from engine.actions._context import Ctx
from engine.clock import FakeClock
from engine.fsm import Outcome, Registry, load_text
from engine.fsm.runtime import Runtime


@dataclass(frozen=True)
class Note:
    text: str


@dataclass(slots=True, kw_only=True)
class CountVars:
    """Variables of the test machine ``counting`` (``t.count`` works on them)."""

    n: int = 0


@dataclass(slots=True, kw_only=True)
class OtherVars:
    """Variables of the test machine ``other_vars``: no ``n``."""

    m: int = 0


def make_registry() -> Registry:
    reg = Registry()
    reg.declare_events("test", ["start", "go", "cancel", "stop", "ping"])
    reg.machine_vars("counting")(CountVars)
    reg.machine_vars("other_vars")(OtherVars)

    @reg.action(name="t.count")
    async def count(ctx: Ctx[CountVars], p: Any) -> None:
        ctx.vars.n += 1

    @reg.action(name="t.note", params=Note)
    async def note(ctx: Any, p: Note) -> None:
        ctx.vars.log.append(p.text)

    @reg.action(name="t.fail")
    async def fail(ctx: Any, p: Any) -> None:
        raise RuntimeError("boom")

    @reg.action(name="t.work", emits=("work.done", "work.error"),
                outcomes=("work.done", "work.error"))
    async def work(ctx: Any, p: Any) -> None:
        ctx.start(ctx.vars.work(), done="work.done", error="work.error")

    @reg.action(name="t.choose", emits=("work.yes", "work.no"), outcomes=("work.yes", "work.no"))
    async def choose(ctx: Any, p: Any) -> None:
        async def decide() -> Outcome:
            return Outcome("work.yes" if ctx.vars.flag else "work.no", {"why": "flag"})
        ctx.start(decide(), done="unused", error="unused")

    @reg.action(name="t.child", emits=("child.done",), outcomes=("child.done",))
    async def child(ctx: Any, p: Any) -> None:
        ctx.spawn_child("child", vars={"log": ctx.vars.log}, done="child.done")

    @reg.guard(name="t.flag")
    def flag(ctx: Any, p: Any) -> bool:
        return bool(ctx.vars.flag)

    @reg.guard(name="t.broken")
    def broken(ctx: Any, p: Any) -> bool:
        raise ValueError("bug")

    @reg.delay(name="t.delay")
    def delay(ctx: Any, p: Any) -> float:
        return ctx.vars.delay

    return reg


class Library:
    def __init__(self, reg: Registry, *texts: str):
        self.reg = reg
        self.machines: dict[str, Any] = {}
        for t in texts:
            self.add(t)

    def add(self, text: str) -> None:
        r = load_text(text, "test.yaml", self.reg)
        assert r.ok, "\n".join(map(str, r.diagnostics))
        self.machines[r.compiled.name] = r.compiled

    def get(self, name: str) -> Any:
        return self.machines[name]


def runtime(*texts: str) -> tuple[Runtime, FakeClock]:
    clock = FakeClock()
    reg = make_registry()
    # the variables of the test registry's machines (none declared: namespaces), not the
    # shipped ones of REGISTRY, whose names a test machine may borrow ("inbound_call")
    return Runtime(Library(reg, *texts), SimpleNamespace(), clock,
                   vars_types=reg.vars_types), clock


async def settle() -> None:
    for _ in range(20):
        await asyncio.sleep(0)


LINEAR = """
machine: linear
version: 1
inputs: [start, go]
initial: idle
states:
  idle:
    on: {start: a}
  a:
    entry: [{action: t.note, params: {text: enter-a}}]
    exit: [{action: t.note, params: {text: exit-a}}]
    on:
      go: {target: b, actions: [{action: t.note, params: {text: go}}]}
    after: [{delay: 5, target: b}]
  b:
    entry: [{action: t.note, params: {text: enter-b}}]
    final: true
"""


async def test_linear_flow_runs_exit_transition_entry_in_order() -> None:
    rt, _ = runtime(LINEAR)
    inst = rt.spawn("linear", vars={"log": []})
    await inst.send("start")
    await inst.send("go")
    assert inst.vars.log == ["enter-a", "exit-a", "go", "enter-b"]
    assert inst.state == "b" and inst.status == "done"
    assert inst.trace.path() == ["idle", "a", "b"]
    assert [e.event for e in inst.trace] == ["start", "go"]
    assert inst.id not in rt.live


async def test_after_timer_fires_and_is_cancelled_on_exit() -> None:
    rt, clock = runtime(LINEAR)
    inst = rt.spawn("linear", vars={"log": []})
    await inst.send("start")
    clock.advance(4.9)
    await settle()
    assert inst.state == "a"
    clock.advance(0.2)
    await settle()
    assert inst.state == "b"
    # second instance leaves `a` before the timer: the timer is cancelled
    inst2 = rt.spawn("linear", vars={"log": []})
    await inst2.send("start")
    await inst2.send("go")
    assert clock.pending() == 0


async def test_ignored_events_are_traced_and_do_nothing() -> None:
    rt, _ = runtime(LINEAR)
    inst = rt.spawn("linear", vars={"log": []})
    await inst.send("go")
    assert inst.state == "idle"
    assert inst.trace.entries[-1].note == "ignored"


GUARDS = """
machine: guards
inputs: [start]
initial: idle
states:
  idle:
    on:
      start:
        - {guard: t.flag, target: yes}
        - {target: no}
  yes: {final: true}
  no: {final: true}
"""


@pytest.mark.parametrize(("flag", "expected"), [(True, "yes"), (False, "no")])
async def test_guards_pick_the_first_passing_transition(flag: bool, expected: str) -> None:
    rt, _ = runtime(GUARDS)
    inst = rt.spawn("guards", vars={"flag": flag})
    await inst.send("start")
    assert inst.state == expected
    assert inst.trace.entries[0].guard_results()[0] == ("t.flag", flag)


ALWAYS = """
machine: decide
inputs: [start]
initial: idle
states:
  idle:
    on: {start: check}
  check:
    always:
      - {guard: t.flag, target: accepted}
      - {unless: t.flag, target: rejected, actions: [{action: t.note, params: {text: no}}]}
  accepted: {final: true}
  rejected: {final: true}
"""


async def test_always_transitions_decide_right_after_entry() -> None:
    rt, _ = runtime(ALWAYS)
    a = rt.spawn("decide", vars={"flag": True, "log": []})
    await a.send("start")
    assert a.state == "accepted"
    b = rt.spawn("decide", vars={"flag": False, "log": []})
    await b.send("start")
    assert b.state == "rejected" and b.vars.log == ["no"]


WORK = """
machine: work
inputs: [start, cancel]
initial: idle
states:
  idle:
    on: {start: waiting}
  waiting:
    entry: [t.work]
    on:
      work.done: {target: finished, actions: [{action: t.note, params: {text: done}}]}
      work.error: failed
      cancel: cancelled
  finished: {final: true}
  failed: {final: true}
  cancelled: {final: true}
"""


async def test_started_work_reports_done_as_an_event() -> None:
    rt, _ = runtime(WORK)

    async def work() -> int:
        return 42

    inst = rt.spawn("work", vars={"log": [], "work": work})
    await inst.send("start")
    await settle()
    assert inst.state == "finished"
    assert inst.trace.entries[-1].event == "work.done"


async def test_failed_work_reports_error_event() -> None:
    rt, _ = runtime(WORK)

    async def work() -> int:
        raise ConnectionError("hook down")

    inst = rt.spawn("work", vars={"log": [], "work": work})
    await inst.send("start")
    await settle()
    assert inst.state == "failed"


async def test_cancel_is_processed_while_work_is_pending_and_work_is_cancelled() -> None:
    rt, _ = runtime(WORK)
    started = asyncio.Event()
    cancelled = asyncio.Event()

    async def work() -> int:
        started.set()
        try:
            await asyncio.sleep(3600)
        except asyncio.CancelledError:
            cancelled.set()
            raise
        return 1

    inst = rt.spawn("work", vars={"log": [], "work": work})
    await inst.send("start")
    await started.wait()
    await inst.send("cancel")
    assert inst.state == "cancelled"
    await asyncio.wait_for(cancelled.wait(), 1)
    assert inst.vars.log == []


async def test_late_result_of_work_from_a_left_state_is_ignored() -> None:
    rt, _ = runtime(WORK)
    gate = asyncio.Event()

    async def work() -> int:
        try:
            await gate.wait()
        except asyncio.CancelledError:
            return 7  # swallows cancellation on purpose: the result must still be ignored
        return 7

    inst = rt.spawn("work", vars={"log": [], "work": work})
    await inst.send("start")
    await settle()
    await inst.send("cancel")
    gate.set()
    await settle()
    assert inst.state == "cancelled" and inst.vars.log == []


OUTCOME = """
machine: outcome
inputs: [start]
initial: idle
states:
  idle: {on: {start: deciding}}
  deciding:
    entry: [t.choose]
    on: {work.yes: yes, work.no: no}
  yes: {final: true}
  no: {final: true}
"""


async def test_work_may_choose_its_outcome_event() -> None:
    rt, _ = runtime(OUTCOME)
    inst = rt.spawn("outcome", vars={"flag": False})
    await inst.send("start")
    await settle()
    assert inst.state == "no"


FAILURE = """
machine: failing
inputs: [start, go]
initial: idle
on_failure: cleanup
states:
  idle: {on: {start: a, go: b}}
  a:
    entry: [t.fail, {action: t.note, params: {text: not-reached}}]
    on:
      action.error: {target: handled, actions: [{action: t.note, params: {text: caught}}]}
    after: [{delay: 1, target: cleanup}]
  b:
    entry: [t.fail]
    after: [{delay: 1, target: cleanup}]
  handled: {final: true}
  cleanup:
    entry: [{action: t.note, params: {text: cleanup}}]
    final: true
"""


async def test_action_error_caught_by_the_state() -> None:
    rt, _ = runtime(FAILURE)
    inst = rt.spawn("failing", vars={"log": []})
    await inst.send("start")
    await settle()
    assert inst.state == "handled" and inst.vars.log == ["caught"]
    assert inst.trace.entries[0].failed.startswith("t.fail: ")


async def test_uncaught_action_error_runs_the_failure_state_cleanup() -> None:
    rt, _ = runtime(FAILURE)
    inst = rt.spawn("failing", vars={"log": []})
    await inst.send("go")
    await settle()
    assert inst.state == "cleanup" and inst.vars.log == ["cleanup"]
    assert inst.status == "done"


async def test_guard_exception_is_false_and_logged() -> None:
    text = GUARDS.replace("t.flag", "t.broken")
    rt, _ = runtime(text)
    inst = rt.spawn("guards", vars={})
    await inst.send("start")
    assert inst.state == "no"


PARENT = """
machine: parent
inputs: [start]
initial: idle
states:
  idle: {on: {start: running}}
  running:
    entry: [t.child]
    on: {child.done: {target: done, actions: [{action: t.note, params: {text: child-finished}}]}}
  done: {final: true}
"""

CHILD = """
machine: child
inputs: [start]
initial: idle
states:
  idle: {on: {start: work}}
  work:
    entry: [{action: t.note, params: {text: child}}]
    always: finished
  finished: {final: true}
"""


async def test_child_machine_reports_back_to_its_parent() -> None:
    rt, _ = runtime(PARENT, CHILD)
    inst = rt.spawn("parent", vars={"log": []})
    await inst.send("start")
    await settle()
    assert inst.state == "done"
    assert inst.vars.log == ["child", "child-finished"]
    assert inst.trace.entries[-1].event == "child.done"


async def test_reload_new_instances_use_new_version_running_keep_theirs() -> None:
    rt, _ = runtime(LINEAR)
    old = rt.spawn("linear", vars={"log": []})
    await old.send("start")
    rt.library.add(LINEAR.replace("version: 1", "version: 2").replace("text: go", "text: go2"))
    new = rt.spawn("linear", vars={"log": []})
    await new.send("start")
    await old.send("go")
    await new.send("go")
    assert old.machine.version.startswith("1+") and new.machine.version.startswith("2+")
    assert "go" in old.vars.log and "go2" in new.vars.log


async def test_queued_events_are_processed_in_order_one_at_a_time() -> None:
    rt, _ = runtime(LINEAR)
    inst = rt.spawn("linear", vars={"log": []})
    inst.post("start")
    inst.post("go")
    await settle()
    assert inst.vars.log == ["enter-a", "exit-a", "go", "enter-b"]
