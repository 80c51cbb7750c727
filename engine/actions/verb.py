"""``verb.*``: the small pieces of the response and pause verbs."""

from __future__ import annotations

from engine.actions._context import Ctx
from engine.fsm import action, delay
from engine.log import get_logger
from engine.machine_vars import PauseVars, ResponseVars
from engine.sip.builders import reason_phrase

log = get_logger("engine.verbs")


@action()
async def send_response(ctx: Ctx[ResponseVars], p: object) -> None:
    """Answer the caller with the verb's ``code``/``reason``/``headers`` (ends the script)."""
    verb = ctx.vars.verb
    req = ctx.vars.call.req
    if req.final_sent:
        return
    headers = list(verb.headers or ())
    await req.reply(verb.code, verb.reason or reason_phrase(verb.code), headers=headers)
    log.debug("call answered by response verb", status=verb.code, call_id=req.call_id)


@delay()
def pause_seconds(ctx: Ctx[PauseVars], p: object) -> float:
    """The pause verb's ``duration``."""
    return float(ctx.vars.verb.duration)
