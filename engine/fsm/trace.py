"""Per-instance execution trace: what happened, in which state, and why.

The trace is what `dragonpbx trace`, the HTTP API and the diagram renderer
(highlighting a live call's path) show. It is bounded so a long call cannot
grow memory without limit; the first entries (how the call began) and the
last ones (what it is doing now) are the useful ones, so when full the oldest
*middle* entries are dropped.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

MAX_ENTRIES = 200
KEEP_HEAD = 20


@dataclass(slots=True)
class TraceEntry:
    time: float  # wall clock, seconds
    machine: str  # name@version
    source: str
    target: str
    event: str
    guards: list[tuple[str, bool]] = field(default_factory=list)
    actions: list[tuple[str, str]] = field(default_factory=list)  # (name, "ok" | "error: …")
    duration_us: float = 0.0
    note: str = ""  # "ignored", "no transition", "action failed", "killed", …

    def to_dict(self) -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": round(self.time, 6), "machine": self.machine, "from": self.source,
            "to": self.target, "event": self.event,
            "duration_us": round(self.duration_us, 1),
        }
        if self.guards:
            out["guards"] = [{"guard": g, "result": r} for g, r in self.guards]
        if self.actions:
            out["actions"] = [{"action": a, "outcome": o} for a, o in self.actions]
        if self.note:
            out["note"] = self.note
        return out

    def __str__(self) -> str:
        guards = " ".join(f"[{g}={'T' if r else 'F'}]" for g, r in self.guards)
        acts = ", ".join(a if o == "ok" else f"{a}!{o}" for a, o in self.actions)
        text = f"{self.source} --{self.event}"
        if guards:
            text += f" {guards}"
        text += f"--> {self.target}"
        if acts:
            text += f" / {acts}"
        if self.note:
            text += f"  ({self.note})"
        return text


class Trace:
    __slots__ = ("dropped", "entries")

    def __init__(self) -> None:
        self.entries: list[TraceEntry] = []
        self.dropped = 0

    def add(self, entry: TraceEntry) -> TraceEntry:
        entries = self.entries
        if len(entries) >= MAX_ENTRIES:
            del entries[KEEP_HEAD]
            self.dropped += 1
        entries.append(entry)
        return entry

    def __iter__(self):  # type: ignore[no-untyped-def]
        return iter(self.entries)

    def __len__(self) -> int:
        return len(self.entries)

    def path(self) -> list[str]:
        """States visited, in order (for highlighting a diagram)."""
        if not self.entries:
            return []
        out = [self.entries[0].source]
        for e in self.entries:
            if e.target != out[-1]:
                out.append(e.target)
        return out

    def to_list(self) -> list[dict[str, Any]]:
        return [e.to_dict() for e in self.entries]
