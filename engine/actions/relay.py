"""``relay.*``: a re-INVITE/UPDATE relayed across a bridged call (machines/reinvite_relay.yaml).

vars: ``req`` (the re-INVITE or UPDATE received), ``from_b`` (sent by the B leg),
``leg`` (the winning call_leg instance), ``session``.
"""

from __future__ import annotations

from typing import Any

from engine.actions.media import media_session
from engine.actions.session import session_vars
from engine.fsm import Outcome, action, guard
from engine.media.codecs import direct_media as both_direct

REINVITE_OUTCOMES = ("relay.accepted", "relay.refused")


def _dialogs(ctx: Any) -> tuple[Any, Any]:
    """(sender's dialog, other side's dialog)."""
    a = session_vars(ctx).a_dialog
    b = ctx.vars.leg.vars.dialog
    return (b, a) if ctx.vars.from_b else (a, b)


def _tags(ctx: Any) -> tuple[str, str]:
    """(sender's RTPEngine tag, other side's tag)."""
    ms = media_session(ctx)
    b_tag = ctx.vars.leg.vars.dialog.remote_tag
    return (b_tag, ms.from_tag) if ctx.vars.from_b else (ms.from_tag, b_tag)


@guard()
def other_side_gone(ctx: Any, p: Any) -> bool:
    leg = ctx.vars.leg
    if leg is None or getattr(leg.vars, "dialog", None) is None:
        return True
    _, other = _dialogs(ctx)
    return other is None or not other.connected


@guard()
def direct_media(ctx: Any, p: Any) -> bool:
    return both_direct(media_session(ctx).caller, ctx.vars.leg.vars.spec.codecs)


@action(emits=("media.done", "media.error"), outcomes=("media.done", "media.error"))
async def offer(ctx: Any, p: Any) -> None:
    """RTPEngine re-offer of the sender's new SDP (an SDP-less request offers nothing)."""
    ms = media_session(ctx)
    sender_tag, other_tag = _tags(ctx)
    sdp = ctx.vars.req.body
    branch = None if ctx.vars.from_b else ctx.vars.leg.vars.branch

    async def run() -> None:
        if not sdp:
            ctx.vars.relay_sdp = None
            return
        result = await ctx.services.media.offer(
            call_id=ms.call_id, from_tag=sender_tag, to_tag=other_tag, sdp=sdp, branch=branch)
        ctx.vars.relay_sdp = result.sdp

    ctx.start(run(), done="media.done", error="media.error")


@action(emits=REINVITE_OUTCOMES, outcomes=REINVITE_OUTCOMES)
async def reinvite_other_side(ctx: Any, p: Any) -> None:
    """Send the (translated) offer to the other side as a re-INVITE or UPDATE."""
    _, other = _dialogs(ctx)
    sdp = getattr(ctx.vars, "relay_sdp", ctx.vars.req.body or None)
    method = ctx.vars.req.method

    async def run() -> Outcome:
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
async def answer(ctx: Any, p: Any) -> None:
    """RTPEngine answer with the other side's SDP → the SDP for the sender."""
    ms = media_session(ctx)
    sender_tag, other_tag = _tags(ctx)
    sdp = getattr(ctx.vars, "other_answer", b"")
    branch = None if ctx.vars.from_b else ctx.vars.leg.vars.branch

    async def run() -> None:
        if not sdp or getattr(ctx.vars, "relay_sdp", None) is None:
            ctx.vars.reply_sdp = None
            return
        result = await ctx.services.media.answer(
            call_id=ms.call_id, from_tag=sender_tag, to_tag=other_tag, sdp=sdp, branch=branch)
        ctx.vars.reply_sdp = result.sdp

    ctx.start(run(), done="media.done", error="media.error")


@action()
async def reply_ok(ctx: Any, p: Any) -> None:
    """200 to the sender with the SDP the other side agreed to (via RTPEngine)."""
    req = ctx.vars.req
    if req.final_sent:
        return
    sdp = getattr(ctx.vars, "reply_sdp", None)
    if sdp is None and ctx.vars.req.body and direct_media(ctx, None):
        sdp = getattr(ctx.vars, "other_answer", None)
    if sdp is None:
        sender, _ = _dialogs(ctx)
        sdp = sender.local_sdp if sender is not None else None
    if sdp:
        await req.reply(200, "OK", body=sdp, content_type="application/sdp")
    else:
        await req.reply(200, "OK")


@action()
async def reply_refused(ctx: Any, p: Any) -> None:
    """The other side refused (e.g. 488, 491): the sender gets the same status."""
    req = ctx.vars.req
    if not req.final_sent:
        status = ctx.event.get("status") or 500
        if not isinstance(status, int) or status < 300:
            status = 500
        await req.reply(status, ctx.event.get("reason"))


@action()
async def reply_not_acceptable(ctx: Any, p: Any) -> None:
    req = ctx.vars.req
    if not req.final_sent:
        await req.reply(488, "Not Acceptable Here",
                        headers=[("X-Reason", "media relay failed")])
