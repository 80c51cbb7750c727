"""Semantic checks of a machine definition (after JSON Schema validation).

Every finding is a Diagnostic with a code; the codes are documented in the
README ("Machine diagnostics") and each has an invalid fixture under
tests/unit/fsm/invalid/. Errors stop the machine from loading; warnings are
printed by `dragonpbx validate` but do not.

    E010 unknown action          E020 unknown target state     E030 unreachable state
    E011 unknown guard           E021 unknown initial state    E031 dead end (no way out)
    E012 unknown delay           E022 unknown on_failure state E032 waits without a timeout
    E013 bad parameters          E023 final state with exits   E033 unhandled outcome
    E014 variables the machine does not have (the callable's ``ctx: Ctx[V]``)
    E040 event nobody emits      E041 undeclared input         W042 input never handled
    W060 `always` without a fallback                            W061 shadowed transition
"""

from __future__ import annotations

import dataclasses
import difflib
from collections.abc import Iterable
from types import UnionType
from typing import Any, Union, get_args, get_origin

import jsonschema

from engine.fsm.definition import CallRef, MachineDef, StateDef, TransitionDef
from engine.fsm.params import build
from engine.fsm.registry import BUILTIN_EVENTS, Entry, Registry
from engine.fsm.yamlload import LoadedDocument, Path


def _suggest(name: str, candidates: Iterable[str]) -> str:
    close = difflib.get_close_matches(name, list(candidates), n=1, cutoff=0.6)
    return f" (did you mean {close[0]!r}?)" if close else ""


