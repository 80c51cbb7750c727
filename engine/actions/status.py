"""``status.*``: StatusHook events (spec §8), sent asynchronously so a slow receiver
never delays a call. The URL is the matched dialplan entry's statusHook; ``label``
is the verb's ``statusLabel`` (``false`` suppresses the verb's events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.actions._context import Ctx
from engine.config.matching import DialplanMatch
from engine.errors import SipError
from engine.fsm import action
from engine.hooks.payloads import UNSET
from engine.machine_vars import (
    AnnounceVars,
    CallVars,
    ConnectVars,
    LegVars,
    PauseVars,
    ResponseVars,
)

_ON_A_VERB = (AnnounceVars, ConnectVars, PauseVars, ResponseVars, LegVars)


def _call_of(v: object) -> tuple[DialplanMatch | None, str | None, Any]:
    """(the call's dialplan entry, its Call-ID, the verb's statusLabel) for the variables
    of the session, a verb or a call leg."""
    if isinstance(v, CallVars):
        return v.route, v.req.call_id, UNSET
    if isinstance(v, _ON_A_VERB):
        return v.call.route, v.call.req.call_id, v.verb.status_label
    return None, None, UNSET


@dataclass(frozen=True)
class SendParams:
    event: str = field(metadata={"doc": "event name, e.g. connect:answered"})
    endedby: Literal["A", "B"] | None = None
    status: int | None = field(default=None, metadata={
        "doc": "with reason: the event's error when the machine itself ended the attempt "
               "(no SIP response carries one)"})
    reason: str | None = None


def _extra(ctx: Ctx[object], p: SendParams) -> dict[str, Any]:
    out: dict[str, Any] = {}
    v = ctx.vars
    if isinstance(v, LegVars):
        out["dest"] = v.dest_text
        out["index"] = v.index
    data = ctx.event.data
    for key in ("error", "duration"):
        if data.get(key) is not None:
            out[key] = data[key]
    req = data.get("req")
    if req is not None:  # a received request: its method, headers and body (spec §8)
        out["req"] = {"method": req.method, "headers": req.message.headers, "body": req.body}
    if p.endedby is not None:
        out["endedby"] = p.endedby
    if p.status is not None and "error" not in out:
        out["error"] = SipError(p.status, p.reason or "")
    if p.event.startswith("pause:") and isinstance(v, PauseVars):
        out["duration"] = v.verb.duration
    if p.event == "playback:complete" and isinstance(v, AnnounceVars) \
            and v.duration_ms is not None:
        out["duration"] = v.duration_ms
    return out


def emit(ctx: Ctx[object], event: str, **extra: Any) -> None:
    """Send ``event`` for the call ``ctx`` belongs to (no-op without a statusHook)."""
    route, call_id, label = _call_of(ctx.vars)
    url = route.status_hook if route is not None else None
    if not url or call_id is None:
        return
    ctx.services.statushook.send(url, call_id, event, label=label, **extra)


@action(params=SendParams)
async def send(ctx: Ctx[object], p: SendParams) -> None:
    """Queue a StatusHook event with the fields spec §8 lists for it. A reporting problem
    is logged and never disturbs the call."""
    try:
        route, call_id, _label = _call_of(ctx.vars)
        if route is not None and route.status_hook and call_id is not None:
            # the fields are built only for a call that has a statusHook (five of these
            # run on every call, most of them without one)
            emit(ctx, p.event, **_extra(ctx, p))
    except Exception as exc:
        ctx.log.warning("status event not sent", event=p.event, error=repr(exc))
