"""Live and recently ended calls, as the HTTP API shows them.

A call is an ``inbound_call`` instance with the instances below it (verbs, legs,
relays). Live calls are read from the runtime when asked. When a call's
instance ends it is kept — with the instances that ended under it — for
``API_RECENT_CALLS_SECS`` (at most ``API_RECENT_CALLS_MAX`` calls, oldest
dropped first), so a failed call can be inspected after the fact. An ended
instance keeps its state, result and trace (``Instance._release_peers``), so
nothing is copied when a call ends; the JSON is built only when asked for.
"""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import Callable, Iterable
from typing import Any

from engine.api.metrics import CALL_MACHINE
from engine.fsm.runtime import Instance

LEG_MACHINE = "call_leg"


def root_of(inst: Instance) -> Instance:
    while inst.parent is not None:
        inst = inst.parent
    return inst


class EndedCall:
    __slots__ = ("ended", "instances", "root")

    def __init__(self, root: Instance, instances: list[Instance], ended: float):
        self.root = root
        self.instances = instances  # root first, then the others in the order they ended
        self.ended = ended


class CallBook:
    """Finds live calls and remembers ended ones (a runtime finish observer)."""

    def __init__(self, runtime: Any, *, keep_secs: float, keep_max: int,
                 clock: Callable[[], float] = time.time):
        self.runtime = runtime
        self.keep_secs = keep_secs
        self.keep_max = keep_max
        self.clock = clock
        self.recent: OrderedDict[str, EndedCall] = OrderedDict()  # by Call-ID, oldest first
        self._ended_below: dict[str, list[Instance]] = {}  # call instance id → ended children

    # ------------------------------------------------------------------ observer
    def instance_finished(self, inst: Instance) -> None:
        parent = inst.parent
        if parent is None:
            if inst.machine.name == CALL_MACHINE:
                self._call_ended(inst)
            return
        root = root_of(parent)
        if root.machine.name == CALL_MACHINE:
            self._ended_below.setdefault(root.id, []).append(inst)

    def _call_ended(self, root: Instance) -> None:
        below = self._ended_below.pop(root.id, [])
        if self.keep_max <= 0 or self.keep_secs <= 0:
            return
        call_id = call_id_of(root)
        if call_id is None:
            return
        self.recent.pop(call_id, None)  # a re-sent INVITE (after a challenge) replaces
        self.recent[call_id] = EndedCall(root, [root, *below], self.clock())
        self._expire()

    def _expire(self) -> None:
        cutoff = self.clock() - self.keep_secs
        recent = self.recent
        while recent and (len(recent) > self.keep_max
                          or next(iter(recent.values())).ended < cutoff):
            recent.popitem(last=False)

    # ------------------------------------------------------------------ queries
    def live_calls(self) -> list[tuple[Instance, list[Instance]]]:
        """Every live call: (call instance, [call instance, live and ended instances
        below it]), oldest first."""
        below: dict[str, list[Instance]] = {}
        roots: list[Instance] = []
        for inst in list(self.runtime.live.values()):
            if inst.parent is None:
                if inst.machine.name == CALL_MACHINE:
                    roots.append(inst)
                continue
            below.setdefault(root_of(inst.parent).id, []).append(inst)
        roots.sort(key=lambda i: i.created)
        return [(r, [r, *self._ended_below.get(r.id, []), *below.get(r.id, [])])
                for r in roots]

    def ended_calls(self) -> list[EndedCall]:
        self._expire()
        return list(reversed(self.recent.values()))  # newest first

    def find(self, call_id: str) -> tuple[Instance, list[Instance], EndedCall | None] | None:
        for root, instances in self.live_calls():
            if call_id_of(root) == call_id:
                return root, instances, None
        self._expire()
        ended = self.recent.get(call_id)
        if ended is not None:
            return ended.root, ended.instances, ended
        return None


# ---------------------------------------------------------------------- JSON views
def call_id_of(inst: Instance) -> str | None:
    req = getattr(inst.vars, "req", None)
    return getattr(req, "call_id", None)


def _uri_user(req: Any, which: str) -> str | None:
    try:
        msg = req.message
        uri = msg.request_uri if which == "ruri" else getattr(msg, which).uri
        return uri.user
    except Exception:  # an unparsable header must not break a listing
        return None


def _domain(inst: Instance) -> str | None:
    domain = getattr(inst.vars, "domain", None)
    if domain is not None:
        return str(domain)
    req = getattr(inst.vars, "req", None)
    try:
        return str(req.message.request_uri.host) if req is not None else None
    except Exception:
        return None


def instance_view(inst: Instance, *, trace: bool) -> dict[str, Any]:
    out: dict[str, Any] = {
        "id": inst.id, "machine": inst.machine.name, "version": inst.machine.version,
        "state": inst.state, "status": inst.status,
        "parent": inst.parent.id if inst.parent is not None else None,
    }
    if trace:
        out["trace"] = inst.trace.to_list()
        out["trace_dropped"] = inst.trace.dropped
    return out


def _leg_view(inst: Instance) -> dict[str, Any]:
    v = inst.vars
    dialog = getattr(v, "dialog", None)
    return {"role": "B", "instance": inst.id, "state": inst.state, "status": inst.status,
            "destination": getattr(v, "dest_text", None),
            "call_id": getattr(dialog, "call_id", None)}


def call_view(root: Instance, instances: Iterable[Instance], ended: EndedCall | None, *,
              trace: bool = False) -> dict[str, Any]:
    """One call as the API returns it (``trace``: with every instance's trace)."""
    req = getattr(root.vars, "req", None)
    insts = list(instances)
    # the caller's dialog is in the call's shared record (engine.machine_vars.CallShared)
    a_dialog = getattr(getattr(root.vars, "call", None), "a_dialog", None)
    a_state = ("answered" if a_dialog is not None and getattr(a_dialog, "connected", False)
               else "final sent" if req is not None and req.final_sent else "ringing")
    legs: list[dict[str, Any]] = [{"role": "A", "instance": root.id,
                                   "state": a_state if ended is None else "ended",
                                   "status": root.status, "destination": None,
                                   "call_id": call_id_of(root)}]
    legs += [_leg_view(i) for i in insts if i.machine.name == LEG_MACHINE]
    return {
        "call_id": call_id_of(root),
        "domain": _domain(root),
        "from": _uri_user(req, "from_") if req is not None else None,
        "to": getattr(root.vars, "dialled", None) or (
            _uri_user(req, "ruri") if req is not None else None),
        "started": round(root.created, 3),
        "live": ended is None,
        "ended": round(ended.ended, 3) if ended is not None else None,
        "outcome": None if ended is None else f"{root.state} ({root.status})",
        "instances": [instance_view(i, trace=trace) for i in insts],
        "legs": legs,
    }


__all__ = ["CallBook", "call_view", "instance_view"]
