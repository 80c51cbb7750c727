"""The normalised, immutable form of a machine file.

The YAML allows shorthands (a bare target name, a single transition or a list,
a bare action name or ``{action, params}``); ``normalise`` turns a
schema-valid document into these dataclasses, each remembering its JSON path
so later checks can point at the exact line.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass, field
from typing import Any

from engine.fsm.yamlload import Path

ALWAYS_EVENT = "always"


@dataclass(frozen=True)
class CallRef:
    """A reference to a registered action, guard or delay, with raw params."""

    kind: str  # action | guard | delay
    name: str
    params: dict[str, Any]
    path: Path
    negate: bool = False  # guards under `unless:`

    def label(self) -> str:
        text = self.name
        if self.params:
            # values only: "sip.reply(404, Not Found, unknown domain)" reads well on an edge
            inner = ", ".join(str(v) for v in self.params.values())
            if len(inner) > 48:
                inner = inner[:47] + "…"
            text += f"({inner})"
        return ("!" + text) if self.negate else text


@dataclass(frozen=True)
class TransitionDef:
    kind: str  # "on" | "always" | "after" | "global"
    event: str  # the trigger: an event name, "always", or "after.<state>.<i>"
    source: str  # state name, or "*" for machine-wide transitions
    target: str | None  # None = internal transition (actions only, no exit/entry)
    guards: tuple[CallRef, ...]
    actions: tuple[CallRef, ...]
    path: Path
    delay: float | CallRef | None = None  # for "after" timers
    description: str = ""

    def label(self) -> str:
        head = self.event
        if self.kind == "after":
            d = self.delay
            if isinstance(d, (int, float)):
                head = f"after {d:g}s"
            elif d is not None:
                head = f"after {d.label()}"
        elif self.kind == "always":
            head = ""
        parts = [head] if head else []
        if self.guards:
            parts.append("[" + " & ".join(g.label() for g in self.guards) + "]")
        text = " ".join(parts)
        if self.actions:
            text += " / " + ", ".join(a.label() for a in self.actions)
        return text


@dataclass(frozen=True)
class StateDef:
    name: str
    path: Path
    entry: tuple[CallRef, ...] = ()
    exit: tuple[CallRef, ...] = ()
    transitions: tuple[TransitionDef, ...] = ()  # "on" + "always" + "after", in file order
    final: bool = False
    description: str = ""

    @property
    def timers(self) -> tuple[TransitionDef, ...]:
        return tuple(t for t in self.transitions if t.kind == "after")

    @property
    def always(self) -> tuple[TransitionDef, ...]:
        return tuple(t for t in self.transitions if t.kind == "always")

    @property
    def handled_events(self) -> frozenset[str]:
        return frozenset(t.event for t in self.transitions if t.kind == "on")


@dataclass(frozen=True)
class MachineDef:
    name: str
    file: str
    version: str  # "<author version>+<content hash>"
    initial: str
    states: dict[str, StateDef]
    global_transitions: tuple[TransitionDef, ...] = ()
    inputs: tuple[str, ...] = ()
    on_failure: str | None = None
    description: str = ""
    paths: dict[str, Path] = field(default_factory=dict)  # top-level key → path

    @property
    def label(self) -> str:
        return f"{self.name}@{self.version}"

    def all_transitions(self) -> list[TransitionDef]:
        out = [t for s in self.states.values() for t in s.transitions]
        return out + list(self.global_transitions)


def content_version(author_version: Any, text: str) -> str:
    digest = hashlib.sha256(text.encode()).hexdigest()[:8]
    return f"{author_version}+{digest}" if author_version is not None else digest


def _refs(kind: str, raw: Any, path: Path) -> tuple[CallRef, ...]:
    if raw is None:
        return ()
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, item in enumerate(items):
        p = (*path, i) if isinstance(raw, list) else path
        if isinstance(item, str):
            out.append(CallRef(kind, item, {}, p))
        else:
            key = "action" if kind == "action" else "name"
            out.append(CallRef(kind, item[key], dict(item.get("params") or {}), p))
    return tuple(out)


def _guards(spec: dict[str, Any], path: Path) -> tuple[CallRef, ...]:
    guards = list(_refs("guard", spec.get("guard"), (*path, "guard")))
    for ref in _refs("guard", spec.get("unless"), (*path, "unless")):
        guards.append(CallRef("guard", ref.name, ref.params, ref.path, negate=True))
    return tuple(guards)


def _transitions(kind: str, event: str, source: str, raw: Any, path: Path
                 ) -> list[TransitionDef]:
    if isinstance(raw, str):
        return [TransitionDef(kind, event, source, raw, (), (), path)]
    items = raw if isinstance(raw, list) else [raw]
    out = []
    for i, spec in enumerate(items):
        p = (*path, i) if isinstance(raw, list) else path
        out.append(TransitionDef(
            kind, event, source, spec.get("target"), _guards(spec, p),
            _refs("action", spec.get("actions"), (*p, "actions")), p,
            description=spec.get("description", ""),
        ))
    return out


def normalise(data: dict[str, Any], file: str, text: str) -> MachineDef:
    """Schema-valid document → ``MachineDef``."""
    states: dict[str, StateDef] = {}
    for sname, state_raw in data["states"].items():
        spath: Path = ("states", sname)
        sraw = state_raw or {}
        trans: list[TransitionDef] = []
        for ev, spec in (sraw.get("on") or {}).items():
            trans += _transitions("on", ev, sname, spec, (*spath, "on", ev))
        if "always" in sraw:
            trans += _transitions("always", ALWAYS_EVENT, sname, sraw["always"],
                                  (*spath, "always"))
        for i, timer in enumerate(sraw.get("after") or []):
            tpath = (*spath, "after", i)
            d = timer["delay"]
            delay: float | CallRef = (
                float(d) if isinstance(d, (int, float))
                else CallRef("delay", d, dict(timer.get("params") or {}), (*tpath, "delay"))
            )
            trans.append(TransitionDef(
                "after", f"after.{sname}.{i}", sname, timer["target"], (),
                _refs("action", timer.get("actions"), (*tpath, "actions")), tpath,
                delay=delay, description=timer.get("description", ""),
            ))
        states[sname] = StateDef(
            name=sname, path=spath,
            entry=_refs("action", sraw.get("entry"), (*spath, "entry")),
            exit=_refs("action", sraw.get("exit"), (*spath, "exit")),
            transitions=tuple(trans), final=bool(sraw.get("final", False)),
            description=sraw.get("description", ""),
        )
    global_trans: list[TransitionDef] = []
    for ev, spec in (data.get("on") or {}).items():
        global_trans += _transitions("global", ev, "*", spec, ("on", ev))
    return MachineDef(
        name=data["machine"], file=file,
        version=content_version(data.get("version"), text),
        initial=data["initial"], states=states, global_transitions=tuple(global_trans),
        inputs=tuple(data.get("inputs") or ()), on_failure=data.get("on_failure"),
        description=data.get("description", ""),
        paths={k: (k,) for k in data},
    )
