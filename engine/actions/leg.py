"""``leg.*``: one outgoing B leg of a connect verb (machines/call_leg.yaml).

A leg reports to its connect verb (the parent instance) with ``leg.*`` events
and forwards the B dialog's in-dialog requests as ``b.*`` events; the verb
decides. Each leg has its own RTPEngine branch so forked legs keep their own
ports and codec policy (D-34).
"""

from __future__ import annotations

import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from engine.actions._context import Ctx
from engine.actions.media import caller_sdp, media_session
from engine.errors import SipError
from engine.fsm import Outcome, action, declare_events, delay, guard
from engine.fsm.runtime import Instance
from engine.machine_vars import LegVars
from engine.media.codecs import LegCodecs
from engine.media.codecs import direct_media as both_direct
from engine.ports import Credentials, IncomingRequest, SipResponseView

INVITE_OUTCOMES = ("leg.sip_answered", "leg.sip_failed")

declare_events("call_leg", ["leg.ringing", "leg.early_media", "leg.answered", "leg.hangup"],
               "what a call_leg reports to its connect verb")
declare_events("verb_connect", ["cancel", "bridge", "hangup"],
               "what a connect verb tells its legs: cancel (lost or caller left), bridge "
               "(this leg won), hangup (the caller hung up)")


@dataclass(frozen=True)
class LegSpec:
    """A resolved destination: where and how to ring it."""

    index: int
    kind: str  # client | sip | trunk
    uri: str
    dest_text: str  # what StatusHook events call it (spec §8 `dest`)
    codecs: LegCodecs
    timeout: float = 30.0
    proxy: str | None = None
    auth: Credentials | None = None
    flow: str | None = None
    headers: tuple[tuple[str, str], ...] = ()
    caller_id: str = ""
    caller_name: str = ""
    extra: dict[str, Any] = field(default_factory=dict)


def _spec(ctx: Ctx[LegVars]) -> LegSpec:
    return ctx.vars.spec


def leg_vars(leg: Instance) -> LegVars:
    """A call_leg's variables, for the connect verb that reads what its leg found out (its
    dialog, spec, branch); the leg alone writes them."""
    v = leg.vars
    assert isinstance(v, LegVars), f"{leg} is no call_leg"
    return v


def _report(ctx: Ctx[LegVars], event: str, data: dict[str, Any]) -> None:
    """Tell the connect verb that spawned this leg."""
    parent = ctx.parent
    assert parent is not None  # a call_leg is always a connect verb's child
    parent.post(event, data)


@guard()
def direct_media(ctx: Ctx[LegVars], p: object) -> bool:
    """Both the caller and this destination allow direct media (DIRECT): no RTPEngine."""
    return both_direct(media_session(ctx).caller, _spec(ctx).codecs)


@guard()
def caller_sent_no_sdp(ctx: Ctx[LegVars], p: object) -> bool:
    """Late offer: the caller's INVITE had no SDP, so this leg's INVITE has none either and
    the callee's 200 carries the offer (D-34)."""
    return not caller_sdp(ctx)


@action(emits=("media.done", "media.error"), outcomes=("media.done", "media.error"))
async def offer_media(ctx: Ctx[LegVars], p: object) -> None:
    """RTPEngine offer of the caller's SDP for this leg: mask = the caller's codecs,
    transcode = this leg's codecs, on this leg's own branch."""
    ms = media_session(ctx)
    spec = _spec(ctx)
    media = ctx.services.media
    sdp = caller_sdp(ctx)

    async def offer() -> None:
        ms.used = True
        answer = await media.offer(
            call_id=ms.call_id, from_tag=ms.from_tag, sdp=sdp,
            source_codecs=ms.caller.codecs, dest_codecs=spec.codecs.codecs,
            branch=ctx.vars.branch, received_from=ms.source)
        ctx.vars.offer_sdp = answer.sdp

    ctx.start(offer(), done="media.done", error="media.error")


def _headers(ctx: Ctx[object], spec: LegSpec) -> list[tuple[str, str]]:
    sip = ctx.services.sip
    transport = "tcp" if "transport=tcp" in spec.uri.lower() else "udp"
    contact = sip.contact_uri(transport=transport, user=spec.caller_id or None)
    host = contact.split("@", 1)[-1].split(";", 1)[0]
    name = spec.caller_name.replace('"', "")
    from_value = f'"{name}" <sip:{spec.caller_id}@{host}>' if name else \
        f"<sip:{spec.caller_id}@{host}>"
    headers = [("From", f"{from_value};tag={secrets.token_hex(6)}"), ("Contact", f"<{contact}>"),
               ("X-Endpoint-Index", str(spec.index))]
    overridden = {k.lower() for k, _ in spec.headers}
    headers = [(k, v) for k, v in headers if k.lower() not in overridden]
    return headers + list(spec.headers)


