"""MachineDef → a ``transitions`` machine with every callable bound at load time.

Why the synchronous ``transitions.Machine`` and not ``AsyncMachine``: the
library evaluates the graph (which transition an event takes, guard checks,
exit/enter order) and our runtime executes the async actions afterwards, in a
per-instance queue. Measured on this machine: a sync trigger costs ~6 µs
against ~23 µs for ``AsyncMachine``, and keeping action execution in our own
loop is what lets a CANCEL be processed while a webhook is still pending
(actions only *start* long work; its outcome is a later event). Each live
instance is a model of the one machine per definition; we skip transitions'
per-model convenience attributes (``is_<state>``, one trigger method per
event), which made ``add_model`` cost ~50 µs and O(n) in live models.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from transitions import Event, EventData, Machine, State, Transition

from engine.fsm.definition import ALWAYS_EVENT, CallRef, MachineDef, TransitionDef
from engine.fsm.registry import Registry
from engine.fsm.yamlload import Path

# step phases, so a transition runs: exit actions → transition actions → entry actions
EXIT, DO, ENTER = 0, 1, 2


@dataclass(frozen=True, slots=True)
class BoundCall:
    name: str
    func: Callable[..., Any]
    params: Any
    label: str


@dataclass(frozen=True, slots=True)
class BoundTimer:
    event: str
    seconds: float | None  # fixed delay, or None when ``delay`` computes it
    delay: BoundCall | None
    label: str


class _State(State):
    """A state whose enter/exit run our step collectors and nothing else (the stock
    methods add a ``debug`` and an ``info`` log call around them).

    With ``_Transition`` below and ``_GraphMachine.callbacks``, the library's logging
    left on the hot path is two ``debug`` calls per event in ``Event.trigger``: level
    checks only, the ``transitions`` logger is at WARNING (``engine.log.configure``).
    Before, ~90 logger calls per digest registration, a few per cent of its CPU."""

    # The stub types the lists as names or callables; we only ever add callables.
    # (Annotated locals, not ``typing.cast``: a cast is a function call at run time.)
    def enter(self, event_data: Any) -> None:
        funcs: list[Callable[[Any], None]] = self.on_enter  # type: ignore[assignment]
        for func in funcs:
            func(event_data)

    def exit(self, event_data: Any) -> None:
        funcs: list[Callable[[Any], None]] = self.on_exit  # type: ignore[assignment]
        for func in funcs:
            func(event_data)


class _Transition(Transition):
    """``Transition.execute`` for what we build: conditions, ``before`` (our step
    collector), exit, state change, enter; or only conditions and ``before`` for an
    internal transition (no target). We never set ``prepare``/``after`` callbacks nor
    the machine-wide ``before_state_change``/``after_state_change``/``on_final``, so
    the stock method's other work was empty callback runs and four ``debug`` calls —
    for ~20 executions per digest registration (guards try candidates in order), 5-10 %
    of its CPU through the shipped machines."""

    def execute(self, event_data: Any) -> bool:
        for cond in self.conditions:
            # ``Condition.check`` less its callable lookup: ours are bound callables
            check: Callable[[Any], bool] = cond.func  # type: ignore[assignment]
            if check(event_data) != cond.target:
                return False
        before: list[Callable[[Any], None]] = self.before  # type: ignore[assignment]
        for func in before:
            func(event_data)
        if self.dest is None:  # an internal transition: actions only, no exit or enter
            return True
        machine = event_data.machine
        states = machine.states
        states[self.source].exit(event_data)
        machine.set_state(self.dest, event_data.model)
        dest = states[self.dest]
        event_data.state = dest
        dest.enter(event_data)
        return True


class _Event(Event):
    """``Event.trigger`` for what we build: try the source state's transitions in order
    until one is taken. The stock method wraps that in a partial, the machine's queue
    check, a state lookup through ``get_model_state``, a valid-source check (the runtime
    only posts events in ``handled[state]``), empty ``prepare_event``/``finalize_event``
    callback runs, two ``debug`` calls and an exception hook we never set: about a third
    of the library's time per step (cProfile), for the ~10 steps of a digest registration."""

    def trigger(self, model: Any, *args: Any, **kwargs: Any) -> bool:
        machine = self.machine
        source = model.state
        event_data = EventData(machine.states[source], self, machine, model, args, kwargs)
        for trans in self.transitions.get(source, ()):
            event_data.transition = trans
            if trans.execute(event_data):
                event_data.result = True
                return True
        return False


class _GraphMachine(Machine):
    """``transitions.Machine`` used as graph and guard evaluator for many models."""

    state_cls = _State
    transition_cls = _Transition
    event_cls = _Event

    def add_model(self, model: Any, initial: Any = None) -> None:
        # No convenience methods, no O(n) model list: the runtime owns instances.
        if model is None or model == []:
            return
        state = initial if initial is not None else self.initial
        assert state is not None  # CompiledMachine always names its initial state
        self.set_state(state, model)

    def remove_model(self, model: Any) -> None:
        return None

    # The four overrides below keep the library's semantics for what we build
    # (string state names, callables, ``send_event=True``) without its general
    # cases: name-or-Enum lookups, callback resolution from strings and dotted
    # paths, a log call per callback. ``transitions`` calls them ~100 times per
    # REGISTER; this halves its share of the registrar's CPU.
    def get_state(self, state: Any) -> Any:
        try:
            return self.states[state]
        except (KeyError, TypeError):
            return super().get_state(state)  # its ValueError for an unknown state

    def set_state(self, state: Any, model: Any = None) -> None:
        if model is not None and state in self.states:  # one model, a state name
            model.state = state
        else:
            super().set_state(state, model)

    def callbacks(self, funcs: Any, event_data: Any) -> None:
        for func in funcs:
            func(event_data)

    def callback(self, func: Any, event_data: Any) -> None:
        func(event_data)


