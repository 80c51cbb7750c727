"""Per-instance execution trace: what happened, in which state, and why.

The trace is what `dragonpbx render --trace`, the logs (one debug line per step)
and later the HTTP API show for a call. It is bounded so a long call cannot grow
memory without limit; the first entries (how the call began) and the last ones
(what it is doing now) are the useful ones, so when full the oldest *middle*
entries are dropped.

Entries are compact (several live per call, thousands of calls live at once):
guard names and action labels are the compiled machine's shared strings, guard
results are bits of one int, and nothing is stored for what did not happen.
"""

from __future__ import annotations

from typing import Any

MAX_ENTRIES = 200
KEEP_HEAD = 20


class TraceEntry:
    __slots__ = ("actions", "duration_us", "event", "failed", "guard_bits", "guards", "note",
                 "source", "target", "time")

    def __init__(self, time: float, source: str, target: str, event: str,
                 guards: tuple[str, ...] | None = None, guard_bits: int = 0,
                 actions: tuple[str, ...] | None = None, failed: str | None = None,
                 duration_us: float = 0.0, note: str | None = None):
        self.time = time  # wall clock, seconds
        self.source = source
        self.target = target
        self.event = event
        self.guards = guards  # labels of the guards evaluated, in order
        self.guard_bits = guard_bits  # bit i = result of guards[i]
        self.actions = actions  # labels of the actions that ran and succeeded
        self.failed = failed  # "label: error" of the action that failed, if one did
        self.duration_us = duration_us
        self.note = note  # "ignored", "no transition (guards false)", "killed: …"

    def guard_results(self) -> list[tuple[str, bool]]:
        return [(g, bool(self.guard_bits >> i & 1)) for i, g in enumerate(self.guards or ())]

    def to_dict(self, machine: str = "") -> dict[str, Any]:
        out: dict[str, Any] = {
            "time": round(self.time, 6), "from": self.source, "to": self.target,
            "event": self.event, "duration_us": round(self.duration_us, 1),
        }
        if machine:
            out["machine"] = machine
        if self.guards:
            out["guards"] = [{"guard": g, "result": r} for g, r in self.guard_results()]
        if self.actions or self.failed:
            acts = [{"action": a, "outcome": "ok"} for a in self.actions or ()]
            if self.failed:
                label, _, error = self.failed.partition(": ")
                acts.append({"action": label, "outcome": f"error: {error}"})
            out["actions"] = acts
        if self.note:
            out["note"] = self.note
        return out

    def __str__(self) -> str:
        guards = " ".join(f"[{g}={'T' if r else 'F'}]" for g, r in self.guard_results())
        acts = list(self.actions or ())
        if self.failed:
            label, _, error = self.failed.partition(": ")
            acts.append(f"{label}!error: {error}")
        text = f"{self.source} --{self.event}"
        if guards:
            text += f" {guards}"
        text += f"--> {self.target}"
        if acts:
            text += " / " + ", ".join(acts)
        if self.note:
            text += f"  ({self.note})"
        return text


class Trace:
    __slots__ = ("dropped", "entries", "machine")

    def __init__(self, machine: str = "") -> None:
        self.entries: list[TraceEntry] = []
        self.dropped = 0
        self.machine = machine  # name@version of the instance's machine

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
        return [e.to_dict(self.machine) for e in self.entries]
