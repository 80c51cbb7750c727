"""Named actions, guards and delays that machine files may refer to.

Python code declares them with decorators::

    @action(params=ReplyParams, emits=())
    async def reply(ctx, p: ReplyParams) -> None: ...      # in engine/actions/sip.py → "sip.reply"

    @guard()
    def has_sdp(ctx, p) -> bool: ...                       # → "sip.has_sdp"

    @delay(params=HalfExpiry)
    def half_granted_expiry(ctx, p) -> float: ...          # → "reg.half_granted_expiry"

The registered name is ``<last module component>.<function name>`` so grep
finds the code from the YAML and the YAML from the code. ``emits`` lists the
events the action can cause (directly or through work it starts), which the
linter uses to check that every ``on:`` event can actually happen and that
every outcome of started work is handled.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any

from engine.fsm.params import NoParams, schema_for

EmitsSpec = tuple[str, ...] | Callable[[Any], Iterable[str]]


@dataclass(frozen=True)
class Entry:
    kind: str  # "action" | "guard" | "delay"
    name: str
    func: Callable[..., Any]
    params: type
    emits: EmitsSpec = ()
    doc: str = ""
    # events every started outcome can produce and that a waiting state must handle
    outcomes: tuple[str, ...] = ()

    @property
    def params_schema(self) -> dict[str, Any]:
        return schema_for(self.params)

    def emitted(self, params: Any) -> tuple[str, ...]:
        if callable(self.emits):
            return tuple(self.emits(params))
        return tuple(self.emits)


@dataclass
class EventSource:
    """Events an adapter (not an action) delivers to machines, e.g. the SIP dispatcher."""

    name: str
    events: frozenset[str]
    doc: str = ""


@dataclass
class Registry:
    actions: dict[str, Entry] = field(default_factory=dict)
    guards: dict[str, Entry] = field(default_factory=dict)
    delays: dict[str, Entry] = field(default_factory=dict)
    sources: dict[str, EventSource] = field(default_factory=dict)

    # ------------------------------------------------------------------ declaring
    def _add(self, table: dict[str, Entry], entry: Entry) -> None:
        existing = table.get(entry.name)
        if existing is not None and existing.func is not entry.func:
            raise ValueError(f"{entry.kind} {entry.name!r} registered twice")
        table[entry.name] = entry

    def action(self, *, name: str | None = None, params: type = NoParams,
               emits: EmitsSpec = (), outcomes: Iterable[str] = ()) -> Callable:
        def deco(func: Callable) -> Callable:
            if not inspect.iscoroutinefunction(func):
                raise TypeError(f"action {func.__qualname__} must be async")
            self._add(self.actions, Entry("action", name or _default_name(func), func,
                                          _check_params(params), emits,
                                          inspect.getdoc(func) or "", tuple(outcomes)))
            return func
        return deco

    def guard(self, *, name: str | None = None, params: type = NoParams) -> Callable:
        def deco(func: Callable) -> Callable:
            if inspect.iscoroutinefunction(func):
                raise TypeError(f"guard {func.__qualname__} must be synchronous")
            self._add(self.guards, Entry("guard", name or _default_name(func), func,
                                         _check_params(params), (), inspect.getdoc(func) or ""))
            return func
        return deco

    def delay(self, *, name: str | None = None, params: type = NoParams) -> Callable:
        def deco(func: Callable) -> Callable:
            self._add(self.delays, Entry("delay", name or _default_name(func), func,
                                         _check_params(params), (), inspect.getdoc(func) or ""))
            return func
        return deco

    def declare_events(self, source: str, events: Iterable[str], doc: str = "") -> None:
        """An adapter announces the events it delivers to machines (``inputs:``)."""
        prev = self.sources.get(source)
        evs = frozenset(events) | (prev.events if prev else frozenset())
        self.sources[source] = EventSource(source, evs, doc or (prev.doc if prev else ""))

    # ------------------------------------------------------------------ reading
    def input_events(self) -> frozenset[str]:
        out: set[str] = set()
        for src in self.sources.values():
            out |= src.events
        return frozenset(out)

    def table(self, kind: str) -> dict[str, Entry]:
        return {"action": self.actions, "guard": self.guards, "delay": self.delays}[kind]

    def describe(self) -> dict[str, Any]:
        """Everything registered, with parameter schemas (for docs and `dragonpbx actions`)."""
        def rows(table: dict[str, Entry]) -> list[dict[str, Any]]:
            return [
                {"name": e.name, "doc": e.doc.splitlines()[0] if e.doc else "",
                 "params": e.params_schema,
                 "emits": list(e.emits) if not callable(e.emits) else "(depends on params)"}
                for e in sorted(table.values(), key=lambda e: e.name)
            ]
        return {"actions": rows(self.actions), "guards": rows(self.guards),
                "delays": rows(self.delays),
                "inputs": {s.name: sorted(s.events) for s in self.sources.values()}}


def _default_name(func: Callable) -> str:
    module = func.__module__.rsplit(".", 1)[-1]
    return f"{module}.{func.__name__}"


def _check_params(cls: type) -> type:
    if not dataclasses.is_dataclass(cls):
        raise TypeError(f"params {cls!r} must be a dataclass")
    schema_for(cls)  # fails early on unsupported field types
    return cls


# The process-wide registry the shipped actions register into.
REGISTRY = Registry()
action = REGISTRY.action
guard = REGISTRY.guard
delay = REGISTRY.delay
declare_events = REGISTRY.declare_events

# Events the interpreter itself produces.
BUILTIN_EVENTS = frozenset({"action.error"})
