"""``transfer.*``: blind transfer requested by the callee with REFER (spec §7.8, D-25).

Fixed against the original: Referred-By is optional (the callee's identity is
used), the REFER gets 202 and the transferor hears progress by NOTIFY with a
message/sipfrag body, and calls that came from a trunk transfer through the
same dialplan as the call itself.
"""

from __future__ import annotations

import asyncio
import json
from dataclasses import dataclass

from engine.actions._context import Ctx
from engine.actions.call import dialplan_of
from engine.actions.hooks import SCRIPT_OUTCOMES, fetch_callscript
from engine.actions.leg import leg_vars
from engine.config.matching import DialplanMatch, dialplan_from_json
from engine.fsm import action, guard
from engine.hooks.payloads import callhook_body
from engine.log import get_logger
from engine.machine_vars import ConnectVars
from engine.ports import Dialog, IncomingRequest
from engine.sip.uri import parse_name_addr

log = get_logger("engine.transfer")


def _refer(ctx: Ctx[object]) -> IncomingRequest:
    return ctx.event.data["req"]


def _user_of(value: str | None) -> str | None:
    if not value:
        return None
    try:
        return parse_name_addr(value).uri.user
    except Exception:  # a malformed header is a refusal, not a crash
        return None


@guard()
def acceptable(ctx: Ctx[ConnectVars], p: object) -> bool:
    """The REFER names a target with a user part we can route (Refer-To: sip:2000@…)."""
    req = _refer(ctx)
    target = _user_of(req.header("refer-to"))
    ctx.vars.refer_target = target
    return bool(target)


@action()
async def refuse(ctx: Ctx[ConnectVars], p: object) -> None:
    req = _refer(ctx)
    if not req.final_sent:
        await req.reply(400, "Bad Request", headers=[("X-Reason", "Refer-To has no user")])


def _dialog_of_winner(ctx: Ctx[ConnectVars]) -> Dialog | None:
    v = ctx.vars
    leg = v.legs.get(v.winner) if v.winner is not None else None
    return leg_vars(leg).dialog if leg is not None else None


async def _notify(ctx: Ctx[ConnectVars], status: int, reason: str) -> None:
    dialog = _dialog_of_winner(ctx)
    if dialog is None or not dialog.connected:
        return
    state = "terminated;reason=noresource" if status >= 200 else "active;expires=60"
    try:
        await dialog.request("NOTIFY", headers=[("Event", "refer"),
                                                ("Subscription-State", state)],
                             body=f"SIP/2.0 {status} {reason}\r\n".encode(),
                             content_type="message/sipfrag;version=2.0")
    except Exception as exc:
        log.info("transfer NOTIFY failed", error=repr(exc))


@action()
async def accept(ctx: Ctx[ConnectVars], p: object) -> None:
    """202 Accepted, then NOTIFY "100 Trying" (the implicit subscription, RFC 3515)."""
    req = _refer(ctx)
    ctx.vars.refer_req = req
    await req.reply(202, "Accepted")
    ctx.runtime.background(_notify(ctx, 100, "Trying"), "transfer NOTIFY")


@dataclass(frozen=True)
class NotifyParams:
    status: int
    reason: str


@action(params=NotifyParams)
async def notify(ctx: Ctx[ConnectVars], p: NotifyParams) -> None:
    """Tell the transferor how the transfer went (message/sipfrag). Awaited (briefly) so
    the final NOTIFY reaches the transferor before it is hung up."""
    try:
        async with asyncio.timeout(2.0):
            await _notify(ctx, p.status, p.reason)
    except TimeoutError:
        log.info("transfer NOTIFY not answered in 2s")


@action(emits=SCRIPT_OUTCOMES, outcomes=SCRIPT_OUTCOMES)
async def fetch_script(ctx: Ctx[ConnectVars], p: object) -> None:
    """CallHook with ``refer: true`` for the Refer-To number. The dialplan is the
    transferor's registration's when it is a registered client, else the call's own."""
    v = ctx.vars
    call = v.call
    req = v.refer_req
    assert req is not None  # transfer.accept kept it
    leg = v.legs.get(v.winner) if v.winner is not None else None
    referrer = _user_of(req.header("referred-by")) or (
        leg_vars(leg).spec.extra.get("user") if leg is not None else None)
    target = v.refer_target
    store, settings = ctx.services.store, ctx.services.settings
    domain = call.domain

    async def route() -> DialplanMatch | None:
        plan = None
        if referrer:
            found = await store.get_binding(domain=domain, user=referrer)
            if found is not None and found[0].dialplan is not None:
                plan = dialplan_from_json(json.dumps(found[0].dialplan, separators=(",", ":")),
                                          settings.dialplan_precedence)
        if plan is None:
            plan = dialplan_of(call.trunk, call.caller_binding, settings.dialplan_precedence)
        return plan.match(target) if plan is not None else None

    headers = [(n, v) for n, v in req.message.headers
               if n.lower() not in ("authorization", "proxy-authorization")]
    body = callhook_body(domain=domain, from_user=referrer, to_user=target,
                         call_id=req.call_id, source_address=req.source.host,
                         headers=headers, source="client", refer=True)
    fetch_callscript(ctx, body, route)


@action()
async def use_script(ctx: Ctx[ConnectVars], p: object) -> None:
    """The transfer script replaces what was left of the session's script (this verb's
    result: the session takes it when the verb ends, ``session.verb_ended``); its connect
    re-INVITEs the caller (a transfer counts as reconnect)."""
    ctx.result["script"] = ctx.event.data["script"]
    ctx.vars.call.transferring = True
