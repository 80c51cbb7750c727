"""``status.*``: StatusHook events (spec §8), sent asynchronously so a slow receiver
never delays a call. The URL is the matched dialplan entry's statusHook; ``label``
is the verb's ``statusLabel`` (``false`` suppresses the verb's events).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.errors import SipError
from engine.fsm import action
from engine.hooks.payloads import UNSET


def session_of(ctx: Any) -> Any:
    """The inbound_call instance a verb or leg belongs to (itself for the session)."""
    return getattr(ctx.vars, "session", None) or ctx


@dataclass(frozen=True)
class SendParams:
    event: str = field(metadata={"doc": "event name, e.g. connect:answered"})
    endedby: Literal["A", "B"] | None = None
    status: int | None = field(default=None, metadata={
        "doc": "with reason: the event's error when the machine itself ended the attempt "
               "(no SIP response carries one)"})
    reason: str | None = None


def _extra(ctx: Any, p: SendParams) -> dict[str, Any]:
    out: dict[str, Any] = {}
    v = ctx.vars
    if hasattr(v, "dest_text"):
        out["dest"] = v.dest_text
    if hasattr(v, "index"):
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
    if p.event.startswith("pause:") and hasattr(v, "verb"):
        out["duration"] = v.verb.duration
    if p.event == "playback:complete" and getattr(v, "duration_ms", None) is not None:
        out["duration"] = v.duration_ms
    return out


def emit(ctx: Any, event: str, **extra: Any) -> None:
    """Send ``event`` for the call ``ctx`` belongs to (no-op without a statusHook)."""
    session = session_of(ctx)
    route = getattr(session.vars, "route", None)
    url = route.status_hook if route is not None else None
    if not url:
        return
    verb = getattr(ctx.vars, "verb", None)
    label = getattr(verb, "status_label", UNSET) if verb is not None else UNSET
    ctx.services.statushook.send(url, session.vars.req.call_id, event, label=label, **extra)


@action(params=SendParams)
async def send(ctx: Any, p: SendParams) -> None:
    """Queue a StatusHook event with the fields spec §8 lists for it. A reporting problem
    is logged and never disturbs the call."""
    try:
        emit(ctx, p.event, **_extra(ctx, p))
    except Exception as exc:
        ctx.log.warning("status event not sent", event=p.event, error=repr(exc))
