"""``call.*``: facts of the call being set up — caller registration, dialled number,
dialplan route — and the live-call record in the state store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from engine.actions._request import domain, from_user
from engine.config.matching import dialplan_from_json
from engine.fsm import Outcome, action, delay, guard

CALLER_OUTCOMES = ("call.caller_registered", "call.caller_unregistered", "store.error")
LIVE_CALL_TTL = 4 * 3600  # refreshed never; a call lasting longer simply drops off the list


@action(emits=CALLER_OUTCOMES, outcomes=CALLER_OUTCOMES)
async def load_caller_registration(ctx: Any, p: Any) -> None:
    """Read ``client:{domain}:{from user}``: its dialplan and codecs apply to this call."""
    store = ctx.services.store
    dom, user = domain(ctx), from_user(ctx)

    async def load() -> Outcome:
        found = await store.get_binding(domain=dom, user=user or "")
        if found is None:
            return Outcome("call.caller_unregistered")
        ctx.vars.caller_binding = found[0]
        return Outcome("call.caller_registered")

    ctx.start(load(), done="call.caller_registered", error="store.error")


def dialled_number(ctx: Any) -> str | None:
    """The number to route: the Request-URI user (D-32); the To user for calls arriving on
    a trunk we register to (their Request-URI is our registration contact); a trunk's
    ``number_from`` ("ruri" or "to") overrides either."""
    msg = ctx.vars.req.message
    trunk = getattr(ctx.vars, "trunk", None)
    source = "ruri"
    if trunk is not None:
        if trunk.number_from in ("ruri", "to"):
            source = trunk.number_from
        elif getattr(ctx.vars, "trunk_match", None) == "reg-id":
            source = "to"
    return msg.to.uri.user if source == "to" else msg.request_uri.user


def _dialplan(ctx: Any) -> Any:
    trunk = getattr(ctx.vars, "trunk", None)
    if trunk is not None:
        return trunk.dialplan
    binding = getattr(ctx.vars, "caller_binding", None)
    if binding is None or binding.dialplan is None:
        return None
    raw = binding.dialplan
    text = raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"))
    return dialplan_from_json(text, ctx.services.settings.dialplan_precedence)


@guard()
def dialplan_matches(ctx: Any, p: Any) -> bool:
    """The dialled number matches the dialplan (the trunk's, or the caller's registration's)."""
    number = dialled_number(ctx)
    ctx.vars.dialled = number
    plan = _dialplan(ctx)
    match = plan.match(number) if plan is not None and number else None
    ctx.vars.route = match
    return match is not None


def caller_codecs(ctx: Any) -> list[str] | None:
    """The caller's codec list: the trunk's, or the caller registration's grant."""
    trunk = getattr(ctx.vars, "trunk", None)
    if trunk is not None:
        return list(trunk.codecs) if trunk.codecs else None
    binding = getattr(ctx.vars, "caller_binding", None)
    codecs = binding.codecs if binding is not None else None
    return list(codecs) if isinstance(codecs, list) else None


@action()
async def record_start(ctx: Any, p: Any) -> None:
    """Record the live call at ``call:{domain}:{callId}`` (read by the API and other
    instances); removed by ``call.record_end``."""
    req = ctx.vars.req
    trunk = getattr(ctx.vars, "trunk", None)
    fields = {
        "from": from_user(ctx) or "", "to": ctx.vars.dialled or "",
        "source": "client" if trunk is None else f"trunk:{trunk.id}",
        "started": str(int(ctx.runtime.clock.time())),
        "instance": ctx.services.settings.instance_id, "machine": ctx.id,
        "source_address": req.source.host,
    }
    ctx.vars.call_recorded = True
    ctx.runtime.background(
        ctx.services.store.save_call(domain=domain(ctx), call_id=req.call_id, fields=fields,
                                     ttl=LIVE_CALL_TTL), "record live call")


@action()
async def record_end(ctx: Any, p: Any) -> None:
    """Remove the live-call record (if one was written)."""
    if getattr(ctx.vars, "call_recorded", False):
        ctx.vars.call_recorded = False
        ctx.runtime.background(
            ctx.services.store.remove_call(domain=domain(ctx), call_id=ctx.vars.req.call_id),
            "remove live call")


@dataclass(frozen=True)
class MaxSeconds:
    extra: float = 0.0


@delay(params=MaxSeconds)
def max_seconds(ctx: Any, p: MaxSeconds) -> float:
    """MAX_CALL_SECS (plus ``extra``): the longest a bridged call may last."""
    return float(ctx.services.settings.max_call_secs) + p.extra
