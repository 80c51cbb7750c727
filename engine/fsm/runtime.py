"""Live machine instances: per-instance event queue, actions, timers, tasks, trace.

An ``Instance`` is both the ``transitions`` model and the ``ctx`` every action
and guard receives. Events are queued per instance and processed one at a
time; actions run in order after the graph step, and only *start* long work
(``ctx.start``) whose outcome comes back as another event. So a CANCEL that
arrives while a webhook is pending is processed at once, and the pending
work is cancelled when its state is left (or its late result ignored).

Failure routing: an action that raises produces ``action.error`` (data:
``action``, ``error``); the current state or the machine-wide ``on:`` may
handle it; otherwise the instance is driven to the machine's ``on_failure``
state, whose entry actions (the cleanup) always run.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import os
import time
from collections.abc import Callable, Coroutine, Mapping
from operator import itemgetter
from typing import Any

from engine.fsm.compile import BoundCall, CompiledMachine
from engine.fsm.definition import ALWAYS_EVENT
from engine.fsm.events import Event, Outcome
from engine.fsm.registry import REGISTRY
from engine.fsm.trace import Trace, TraceEntry
from engine.fsm.vars import build_vars, drop_vars
from engine.log import Logger, get_logger

RUNNING, DONE, FAILED, KILLED = "running", "done", "failed", "killed"
ACTION_ERROR = "action.error"

_log = get_logger("engine.fsm")
_ids = itertools.count(1)
_ID_PREFIX = f"{os.getpid():x}"
_phase = itemgetter(0)


class _Unset:
    """``Instance._call_id`` not looked up yet (None is a valid answer: no call)."""

    __slots__ = ()


_UNSET = _Unset()


def _root_call_id(inst: Instance) -> str | None:
    """The Call-ID of the request of ``inst``'s root ancestor (its own request failing that).
    The root's, not the instance's own: a re-INVITE relay's request may be the B leg's."""
    node: Instance | None = inst
    for _ in range(16):  # bounded: parents form a short chain (call → verb → leg)
        if node is None:
            break
        if node.parent is None:
            call_id = getattr(getattr(node.vars, "req", None), "call_id", None)
            if isinstance(call_id, str):
                return call_id
            break
        node = node.parent
    own = getattr(getattr(inst.vars, "req", None), "call_id", None)
    return own if isinstance(own, str) else None


_NO_EVENT = Event("", None)


class Instance:
    """One running flow (a REGISTER, a call leg, a verb, a trunk registration)."""

    __slots__ = (
        "__weakref__", "_acts", "_begun", "_call_id", "_children", "_drainer", "_epoch", "_itasks",
        "_log", "_on_finish", "_queue", "_running", "_stasks", "_timers", "created", "event",
        "guard_log", "id", "machine", "parent", "result", "runtime", "state", "status", "steps",
        "trace", "vars",
    )

    def __init__(self, runtime: Runtime, machine: CompiledMachine, vars: dict[str, Any],
                 parent: Instance | None, instance_id: str | None):
        self.runtime = runtime
        self.machine = machine
        self.id = instance_id or f"{machine.name}-{_ID_PREFIX}-{next(_ids)}"
        self.vars: Any = build_vars(runtime.vars_types.get(machine.name), machine.name, vars)
        self.parent = parent
        self.state = machine.initial
        self.status = RUNNING
        self.event = _NO_EVENT
        self.result: dict[str, Any] = {}
        self.trace = Trace(machine.label)
        self.created = runtime.clock.time()
        self._log: Logger | None = None
        self._call_id: str | _Unset | None = _UNSET
        # Working lists reused for every event (cleared, not reallocated): thousands of
        # instances live at once, so per-instance allocations are kept few and lazy.
        self.steps: list[tuple[int, str, Any]] = []
        self.guard_log: list[tuple[str, bool]] = []
        self._acts: list[str] = []
        self._queue: list[tuple[str, dict[str, Any] | None]] = []
        self._running = False
        self._drainer: asyncio.Task[None] | None = None
        self._begun = False
        self._epoch = 0
        self._timers: list[Any] | None = None
        self._stasks: set[asyncio.Task[Any]] | None = None
        self._itasks: set[asyncio.Task[Any]] | None = None
        self._children: set[Instance] | None = None
        self._on_finish: list[Callable[[Instance], None]] | None = None

    # ------------------------------------------------------------------ public API
    @property
    def log(self) -> Logger:
        """A logger bound to this instance's id and its call's ``call_id`` (created on first
        use, so the Call-ID is looked up once per instance, not once per line)."""
        if self._log is None:
            call_id = self.call_id
            self._log = (_log.bind(instance=self.id, call_id=call_id) if call_id is not None
                         else _log.bind(instance=self.id))
        return self._log

    def bind_log(self, **fields: Any) -> None:
        """Add ``fields`` to every later line of this instance (a B leg's ``leg_call_id``)."""
        self._log = self.log.bind(**fields)

    @property
    def call_id(self) -> str | None:
        """The Call-ID of the call (or REGISTER) this instance belongs to: the request of the
        root instance — a verb, a call leg or digest_auth answers with its caller's Call-ID,
        so every line about one call greps together. None for an instance of no request (a
        trunk registration). Found once and remembered."""
        if isinstance(self._call_id, _Unset):
            self._call_id = _root_call_id(self)
        return self._call_id

    @property
    def services(self) -> Any:
        """The ports (sip, media, store, hooks, config, settings, clock)."""
        return self.runtime.services

    @property
    def done(self) -> bool:
        return self.status != RUNNING

    def post(self, event: str, data: dict[str, Any] | None = None) -> None:
        """Queue ``event``; processed soon on the loop. Safe to call from callbacks."""
        if self.status != RUNNING:
            return
        self._queue.append((event, data))
        if not self._running:
            self._running = True
            self._drain_soon()

    def _drain_soon(self) -> None:
        """Process the queue in a task of its own, starting on the next loop turn.

        A task, so that actions run as ordinary task code (``asyncio.timeout()``,
        ``current_task()``, cancellation all work, also before an action's first await).
        The next turn, not now: a poster is often in the middle of its own step (a child
        finishing, a leg reporting to its call) and must not have this instance's step run
        inside it. The instance keeps the task: a step suspended on a future nobody else
        holds must not be garbage-collected."""
        self._drainer = self.runtime.loop.create_task(self._drain())

    async def send(self, event: str, data: dict[str, Any] | None = None) -> None:
        """Queue ``event`` and, if the instance is idle, process the queue now."""
        if self.status != RUNNING:
            return
        self._queue.append((event, data))
        if not self._running:
            self._running = True
            await self._drain()

    def emit(self, event: str, **data: Any) -> None:
        """For actions: cause ``event`` on this instance after the current step."""
        self.post(event, data or None)

    def start(self, work: Coroutine[Any, Any, Any], *, done: str,
              error: str, scope: str = "state") -> asyncio.Task[Any]:
        """Run ``work`` in the background; when it ends post ``done`` (data ``result``),
        or the ``Outcome`` it returned, or ``error`` (data ``error``) if it raised.

        ``scope="state"`` work is cancelled when the current state is left (its late
        result is ignored); ``scope="instance"`` work lives until the instance ends.
        """
        task = self.runtime.loop.create_task(work)
        if scope == "state":
            if self._stasks is None:
                self._stasks = set()
            self._stasks.add(task)
            epoch = self._epoch
        else:
            if self._itasks is None:
                self._itasks = set()
            self._itasks.add(task)
            epoch = -1
        task.add_done_callback(lambda t: self._work_done(t, done, error, epoch))
        return task

    def on_finish(self, callback: Callable[[Instance], None]) -> None:
        if self._on_finish is None:
            self._on_finish = []
        self._on_finish.append(callback)

    def spawn_child(self, machine: str, *, vars: dict[str, Any], done: str) -> Instance:
        """Start a child machine; when it finishes this instance gets ``done`` with data
        ``{"child": …, "outcome": <final state>, **child.result}``."""
        child = self.runtime.spawn(machine, vars=vars, parent=self)
        if self._children is None:
            self._children = set()
        self._children.add(child)

        def finished(c: Instance) -> None:
            if self._children is not None:
                self._children.discard(c)
            self.post(done, {"child": c, "outcome": c.state, "status": c.status, **c.result})

        child.on_finish(finished)
        child.post("start")
        return child

    def kill(self, reason: str) -> None:
        """Stop at once without running any action (used when a parent ends)."""
        if self.status != RUNNING:
            return
        self.trace.add(TraceEntry(self.runtime.clock.time(), self.state, self.state, "kill",
                                  note=f"killed: {reason}"))
        self._finish(KILLED)

    # ------------------------------------------------------------------ engine
    def guard_failed(self, label: str, exc: Exception) -> None:
        self.log.error("guard raised; treated as false", guard=label, state=self.state,
                       machine=self.machine.label, error=repr(exc))

    def _work_done(self, task: asyncio.Task[Any], done: str, error: str, epoch: int) -> None:
        if self._stasks is not None:
            self._stasks.discard(task)
        if self._itasks is not None:
            self._itasks.discard(task)
        if task.cancelled() or self.status != RUNNING:
            return
        if epoch not in (-1, self._epoch):
            return  # the state that started it was left: a late result is ignored
        exc = task.exception()
        if exc is not None:
            self.post(error, {"error": exc})
            return
        result = task.result()
        if isinstance(result, Outcome):
            self.post(result.event, result.data)
        else:
            self.post(done, {"result": result})

    def _timer_fired(self, event: str, epoch: int) -> None:
        if epoch == self._epoch and self.status == RUNNING:
            self.post(event)

    def begin(self) -> None:
        """Enter the initial state (run its entry actions) without posting an event."""
        if not self._running and not self._begun:
            self._running = True
            self._drain_soon()

    async def _drain(self) -> None:
        try:
            if not self._begun:
                self._begun = True
                await self._enter_initial()
            queue = self._queue
            while queue and self.status == RUNNING:
                name, data = queue.pop(0)
                await self._process(name, data)
        except asyncio.CancelledError:
            raise
        except Exception as exc:  # an engine bug: isolate it to this instance
            self.log.exception("machine step crashed", machine=self.machine.label,
                               state=self.state, error=repr(exc))
            self._finish(FAILED)
        finally:
            self._running = False

    async def _enter_initial(self) -> None:
        machine = self.machine
        initial = machine.initial
        if not (machine.entry[initial] or machine.timers[initial]
                or initial in machine.has_always):
            return
        entry = self.trace.add(TraceEntry(self.runtime.clock.time(), "", initial, "(begin)"))
        self._acts.clear()
        await self._run_steps([(2, "enter", initial)], entry)
        self._close_entry(entry)

    async def _process(self, name: str, data: dict[str, Any] | None) -> None:
        machine = self.machine
        source = self.state
        clock = self.runtime.clock
        if name not in machine.handled[source]:
            if self.runtime.trace_ignored:
                self.trace.add(TraceEntry(clock.time(), source, source, name, note="ignored"))
            return
        t0 = time.perf_counter()
        self.event = Event(name, data)
        steps = self.steps
        steps.clear()
        guards = self.guard_log
        guards.clear()
        self._acts.clear()
        taken = machine.trigger(self, name)
        entry = self.trace.add(TraceEntry(clock.time(), source, self.state, name))
        if guards:
            labels = []
            bits = 0
            for bit, (label, ok) in enumerate(guards):  # one pass, no generator per event
                labels.append(label)
                if ok:
                    bits |= 1 << bit
            entry.guards = tuple(labels)
            entry.guard_bits = bits
        if not taken:
            entry.note = "no transition (guards false)"
            entry.duration_us = (time.perf_counter() - t0) * 1e6
            return
        if steps:
            if len(steps) > 1:
                steps.sort(key=_phase)
            await self._run_steps(steps, entry)
        self._close_entry(entry)
        entry.duration_us = (time.perf_counter() - t0) * 1e6
        if self.runtime.log_transitions:
            self.log.debug("transition", machine=machine.label, step=str(entry))

    def _close_entry(self, entry: TraceEntry) -> None:
        if self._acts:
            entry.actions = tuple(self._acts)
            self._acts.clear()

    async def _run_steps(self, steps: list[tuple[int, str, Any]], entry: TraceEntry) -> None:
        machine = self.machine
        for _, kind, payload in steps:
            if kind == "exit":
                self._leave_state()
                calls = machine.exit[payload]
            elif kind == "do":
                calls = payload
            else:
                self._arm_timers(payload)
                calls = machine.entry[payload]
            for call in calls:
                if not await self._call(call, entry):
                    return
        state = self.state
        if state in machine.has_always:
            self._queue.insert(0, (ALWAYS_EVENT, None))
        elif state in machine.final_states:
            self._finish(DONE)

    async def _call(self, call: BoundCall, entry: TraceEntry) -> bool:
        try:
            await call.func(self, call.params)
        except asyncio.CancelledError:
            raise
        except Exception as exc:
            entry.failed = f"{call.label}: {exc!r}"
            self._action_failed(call, exc)
            return False
        self._acts.append(call.label)
        return True

    def _action_failed(self, call: BoundCall, exc: Exception) -> None:
        machine = self.machine
        state = self.state
        self.log.warning("action failed", action=call.name, state=state,
                         machine=machine.label, error=repr(exc))
        if state in machine.final_states:
            self._finish(FAILED if machine.on_failure != state else DONE)
            return
        if ACTION_ERROR in machine.handled[state]:
            self._queue.insert(0, (ACTION_ERROR, {"action": call.name, "error": exc}))
            return
        self._queue.clear()
        self.runtime.loop.create_task(self._enter_failure(call.name, exc))

    async def _enter_failure(self, action_name: str, exc: Exception) -> None:
        """Uncaught action failure: go to ``on_failure`` (cleanup) or end as failed."""
        machine = self.machine
        target = machine.on_failure
        if self.status != RUNNING:
            return
        source = self.state
        entry = self.trace.add(TraceEntry(self.runtime.clock.time(), source, target or source,
                                          ACTION_ERROR,
                                          note=f"uncaught failure of {action_name}"))
        if target is None or target == source:
            self._finish(FAILED)
            return
        self._leave_state()
        machine.set_state(self, target)
        self.event = Event(ACTION_ERROR, {"action": action_name, "error": exc})
        self._arm_timers(target)
        self._running = True
        self._acts.clear()
        try:
            for call in machine.entry[target]:
                if not await self._call(call, entry):
                    return
            self._close_entry(entry)
            if target in machine.final_states:
                self._finish(DONE)
            elif self._queue:
                await self._drain()
        finally:
            self._running = False

    def _leave_state(self) -> None:
        self._epoch += 1
        if self._timers:
            for handle in self._timers:
                handle.cancel()
            self._timers = None
        if self._stasks:
            for task in self._stasks:
                task.cancel()
            self._stasks.clear()

    def _arm_timers(self, state: str) -> None:
        timers = self.machine.timers[state]
        if not timers:
            return
        clock = self.runtime.clock
        epoch = self._epoch
        for timer in timers:
            seconds = timer.seconds
            if seconds is None:
                assert timer.delay is not None
                try:
                    seconds = float(timer.delay.func(self, timer.delay.params))
                except Exception as exc:
                    self.log.error("delay raised; timer fires at once", delay=timer.label,
                                   error=repr(exc))
                    seconds = 0.0
            if self._timers is None:
                self._timers = []
            self._timers.append(clock.call_later(
                seconds, lambda ev=timer.event, ep=epoch: self._timer_fired(ev, ep)))

    def _finish(self, status: str) -> None:
        if self.status != RUNNING:
            return
        self.status = status
        self._leave_state()
        if self._itasks:
            for task in self._itasks:
                task.cancel()
            self._itasks = None
        self._queue.clear()
        if self._children:
            for child in list(self._children):
                child.kill(f"parent {self.id} ended")
        self._children = None
        self.runtime.forget(self)
        callbacks, self._on_finish = self._on_finish, None
        for callback in callbacks or ():
            try:
                callback(self)
            except Exception as exc:
                self.log.exception("finish callback failed", error=repr(exc))
        self._release_peers()

    def _release_peers(self) -> None:
        """An ended instance forgets the other instances it knew (its parent, children,
        legs) and its last event's data: parents and children point at each other, and
        without this every finished call would wait for the cyclic garbage collector
        instead of being freed at once. Its state, result and trace stay readable."""
        self.event = _NO_EVENT
        drop_vars(self.vars, Instance)

    def __repr__(self) -> str:
        return f"<Instance {self.id} {self.machine.label} state={self.state} {self.status}>"




class Runtime:
    """Owns the machine library, the services (ports) and the live instances."""

    def __init__(self, library: Any, services: Any, clock: Any,
                 loop: asyncio.AbstractEventLoop | None = None, *, trace_ignored: bool = True,
                 vars_types: Mapping[str, type] | None = None):
        self.library = library
        # machine → vars dataclass; the process-wide registry's, which the shipped actions
        # (typed against those dataclasses) are bound from
        self.vars_types = REGISTRY.vars_types if vars_types is None else vars_types
        self.services = services
        self.clock = clock
        self._loop = loop
        self.live: dict[str, Instance] = {}
        self.trace_ignored = trace_ignored
        self.finished_count = 0
        # one debug line per transition ("watch a call's path" in the logs)
        self.log_transitions = _log.is_enabled(logging.DEBUG)
        self._background: set[asyncio.Task[Any]] = set()
        # told about every instance that ends (metrics, the API's recent calls)
        self.finish_observers: list[Callable[[Instance], None]] = []

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            self._loop = asyncio.get_running_loop()
        return self._loop

    def spawn(self, machine: str | CompiledMachine, *, vars: dict[str, Any] | None = None,
              parent: Instance | None = None, instance_id: str | None = None) -> Instance:
        """New instance of the *current* version of ``machine`` (running ones keep theirs)."""
        compiled = machine if isinstance(machine, CompiledMachine) else self.library.get(machine)
        inst = Instance(self, compiled, vars or {}, parent, instance_id)
        compiled.set_state(inst, compiled.initial)
        self.live[inst.id] = inst
        return inst

    def background(self, work: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run clean-up work that must finish even after its instance has ended (deleting
        an RTPEngine session, a live-call record); failures are logged, never raised."""
        task = self.loop.create_task(work)
        self._background.add(task)

        def done(t: asyncio.Task[Any]) -> None:
            self._background.discard(t)
            if not t.cancelled() and t.exception() is not None:
                _log.warning("background work failed", what=what, error=repr(t.exception()))

        task.add_done_callback(done)
        return task

    async def wait_background(self, timeout: float = 5.0) -> None:
        """Let pending clean-up finish (used at shutdown)."""
        if self._background:
            await asyncio.wait(list(self._background), timeout=timeout)

    def forget(self, inst: Instance) -> None:
        if self.live.pop(inst.id, None) is not None:
            self.finished_count += 1
            for observer in self.finish_observers:
                observer(inst)

    def find(self, instance_id: str) -> Instance | None:
        return self.live.get(instance_id)
