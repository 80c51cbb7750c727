"""``relay.*``: a re-INVITE/UPDATE relayed across a bridged call (machines/reinvite_relay.yaml).

Variables: ``engine.machine_vars.RelayVars`` — ``req`` (the re-INVITE or UPDATE
received), ``from_b`` (sent by the B leg), ``leg`` (the winning call_leg instance),
``call`` (the call's shared record).
"""

from __future__ import annotations

from engine.actions._context import Ctx
from engine.actions.leg import leg_vars
from engine.actions.media import media_session
from engine.fsm import Outcome, action, guard
from engine.machine_vars import LegVars, RelayVars
from engine.media.codecs import direct_media as both_direct
from engine.ports import Dialog

REINVITE_OUTCOMES = ("relay.accepted", "relay.refused")


def _leg(ctx: Ctx[RelayVars]) -> LegVars:
    leg = ctx.vars.leg
    assert leg is not None  # the machine checked relay.other_side_gone
    return leg_vars(leg)


def _dialogs(ctx: Ctx[RelayVars]) -> tuple[Dialog | None, Dialog | None]:
    """(sender's dialog, other side's dialog)."""
    a = ctx.vars.call.a_dialog
    b = _leg(ctx).dialog
    return (b, a) if ctx.vars.from_b else (a, b)


def _tags(ctx: Ctx[RelayVars]) -> tuple[str, str]:
    """(sender's RTPEngine tag, other side's tag)."""
    ms = media_session(ctx)
    dialog = _leg(ctx).dialog
    assert dialog is not None  # the leg answered
    b_tag = dialog.remote_tag
    return (b_tag, ms.from_tag) if ctx.vars.from_b else (ms.from_tag, b_tag)


@guard()
def other_side_gone(ctx: Ctx[RelayVars], p: object) -> bool:
    leg = ctx.vars.leg
    if leg is None or leg_vars(leg).dialog is None:
        return True
    _, other = _dialogs(ctx)
    return other is None or not other.connected


@guard()
def direct_media(ctx: Ctx[RelayVars], p: object) -> bool:
    return both_direct(media_session(ctx).caller, _leg(ctx).spec.codecs)


@action(emits=("media.done", "media.error"), outcomes=("media.done", "media.error"))
async def offer(ctx: Ctx[RelayVars], p: object) -> None:
    """RTPEngine re-offer of the sender's new SDP (an SDP-less request offers nothing)."""
    ms = media_session(ctx)
    sender_tag, other_tag = _tags(ctx)
    sdp = ctx.vars.req.body
    branch = None if ctx.vars.from_b else _leg(ctx).branch

    async def run() -> None:
        ctx.vars.offered = True
        if not sdp:
            ctx.vars.relay_sdp = None
            return
        result = await ctx.services.media.offer(
            call_id=ms.call_id, from_tag=sender_tag, to_tag=other_tag, sdp=sdp, branch=branch)
        ctx.vars.relay_sdp = result.sdp

    ctx.start(run(), done="media.done", error="media.error")


@action(emits=REINVITE_OUTCOMES, outcomes=REINVITE_OUTCOMES)
async def reinvite_other_side(ctx: Ctx[RelayVars], p: object) -> None:
    """Send the (translated) offer to the other side as a re-INVITE or UPDATE."""
    _, other = _dialogs(ctx)
    v = ctx.vars
    sdp = v.relay_sdp if v.offered else (v.req.body or None)  # direct media: as sent
    method = v.req.method

    async def run() -> Outcome:
        assert other is not None  # the machine checked relay.other_side_gone
        if method == "UPDATE":
            response = await other.request("UPDATE", body=sdp or b"",
                                           content_type="application/sdp" if sdp else None)
        else:
            response = await other.reinvite(sdp=sdp)
        if response.status >= 300:
            return Outcome("relay.refused", {"status": response.status,
                                             "reason": response.reason})
        ctx.vars.other_answer = response.body
        return Outcome("relay.accepted")

    ctx.start(run(), done="relay.accepted", error="relay.refused")


@action(emits=("media.done", "media.error"), outcomes=("media.done", "media.error"))
async def answer(ctx: Ctx[RelayVars], p: object) -> None:
    """RTPEngine answer with the other side's SDP → the SDP for the sender."""
    ms = media_session(ctx)
    sender_tag, other_tag = _tags(ctx)
    sdp = ctx.vars.other_answer or b""
    branch = None if ctx.vars.from_b else _leg(ctx).branch

    async def run() -> None:
        if not sdp or ctx.vars.relay_sdp is None:
            ctx.vars.reply_sdp = None
            return
        result = await ctx.services.media.answer(
            call_id=ms.call_id, from_tag=sender_tag, to_tag=other_tag, sdp=sdp, branch=branch)
        ctx.vars.reply_sdp = result.sdp

    ctx.start(run(), done="media.done", error="media.error")


@action()
async def reply_ok(ctx: Ctx[RelayVars], p: object) -> None:
    """200 to the sender with the SDP the other side agreed to (via RTPEngine)."""
    req = ctx.vars.req
    if req.final_sent:
        return
    sdp = ctx.vars.reply_sdp
    if sdp is None and ctx.vars.req.body and direct_media(ctx, None):
        sdp = ctx.vars.other_answer
    if sdp is None:
        sender, _ = _dialogs(ctx)
        sdp = sender.local_sdp if sender is not None else None
    if sdp:
        await req.reply(200, "OK", body=sdp, content_type="application/sdp")
    else:
        await req.reply(200, "OK")


@action()
async def reply_refused(ctx: Ctx[RelayVars], p: object) -> None:
    """The other side refused (e.g. 488, 491): the sender gets the same status."""
    req = ctx.vars.req
    if not req.final_sent:
        status = ctx.event.get("status") or 500
        if not isinstance(status, int) or status < 300:
            status = 500
        await req.reply(status, ctx.event.get("reason"))


@action()
async def reply_not_acceptable(ctx: Ctx[RelayVars], p: object) -> None:
    req = ctx.vars.req
    if not req.final_sent:
        await req.reply(488, "Not Acceptable Here",
                        headers=[("X-Reason", "media relay failed")])
