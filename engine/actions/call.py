"""``call.*``: facts of the call being set up — caller registration, dialled number,
dialplan route — and the live-call record in the state store.
"""

from __future__ import annotations

import json
from dataclasses import dataclass

from engine.actions._context import Ctx
from engine.actions._request import domain, from_user
from engine.config.matching import Dialplan, dialplan_from_json
from engine.config.model import Trunk
from engine.fsm import Outcome, action, delay, guard
from engine.machine_vars import CallVars
from engine.ports import Binding

CALLER_OUTCOMES = ("call.caller_registered", "call.caller_unregistered", "store.error")
LIVE_CALL_TTL = 4 * 3600  # refreshed never; a call lasting longer simply drops off the list


@action(emits=CALLER_OUTCOMES, outcomes=CALLER_OUTCOMES)
async def load_caller_registration(ctx: Ctx[CallVars], p: object) -> None:
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


def dialled_number(ctx: Ctx[CallVars]) -> str | None:
    """The number to route: the Request-URI user (D-32); the To user for calls arriving on
    a trunk we register to (their Request-URI is our registration contact); a trunk's
    ``number_from`` ("ruri" or "to") overrides either."""
    msg = ctx.vars.req.message
    trunk = ctx.vars.trunk
    source = "ruri"
    if trunk is not None:
        if trunk.number_from in ("ruri", "to"):
            source = trunk.number_from
        elif ctx.vars.trunk_match == "reg-id":
            source = "to"
    user: str | None = msg.to.uri.user if source == "to" else msg.request_uri.user
    return user


def dialplan_of(trunk: Trunk | None, binding: Binding | None,
                precedence: str) -> Dialplan | None:
    """The dialplan that routes a call: its trunk's, else the caller registration's."""
    if trunk is not None:
        return trunk.dialplan
    if binding is None or binding.dialplan is None:
        return None
    raw = binding.dialplan
    text = raw if isinstance(raw, str) else json.dumps(raw, separators=(",", ":"))
    return dialplan_from_json(text, precedence)


@guard()
def dialplan_matches(ctx: Ctx[CallVars], p: object) -> bool:
    """The dialled number matches the dialplan (the trunk's, or the caller's registration's)."""
    number = dialled_number(ctx)
    ctx.vars.dialled = number
    v = ctx.vars
    plan = dialplan_of(v.trunk, v.caller_binding, ctx.services.settings.dialplan_precedence)
    match = plan.match(number) if plan is not None and number else None
    ctx.vars.route = match
    return match is not None


def codecs_of(trunk: Trunk | None, binding: Binding | None) -> list[str] | None:
    """The caller's codec list: the trunk's, or the caller registration's grant."""
    if trunk is not None:
        return list(trunk.codecs) if trunk.codecs else None
    codecs = binding.codecs if binding is not None else None
    return list(codecs) if isinstance(codecs, list) else None


@action()
async def record_start(ctx: Ctx[CallVars], p: object) -> None:
    """Record the live call at ``call:{domain}:{callId}`` (read by the API and other
    instances); removed by ``call.record_end``."""
    req = ctx.vars.req
    trunk = ctx.vars.trunk
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
async def record_end(ctx: Ctx[CallVars], p: object) -> None:
    """Remove the live-call record (if one was written)."""
    if ctx.vars.call_recorded:
        ctx.vars.call_recorded = False
        ctx.runtime.background(
            ctx.services.store.remove_call(domain=domain(ctx), call_id=ctx.vars.req.call_id),
            "remove live call")


@dataclass(frozen=True)
class MaxSeconds:
    extra: float = 0.0


@delay(params=MaxSeconds)
def max_seconds(ctx: Ctx[object], p: MaxSeconds) -> float:
    """MAX_CALL_SECS (plus ``extra``): the longest a bridged call may last."""
    return float(ctx.services.settings.max_call_secs) + p.extra