@action(emits=(*INVITE_OUTCOMES, "leg.provisional"), outcomes=INVITE_OUTCOMES)
async def send_invite(ctx: Ctx[LegVars], p: object) -> None:
    """Send the INVITE (1xx → ``leg.provisional``; 2xx → ``leg.sip_answered``; a failure,
    timeout or cancel → ``leg.sip_failed`` with the status)."""
    spec = _spec(ctx)
    sdp = ctx.vars.offer_sdp
    if sdp is None and direct_media(ctx, None):
        sdp = caller_sdp(ctx)

    def provisional(response: SipResponseView) -> None:
        ctx.post("leg.provisional", {"response": response})

    leg = ctx.services.sip.invite(
        spec.uri, sdp=sdp or None, headers=_headers(ctx, spec), proxy=spec.proxy,
        auth=spec.auth, flow=spec.flow, on_provisional=provisional)
    ctx.vars.client_leg = leg
    leg.a_call_id = ctx.call_id  # the SIP layer's lines about this leg name the call too
    _link_call_ids(ctx, leg.call_id)

    async def wait() -> Outcome:
        try:
            dialog = await leg.result()
        except SipError as exc:
            return Outcome("leg.sip_failed", {"status": exc.status, "reason": exc.reason,
                                              "error": exc})
        ctx.vars.dialog = dialog
        return Outcome("leg.sip_answered", {"dialog": dialog})

    # instance scope: the INVITE's outcome still matters after a CANCEL (487 or a crossing 200)
    ctx.start(wait(), done="leg.sip_answered", error="leg.sip_failed", scope="instance")


def _link_call_ids(ctx: Ctx[LegVars], leg_call_id: str) -> None:
    """Tie this B leg's Call-ID to the call's: its lines carry both ``call_id`` (the A leg's)
    and ``leg_call_id``, and the call's summary line lists it under ``legs``."""
    ctx.vars.leg_call_id = leg_call_id
    ctx.bind_log(leg_call_id=leg_call_id)
    known = ctx.vars.call.leg_call_ids
    if leg_call_id not in known and len(known) < 32:  # bounded: a fork has a few legs
        known.append(leg_call_id)


@delay()
def ring_timeout(ctx: Ctx[LegVars], p: object) -> float:
    """The destination's ``timeout`` (seconds, default 30)."""
    return _spec(ctx).timeout


@action()
async def report_provisional(ctx: Ctx[LegVars], p: object) -> None:
    """Tell the connect verb: 183 with SDP → ``leg.early_media``; 180-182 → ``leg.ringing``."""
    response = ctx.event.data["response"]
    index = _spec(ctx).index
    if response.body and (response.status == 183 or b"v=0" in response.body[:8]):
        _report(ctx, "leg.early_media", {"index": index, "response": response})
    elif 180 <= response.status <= 189:
        _report(ctx, "leg.ringing", {"index": index, "status": response.status,
                                        "reason": response.reason})


@action()
async def report_answered(ctx: Ctx[LegVars], p: object) -> None:
    # The INVITE is done: drop the client-leg handle (and the request it holds) for the
    # rest of the call; the dialog is all a connected leg needs.
    ctx.vars.client_leg = None
    _report(ctx, "leg.answered", {"index": _spec(ctx).index})


@guard()
def callee_silent(ctx: Ctx[LegVars], p: object) -> bool:
    """Nothing answered this leg's INVITE yet, not even 100 Trying: its CANCEL must wait in
    the stack for a provisional response (RFC 3261 §9.1), possibly until the INVITE times
    out. The stack still sends it then, and hangs up a 200 that crosses it."""
    leg = ctx.vars.client_leg
    return leg is not None and not leg.responded


@action()
async def cancel_invite(ctx: Ctx[LegVars], p: object) -> None:
    """CANCEL the pending INVITE (a 200 that crosses it arrives as leg.sip_answered)."""
    leg = ctx.vars.client_leg
    if leg is not None:
        ctx.runtime.background(leg.cancel(), "CANCEL leg")


@action()
async def watch_dialog(ctx: Ctx[LegVars], p: object) -> None:
    """The B dialog's in-dialog requests become events of this leg."""
    dialog = ctx.vars.dialog
    assert dialog is not None  # the leg answered

    def forward(event: str) -> Callable[[IncomingRequest], None]:
        def listener(req: IncomingRequest) -> None:
            ctx.post(event, {"req": req})
        return listener

    dialog.on("bye", forward("sip.bye"))
    for method, event in (("reinvite", "b.reinvite"), ("update", "b.update"),
                          ("info", "b.info"), ("refer", "b.refer")):
        dialog.on(method, forward(event))


@action()
async def forward_to_connect(ctx: Ctx[LegVars], p: object) -> None:
    """Hand a B-dialog request to the connect verb, which owns both legs."""
    _report(ctx, ctx.event.name, {**ctx.event.data, "index": _spec(ctx).index})


@action()
async def report_hangup(ctx: Ctx[LegVars], p: object) -> None:
    _report(ctx, "leg.hangup", {"index": _spec(ctx).index})


@action(emits=("leg.bye_done",), outcomes=("leg.bye_done",))
async def send_bye(ctx: Ctx[LegVars], p: object) -> None:
    """BYE the B dialog (a late answer, or the caller left); done either way."""
    dialog = ctx.vars.dialog or ctx.event.get("dialog")

    async def bye() -> None:
        if dialog is not None and dialog.connected:
            await dialog.bye()

    ctx.start(bye(), done="leg.bye_done", error="leg.bye_done")