class Checker:
    def __init__(self, defn: MachineDef, doc: LoadedDocument, registry: Registry):
        self.defn = defn
        self.doc = doc
        self.registry = registry
        self.bound: dict[Path, object] = {}  # ref path → built params instance

    # ---------------------------------------------------------------- helpers
    def err(self, code: str, path: Path, msg: str) -> None:
        self.doc.diag(code, path, msg, "error")

    def err_key(self, code: str, path: Path, msg: str) -> None:
        self.doc.diag(code, path, msg, "error", key=True)

    def warn(self, code: str, path: Path, msg: str) -> None:
        self.doc.diag(code, path, msg, "warning")

    def refs(self) -> Iterable[CallRef]:
        for state in self.defn.states.values():
            yield from state.entry
            yield from state.exit
        for t in self.defn.all_transitions():
            yield from t.guards
            yield from t.actions
            if isinstance(t.delay, CallRef):
                yield t.delay

    def entry_of(self, ref: CallRef) -> Entry | None:
        return self.registry.table(ref.kind).get(ref.name)

    # ---------------------------------------------------------------- checks
    def run(self) -> None:
        self.check_refs()
        self.check_targets()
        self.check_reachability()
        self.check_waits_and_outcomes()
        self.check_events()
        self.check_shadowing()

    def check_refs(self) -> None:
        codes = {"action": "E010", "guard": "E011", "delay": "E012"}
        for ref in self.refs():
            entry = self.entry_of(ref)
            if entry is None:
                table = self.registry.table(ref.kind)
                self.err(codes[ref.kind], ref.path,
                         f"unknown {ref.kind} {ref.name!r}{_suggest(ref.name, table)}")
                continue
            self.check_vars(ref, entry)
            schema = entry.params_schema
            errors = sorted(jsonschema.Draft202012Validator(schema).iter_errors(ref.params),
                            key=lambda e: list(e.absolute_path))
            if errors:
                for e in errors:
                    path = list(e.absolute_path)
                    message = e.message
                    if e.validator == "additionalProperties" and isinstance(e.instance, dict):
                        allowed = set(e.schema.get("properties", {}))
                        extra = [k for k in e.instance if k not in allowed]
                        if extra:
                            path.append(extra[0])
                            message = (f"unknown parameter{_suggest(extra[0], allowed)}; "
                                       f"allowed: {', '.join(sorted(allowed)) or 'none'}")
                    where = ".".join(str(p) for p in path) or "(params)"
                    self.err_key("E013", (*_param_path(ref), *path),
                                 f"{ref.kind} {ref.name}: parameter {where}: {message}")
                continue
            try:
                self.bound[ref.path] = build(entry.params, ref.params)
            except (TypeError, ValueError) as exc:
                self.err("E013", _param_path(ref), f"{ref.kind} {ref.name}: {exc}")

    def check_vars(self, ref: CallRef, entry: Entry) -> None:
        """The callable works on variables this machine's instances have: its context's
        vars type is the machine's vars dataclass or a base of it, or a Protocol whose
        fields the machine's dataclass all has."""
        try:
            wanted = entry.vars_type
        except TypeError as exc:
            self.err("E014", ref.path, f"{ref.kind} {ref.name}: {exc}")
            return
        if wanted is Any:
            return
        have = self.registry.vars_types.get(self.defn.name)
        if have is None:
            return  # a machine without declared variables (only the fsm tests' ad-hoc ones)
        # a union (``Ctx[CallVars | VerbVars]``): the machine's variables fit one of them
        options = get_args(wanted) if get_origin(wanted) in (Union, UnionType) else (wanted,)
        if any(isinstance(o, type) and not getattr(o, "_is_protocol", False)
               and issubclass(have, o) for o in options):
            return
        protocols = [o for o in options if getattr(o, "_is_protocol", False)]
        fields = {f.name for f in dataclasses.fields(have)}
        missing = [sorted(n for n in _protocol_fields(o) if n not in fields) for o in protocols]
        if any(not m for m in missing):
            return
        if len(options) == 1 and missing:
            self.err("E014", ref.path,
                     f"{ref.kind} {ref.name} uses variable(s) {', '.join(missing[0])}, which "
                     f"{have.__name__} (machine {self.defn.name!r}) does not have")
        else:
            self.err("E014", ref.path,
                     f"{ref.kind} {ref.name} works on {' or '.join(map(_name, options))}, not "
                     f"on {have.__name__} (the variables of machine {self.defn.name!r})")

    def check_targets(self) -> None:
        names = self.defn.states
        if self.defn.initial not in names:
            self.err("E021", ("initial",),
                     f"initial state {self.defn.initial!r} is not defined"
                     f"{_suggest(self.defn.initial, names)}")
        if self.defn.on_failure and self.defn.on_failure not in names:
            self.err("E022", ("on_failure",),
                     f"on_failure state {self.defn.on_failure!r} is not defined"
                     f"{_suggest(self.defn.on_failure, names)}")
        for t in self.defn.all_transitions():
            if t.target is not None and t.target not in names:
                tpath = (*t.path, "target")
                self.err("E020", tpath if tpath in self.doc.marks else t.path,
                         f"target state {t.target!r} is not defined{_suggest(t.target, names)}")
        for state in self.defn.states.values():
            if state.final and state.transitions:
                self.err("E023", state.path, f"final state {state.name!r} has transitions")

    def successors(self, state: StateDef) -> set[str]:
        out = {t.target for t in state.transitions if t.target}
        if not state.final:
            out |= {t.target for t in self.defn.global_transitions if t.target}
        if self.defn.on_failure and not state.final:
            out.add(self.defn.on_failure)
        return {s for s in out if s in self.defn.states}

    def check_reachability(self) -> None:
        if self.defn.initial not in self.defn.states:
            return
        seen = {self.defn.initial}
        todo = [self.defn.initial]
        while todo:
            for nxt in self.successors(self.defn.states[todo.pop()]):
                if nxt not in seen:
                    seen.add(nxt)
                    todo.append(nxt)
        for name, state in self.defn.states.items():
            if name not in seen:
                self.err("E030", state.path, f"state {name!r} is unreachable from "
                         f"{self.defn.initial!r}")

    def handled(self, state: StateDef) -> set[str]:
        out = set(state.handled_events)
        if not state.final:
            out |= {t.event for t in self.defn.global_transitions}
        return out

    def check_waits_and_outcomes(self) -> None:
        for state in self.defn.states.values():
            if state.final:
                continue
            exits = [t for t in state.transitions if t.target is not None]
            exits += [t for t in self.defn.global_transitions if t.target is not None]
            if not exits:
                self.err("E031", state.path,
                         f"state {state.name!r} is not final and has no transition out")
                continue
            handled = self.handled(state)
            guaranteed = set()
            for ref in state.entry:
                entry = self.entry_of(ref)
                if entry is None:
                    continue
                missing = [o for o in entry.outcomes if o not in handled]
                for o in missing:
                    self.err("E033", ref.path,
                             f"{ref.name} can finish with {o!r} but state {state.name!r} "
                             "has no transition for it")
                guaranteed |= set(entry.outcomes)
            # the initial state waits for the spawner's first event, which always comes
            if state.name != self.defn.initial and not (
                    state.timers or state.always or guaranteed & handled):
                self.err("E032", state.path,
                         f"state {state.name!r} waits for events that may never come: add an "
                         "`after:` timeout (or start work whose outcome it handles)")
        for t in self.defn.all_transitions():
            dest = self.defn.states.get(t.target or t.source)
            if dest is None or not t.actions:
                continue
            handled = self.handled(dest)
            for ref in t.actions:
                entry = self.entry_of(ref)
                if entry is None:
                    continue
                for o in entry.outcomes:
                    if o not in handled:
                        self.err("E033", ref.path,
                                 f"{ref.name} can finish with {o!r} but state {dest.name!r} "
                                 "has no transition for it")

    def check_events(self) -> None:
        declared = self.registry.input_events()
        for i, ev in enumerate(self.defn.inputs):
            if ev not in declared:
                self.err("E041", ("inputs", i),
                         f"input {ev!r} is not delivered by any adapter{_suggest(ev, declared)}")
        emitted = set(BUILTIN_EVENTS) | set(self.defn.inputs)
        for ref in self.refs():
            entry = self.entry_of(ref)
            if entry is not None and ref.kind == "action":
                emitted |= set(entry.emitted(self.bound.get(ref.path)))
        used: set[str] = set()
        for t in self.defn.all_transitions():
            if t.kind not in ("on", "global"):
                continue
            used.add(t.event)
            if t.event not in emitted:
                self.err_key("E040", t.path[:4] if t.kind == "on" else t.path[:2],
                         f"no input or action of this machine emits {t.event!r}"
                         f"{_suggest(t.event, emitted)}")
        for i, ev in enumerate(self.defn.inputs):
            if ev not in used:
                self.warn("W042", ("inputs", i), f"input {ev!r} is never handled")

    def check_shadowing(self) -> None:
        for state in self.defn.states.values():
            groups: dict[str, list[TransitionDef]] = {}
            for t in state.transitions:
                if t.kind in ("on", "always"):
                    groups.setdefault(t.event, []).append(t)
            for event, ts in groups.items():
                for i, t in enumerate(ts[:-1]):
                    if not t.guards:
                        self.warn("W061", ts[i + 1].path,
                                  f"never taken: an earlier transition for {event!r} has no "
                                  "guard")
                        break
            if state.always and state.always[-1].guards:
                self.warn("W060", state.always[-1].path,
                          f"state {state.name!r}: no `always` branch without a guard, so the "
                          "machine may wait here")


def _name(tp: Any) -> str:
    return getattr(tp, "__name__", repr(tp))


def _protocol_fields(proto: type) -> set[str]:
    """Names a vars Protocol declares (annotations of it and its Protocol bases)."""
    names: set[str] = set()
    for klass in proto.__mro__:
        if getattr(klass, "_is_protocol", False):
            names.update(vars(klass).get("__annotations__", {}))
    return names


def _param_path(ref: CallRef) -> Path:
    return (*ref.path, "params") if ref.params else ref.path


def check(defn: MachineDef, doc: LoadedDocument, registry: Registry) -> dict[Path, object]:
    """Run every check, adding diagnostics to ``doc``; return the built params by ref path."""
    checker = Checker(defn, doc, registry)
    checker.run()
    return checker.bound