def _bind(ref: CallRef, registry: Registry, bound: dict[Path, Any]) -> BoundCall:
    entry = registry.table(ref.kind)[ref.name]
    return BoundCall(ref.name, entry.func, bound[ref.path], ref.label())


def _guard_callable(call: BoundCall, negate: bool) -> Callable[[Any], bool]:
    func, params, label = call.func, call.params, call.label

    def check(event_data: Any) -> bool:
        inst = event_data.model
        try:
            result = bool(func(inst, params))
        except Exception as exc:  # a guard bug must not kill the instance
            inst.guard_failed(label, exc)
            result = False
        if negate:
            result = not result
        inst.guard_log.append((label, result))
        return result

    return check


def _step(phase: int, kind: str, payload: Any) -> Callable[[Any], None]:
    item = (phase, kind, payload)

    def collect(event_data: Any) -> None:
        event_data.model.steps.append(item)

    return collect


class CompiledMachine:
    """One loaded definition: graph, bound actions and timers, ready to run."""

    def __init__(self, defn: MachineDef, registry: Registry, bound: dict[Path, Any]):
        self.defn = defn
        self.name = defn.name
        self.version = defn.version
        self.label = defn.label
        self.initial = defn.initial
        self.on_failure = defn.on_failure
        self.final_states = frozenset(n for n, s in defn.states.items() if s.final)
        self.entry: dict[str, tuple[BoundCall, ...]] = {}
        self.exit: dict[str, tuple[BoundCall, ...]] = {}
        self.timers: dict[str, tuple[BoundTimer, ...]] = {}
        self.has_always: frozenset[str] = frozenset(
            n for n, s in defn.states.items() if s.always)
        self.handled: dict[str, frozenset[str]] = {}

        states = []
        for name, sdef in defn.states.items():
            self.entry[name] = tuple(_bind(r, registry, bound) for r in sdef.entry)
            self.exit[name] = tuple(_bind(r, registry, bound) for r in sdef.exit)
            self.timers[name] = tuple(
                BoundTimer(
                    t.event,
                    t.delay if isinstance(t.delay, float) else None,
                    _bind(t.delay, registry, bound) if isinstance(t.delay, CallRef) else None,
                    t.label(),
                )
                for t in sdef.timers
            )
            states.append(_State(name, on_enter=[_step(ENTER, "enter", name)],
                                 on_exit=[_step(EXIT, "exit", name)], final=sdef.final))

        # Invalid triggers raise (the library's default): the runtime takes only the
        # events in ``handled[state]``, so one reaching the library is an engine bug.
        self._machine = _GraphMachine(
            model=None, states=states, initial=defn.initial, auto_transitions=False,
            send_event=True, queued=False, name=defn.name,
        )
        handled: dict[str, set[str]] = {n: set() for n in defn.states}
        for sdef in defn.states.values():
            for t in sdef.transitions:
                self._add(t, sdef.name, registry, bound)
                handled[sdef.name].add(t.event)
        # machine-wide transitions come after each state's own, so those win
        for t in defn.global_transitions:
            for name, sdef in defn.states.items():
                if not sdef.final:
                    self._add(t, name, registry, bound)
                    handled[name].add(t.event)
        self.handled = {n: frozenset(evs) for n, evs in handled.items()}
        self.events = self._machine.events

    def _add(self, t: TransitionDef, source: str, registry: Registry,
             bound: dict[Path, Any]) -> None:
        # typed as add_transition takes them (the list type is invariant)
        conditions: list[str | Callable[..., bool | None]] = [
            _guard_callable(_bind(g, registry, bound), g.negate) for g in t.guards]
        before: list[str | Callable[..., bool | None]] = []
        if t.actions:
            before.append(_step(DO, "do", tuple(_bind(a, registry, bound) for a in t.actions)))
        self._machine.add_transition(
            t.event, source, t.target, conditions=conditions or None, before=before or None,
        )

    # ------------------------------------------------------------------ running
    def set_state(self, model: Any, state: str) -> None:
        self._machine.set_state(state, model)

    def trigger(self, model: Any, event: str) -> bool:
        """Let ``transitions`` take ``event`` for ``model``: guards, exit, set state, enter.

        ``Event.trigger`` on the event object, not a per-model trigger method: models get
        none (see ``_GraphMachine.add_model``). The machine is not ``queued`` (the runtime
        queues per instance), so this runs the step at once and returns whether a
        transition was taken."""
        return self.events[event].trigger(model)

    def __repr__(self) -> str:
        return f"<CompiledMachine {self.label}>"


__all__ = ["ALWAYS_EVENT", "DO", "ENTER", "EXIT", "BoundCall", "BoundTimer", "CompiledMachine"]
