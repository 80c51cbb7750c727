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

Each machine's instance variables are a dataclass declared for it::

    @machine_vars("registration")
    @dataclass(slots=True, kw_only=True)
    class RegistrationVars(RequestVars): ...

and an action says which variables it works on by its context annotation
(``ctx: Ctx[RegistrationVars]``, see ``engine.actions._context``). The loader
refuses (E014) a machine that uses an action whose variables it does not have.
"""

from __future__ import annotations

import dataclasses
import inspect
from collections.abc import Callable, Iterable
from dataclasses import dataclass, field
from typing import Any, TypeVar, get_args

from engine.fsm.params import NoParams, schema_for

_T = TypeVar("_T")
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

    @property
    def vars_type(self) -> Any:
        """``V`` of the callable's ``ctx: Ctx[V]`` annotation: the variables it reads and
        writes (a vars dataclass, or a Protocol naming the fields it needs); ``Any`` for
        a callable that uses none or is not annotated."""
        return ctx_vars_type(self.func)


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
    vars_types: dict[str, type] = field(default_factory=dict)  # machine name → its vars

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

    def machine_vars(self, machine: str) -> Callable[[_T], _T]:
        """Class decorator: ``machine``'s instances keep their variables in this dataclass
        (the runtime builds it from the spawn's ``vars``; an unknown name is refused)."""
        def deco(cls: _T) -> _T:
            if not (isinstance(cls, type) and dataclasses.is_dataclass(cls)):
                raise TypeError(f"vars of {machine!r} must be a dataclass, not {cls!r}")
            prev = self.vars_types.get(machine)
            if prev is not None and prev is not cls:
                raise ValueError(f"vars of machine {machine!r} declared twice")
            self.vars_types[machine] = cls
            return cls
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


_VARS_CACHE: dict[Callable[..., Any], Any] = {}


def ctx_vars_type(func: Callable[..., Any]) -> Any:
    """``V`` in ``def f(ctx: Ctx[V], p)``, or ``Any``. Annotations are strings (modules use
    ``from __future__ import annotations``); the context's is evaluated in the function's
    module, which imports ``Ctx`` and the vars class (a TYPE_CHECKING-only name there is
    a definition error, reported when a machine is checked)."""
    if func in _VARS_CACHE:
        return _VARS_CACHE[func]
    params = list(inspect.signature(func).parameters)
    ann = func.__annotations__.get(params[0]) if params else None
    if isinstance(ann, str):
        try:
            ann = eval(ann, func.__globals__)  # what typing.get_type_hints does, for one name
        except NameError as exc:
            raise TypeError(f"{func.__qualname__}: context annotation {ann!r}: {exc}") from None
    args = get_args(ann)
    found = args[0] if args else Any
    _VARS_CACHE[func] = found
    return found


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
machine_vars = REGISTRY.machine_vars

# Events the interpreter itself produces.
BUILTIN_EVENTS = frozenset({"action.error"})
