"""``connect.*``: the connect verb (machines/verbs/connect.yaml) — resolving
destinations, starting one call_leg per destination, ringback, relaying ringing
and early media, bridging the winner, and mid-call relays.
"""

from __future__ import annotations

import functools
import secrets
from dataclasses import dataclass
from typing import Any, Literal

from engine.actions._context import Ctx
from engine.actions.leg import LegSpec, leg_vars
from engine.actions.media import media_session, open_early
from engine.actions.session import attach_caller_dialog, session_vars
from engine.actions.status import emit
from engine.fsm import Outcome, action, guard
from engine.fsm.runtime import Instance
from engine.hooks.callscript import Destination
from engine.hooks.payloads import statushook_body
from engine.log import get_logger
from engine.machine_vars import ConnectVars, LegVars
from engine.media.codecs import direct_media, leg_codecs
from engine.media.restore import media_moved
from engine.ports import Credentials

log = get_logger("engine.connect")

RESOLVE_OUTCOMES = ("connect.resolved", "connect.unresolvable")
BRIDGE_OUTCOMES = ("connect.bridged", "connect.bridge_failed")
RESTORE_OUTCOMES = ("media.restored", "media.restore_failed")


def _winner(ctx: Ctx[ConnectVars]) -> Instance | None:
    """The call_leg that answered (None before one did)."""
    v = ctx.vars
    return v.legs.get(v.winner) if v.winner is not None else None


def _won(ctx: Ctx[ConnectVars]) -> LegVars:
    """The variables of the leg that answered (the machine is past choose_winner)."""
    leg = _winner(ctx)
    assert leg is not None, "no leg has answered"
    return leg_vars(leg)


@guard()
def skip(ctx: Ctx[ConnectVars], p: object) -> bool:
    """A previous connect answered the call and this one has no ``reconnect`` and is not the
    target of a transfer (spec §7.2)."""
    sv = session_vars(ctx)
    return sv.connected_before and not (ctx.vars.verb.reconnect or sv.transferring)


def _schemed(address: str) -> str:
    return address if ":" in address.split("@", 1)[0] else f"sip:{address}"


async def _resolve_one(ctx: Ctx[ConnectVars], index: int, dest: Destination) -> LegSpec:
    """Destination → LegSpec, or ValueError saying why it cannot be rung."""
    sv = session_vars(ctx)
    settings = ctx.services.settings
    verb = ctx.vars.verb
    caller = sv.req.message.from_
    caller_id = verb.caller_id or caller.uri.user or "anonymous"
    caller_name = verb.caller_name or caller_id
    spec = functools.partial(LegSpec, index=index, timeout=float(dest.timeout),
                             headers=tuple(dest.headers), caller_id=caller_id,
                             caller_name=caller_name)
    dom = sv.domain
    if dest.type == "client":
        found = await ctx.services.store.get_binding(domain=dom, user=dest.address)
        if found is None:
            raise ValueError(f"client {dest.address} is not registered")
        binding = found[0]
        return spec(kind="client", uri=binding.contact, dest_text=binding.contact,
                       codecs=leg_codecs(binding.codecs, settings.default_codecs),
                       proxy=binding.proxy or None, flow=binding.flow,
                       extra={"user": dest.address})
    if dest.type == "trunk":
        config = ctx.services.config
        trunk = (config.get_trunk_by_id(dom, dest.trunk_id) if dest.trunk_id is not None
                 else config.get_trunk_by_name(dom, dest.trunk_name))
        if trunk is None or trunk.outbound is None or not trunk.outbound.host:
            which = dest.trunk_id if dest.trunk_id is not None else dest.trunk_name
            raise ValueError(f"trunk {which} is unknown or has no outbound host")
        ob = trunk.outbound
        auth = Credentials(ob.username, ob.password or "") if ob.username else None
        uri = f"sip:{dest.address}@{ob.host}"
        return spec(kind="trunk", uri=uri, dest_text=f"{dest.address}@{ob.host}",
                       codecs=leg_codecs(trunk.codecs, settings.default_codecs), auth=auth)
    uri = _schemed(dest.address)
    auth = Credentials(dest.username, dest.password or "") if dest.username else None
    return spec(kind="sip", uri=uri, dest_text=dest.address,
                   codecs=leg_codecs(dest.codecs, settings.default_codecs),
                   proxy=dest.proxy, auth=auth)


@action(emits=RESOLVE_OUTCOMES, outcomes=RESOLVE_OUTCOMES)
async def resolve_destinations(ctx: Ctx[ConnectVars], p: object) -> None:
    """Look every destination up; unresolvable ones get connect:error and are skipped."""
    dests = ctx.vars.verb.dests

    async def resolve() -> Outcome:
        specs: list[LegSpec] = []
        for index, dest in enumerate(dests):
            try:
                specs.append(await _resolve_one(ctx, index, dest))
            except ValueError as exc:
                emit(ctx, "connect:error", dest=dest.address, index=index,
                     error={"name": "Error", "message": str(exc)})
                log.info("destination skipped", index=index, reason=str(exc),
                         call_id=session_vars(ctx).req.call_id)
        ctx.vars.specs = specs
        return Outcome("connect.resolved" if specs else "connect.unresolvable")

    ctx.start(resolve(), done="connect.resolved", error="connect.unresolvable")


@action(emits=("leg.ended", "leg.ringing", "leg.early_media", "leg.answered", "leg.hangup",
               "b.reinvite", "b.update", "b.info", "b.refer"),
        outcomes=("leg.ended",))
async def start_legs(ctx: Ctx[ConnectVars], p: object) -> None:
    """One call_leg machine per resolved destination, all ringing in parallel."""
    call_id = session_vars(ctx).req.call_id
    ctx.vars.legs = {}
    ctx.vars.winner = None
    for spec in ctx.vars.specs:
        ctx.vars.legs[spec.index] = ctx.spawn_child("call_leg", vars={
            "call": session_vars(ctx), "verb": ctx.vars.verb, "spec": spec,
            "index": spec.index, "dest_text": spec.dest_text,
            # unique per leg, also across the connect verbs of one call (reconnect)
            "branch": f"{call_id[:16]}-{secrets.token_hex(3)}-{spec.index}",
        }, done="leg.ended")


@action()
async def start_ringback(ctx: Ctx[ConnectVars], p: object) -> None:
    """Ringback through RTPEngine, once per verb, only while the caller is unanswered."""
    sv = session_vars(ctx)
    if sv.a_dialog is not None or sv.req.final_sent or not sv.req.body:
        return  # answered already, or a late-offer caller: no SDP to play early media into
    url = ctx.vars.verb.ringtone or ctx.services.settings.default_ringtone
    media = ctx.services.media

    async def ringback() -> None:
        await open_early(ctx)
        file = await media.resolve(url)
        ms = media_session(ctx)
        await media.play_media(call_id=ms.call_id, from_tag=ms.from_tag, file=file, repeat=600)
        ctx.vars.ringback_on = True

    ctx.vars.ringback_task = ctx.runtime.background(ringback(), "ringback")


@action()
async def stop_ringback(ctx: Ctx[ConnectVars], p: object) -> None:
    """Stop ringback (early media from a leg, an answer, or every leg ended)."""
    task = ctx.vars.ringback_task
    if task is None:
        return
    ctx.vars.ringback_task = None
    if not task.done():
        task.cancel()
    ms = session_vars(ctx).media
    if ms is not None and ms.used:
        ctx.runtime.background(
            ctx.services.media.stop_media(call_id=ms.call_id, from_tag=ms.from_tag),
            "stop ringback")


@action()
async def relay_ringing(ctx: Ctx[ConnectVars], p: object) -> None:
    """180/181/182 from a leg → the same status to the caller, without a body."""
    req = session_vars(ctx).req
    if not req.final_sent and session_vars(ctx).a_dialog is None:
        await req.reply(ctx.event.data["status"], ctx.event.data.get("reason"))


@action()
async def relay_early_media(ctx: Ctx[ConnectVars], p: object) -> None:
    """183 with SDP from a leg → through RTPEngine (its branch) → 183 to the caller (D-15)."""
    sv = session_vars(ctx)
    if sv.req.final_sent or sv.a_dialog is not None or not sv.req.body:
        return
    response = ctx.event.data["response"]
    inst = ctx.vars.legs.get(ctx.event.data["index"])
    if inst is None:
        return
    leg = leg_vars(inst)
    ms = media_session(ctx)
    media = ctx.services.media

    async def relay() -> None:
        sdp = response.body
        if not direct_media(ms.caller, leg.spec.codecs):
            answer = await media.answer(call_id=ms.call_id, from_tag=ms.from_tag,
                                        to_tag=response.to_tag or "", sdp=response.body,
                                        branch=leg.branch, received_from=None)
            sdp = answer.sdp
        if not sv.req.final_sent:
            await sv.req.reply(183, "Session Progress", body=sdp,
                               content_type="application/sdp")

    ctx.runtime.background(relay(), "relay early media")


@action()
async def choose_winner(ctx: Ctx[ConnectVars], p: object) -> None:
    """The first leg to answer wins; every other leg is cancelled (connect:cancel)."""
    winner = ctx.event.data["index"]
    ctx.vars.winner = winner
    for index, leg in ctx.vars.legs.items():
        if index != winner and not leg.done:
            emit(ctx, "connect:cancel", index=index)
            leg.post("cancel")


@action(emits=BRIDGE_OUTCOMES, outcomes=BRIDGE_OUTCOMES)
async def bridge(ctx: Ctx[ConnectVars], p: object) -> None:
    """Join the caller to the winner: RTPEngine answer with the winner's SDP (its To tag,
    its branch), then 200 to the caller — or a re-INVITE when the caller is already
    answered (reconnect, D-4)."""
    winner = _winner(ctx)
    assert winner is not None
    leg = leg_vars(winner)
    sv = session_vars(ctx)
    ms = media_session(ctx)
    media = ctx.services.media

    async def join() -> Outcome:
        dialog = leg.dialog
        assert dialog is not None  # the leg answered
        sdp = dialog.remote_sdp or b""
        if not direct_media(ms.caller, leg.spec.codecs):
            answer = await media.answer(call_id=ms.call_id, from_tag=ms.from_tag,
                                        to_tag=dialog.remote_tag, sdp=sdp,
                                        branch=leg.branch)
            sdp = answer.sdp
        a_dialog = sv.a_dialog
        if a_dialog is None:
            if sv.req.cancelled:
                return Outcome("connect.bridge_failed", {"why": "caller cancelled"})
            a_dialog = await sv.req.answer(sdp=sdp)
            attach_caller_dialog(sv, a_dialog)
        else:
            response = await a_dialog.reinvite(sdp=sdp)
            if response.status >= 300:
                return Outcome("connect.bridge_failed", {"status": response.status})
        sv.connected_before = True
        sv.transferring = False
        sv.req.message.compact()  # the call may last hours: drop the INVITE's parse caches
        winner.post("bridge")
        return Outcome("connect.bridged")

    ctx.start(join(), done="connect.bridged", error="connect.bridge_failed")


@guard()
def late_offer(ctx: Ctx[ConnectVars], p: object) -> bool:
    """The caller's INVITE had no SDP: the winner's 200 holds the offer (D-34)."""
    sv = session_vars(ctx)
    return not sv.req.body and sv.a_dialog is None


@action(emits=("connect.offered", "connect.bridge_failed", "caller.ack"),
        outcomes=("connect.offered", "connect.bridge_failed"))
async def offer_to_caller(ctx: Ctx[ConnectVars], p: object) -> None:
    """The winner's offer (through RTPEngine unless direct media) in our 200 to the caller;
    its ACK, which carries the answer, comes back as ``caller.ack``."""
    leg = _won(ctx)
    sv = session_vars(ctx)
    ms = media_session(ctx)
    media = ctx.services.media

    async def offer() -> Outcome:
        dialog = leg.dialog
        assert dialog is not None  # the leg answered
        sdp = dialog.remote_sdp or b""
        if not direct_media(ms.caller, leg.spec.codecs):
            ms.used = True
            result = await media.offer(call_id=ms.call_id, from_tag=dialog.remote_tag, sdp=sdp,
                                       source_codecs=leg.spec.codecs.codecs,
                                       dest_codecs=ms.caller.codecs)
            sdp = result.sdp
        if sv.req.cancelled:
            return Outcome("connect.bridge_failed", {"why": "caller cancelled"})
        a_dialog = await sv.req.answer(sdp=sdp)
        attach_caller_dialog(sv, a_dialog)
        a_dialog.on("ack", lambda req: ctx.post("caller.ack", {"req": req}))
        return Outcome("connect.offered")

    ctx.start(offer(), done="connect.offered", error="connect.bridge_failed")


@action()
async def keep_caller_ack(ctx: Ctx[ConnectVars], p: object) -> None:
    """The caller's ACK (with its answer) may arrive before our 200 was confirmed sent."""
    ctx.vars.caller_ack = ctx.event.data["req"]


@guard()
def caller_acked(ctx: Ctx[ConnectVars], p: object) -> bool:
    return ctx.vars.caller_ack is not None


@action(emits=BRIDGE_OUTCOMES, outcomes=BRIDGE_OUTCOMES)
async def complete_late_offer(ctx: Ctx[ConnectVars], p: object) -> None:
    """RTPEngine answer with the caller's SDP (from its ACK), then ACK the winner with it."""
    winner = _winner(ctx)
    assert winner is not None
    leg = leg_vars(winner)
    sv = session_vars(ctx)
    ms = media_session(ctx)
    media = ctx.services.media
    ack = ctx.vars.caller_ack

    async def complete() -> Outcome:
        dialog = leg.dialog
        assert dialog is not None and ack is not None  # answered; the caller ACKed
        answer = ack.body or b""
        if not answer:
            return Outcome("connect.bridge_failed", {"why": "the caller's ACK had no SDP"})
        if not direct_media(ms.caller, leg.spec.codecs):
            result = await media.answer(call_id=ms.call_id, from_tag=dialog.remote_tag,
                                        to_tag=ms.from_tag, sdp=answer)
            answer = result.sdp
        await dialog.ack(sdp=answer)
        sv.connected_before = True
        sv.transferring = False
        winner.post("bridge")
        return Outcome("connect.bridged")

    ctx.start(complete(), done="connect.bridged", error="connect.bridge_failed")


@guard()
def all_legs_ended(ctx: Ctx[ConnectVars], p: object) -> bool:
    return all(leg.done for leg in ctx.vars.legs.values())


@guard()
def winner_ended(ctx: Ctx[ConnectVars], p: object) -> bool:
    winner = _winner(ctx)
    return winner is not None and winner is ctx.event.get("child")


@action()
async def cancel_all_legs(ctx: Ctx[ConnectVars], p: object) -> None:
    """Cancel (or hang up) every leg still running."""
    for leg in ctx.vars.legs.values():
        if not leg.done:
            leg.post("cancel")


@action()
async def hangup_winner(ctx: Ctx[ConnectVars], p: object) -> None:
    leg = _winner(ctx)
    if leg is not None and not leg.done:
        leg.post("hangup")


@action(emits=("relay.done",))
async def relay_reinvite(ctx: Ctx[ConnectVars], p: object) -> None:
    """A re-INVITE/UPDATE from one side goes through RTPEngine to the other (D-14), as a
    reinvite_relay machine."""
    from_b = ctx.event.name.startswith("b.")
    ctx.spawn_child("reinvite_relay", vars={
        "call": session_vars(ctx), "req": ctx.event.data["req"], "from_b": from_b,
        "leg": _winner(ctx)}, done="relay.done")


@action()
async def relay_dtmf(ctx: Ctx[ConnectVars], p: object) -> None:
    """SIP INFO DTMF from either leg is played by RTPEngine as RFC 4733 from that leg (D-17)."""
    from engine.actions._dtmf import handle_info

    req = ctx.event.data["req"]
    from_b = ctx.event.name.startswith("b.")
    winner = _winner(ctx)
    ms = media_session(ctx)
    b_dialog = leg_vars(winner).dialog if from_b and winner is not None else None
    tag = b_dialog.remote_tag if b_dialog is not None else ms.from_tag
    await handle_info(ctx, req, call_id=ms.call_id, from_tag=tag)


@action()
async def finish(ctx: Ctx[ConnectVars], p: object) -> None:
    """Tell the session whether this connect answered the call."""
    ctx.result["answered"] = ctx.vars.winner is not None


# ------------------------------------------------------------------ lost media (issue 10)


@guard()
def media_relayed(ctx: Ctx[ConnectVars], p: object) -> bool:
    """The bridged call's media goes through RTPEngine (not direct between the parties)."""
    leg = _winner(ctx)
    return leg is not None and not direct_media(media_session(ctx).caller,
                                                leg_vars(leg).spec.codecs)


@action(emits=RESTORE_OUTCOMES, outcomes=RESTORE_OUTCOMES)
async def restore_media(ctx: Ctx[ConnectVars], p: object) -> None:
    """Re-create the bridged call's lost RTPEngine session on any healthy instance: offer
    with the offering side's last SDP, answer with the other side's last SDP (same tags,
    branch and codec policy as at set-up); each side whose SDP from RTPEngine moved gets
    a re-INVITE with it. Any failure → ``media.restore_failed`` (data ``why``)."""
    ctx.vars.media_lost = dict(ctx.event.data)
    winner = _winner(ctx)
    sv = session_vars(ctx)
    ms = media_session(ctx)
    media = ctx.services.media
    ack = ctx.vars.caller_ack

    async def restore() -> Outcome:
        a = sv.a_dialog
        leg = leg_vars(winner) if winner is not None and not winner.done else None
        b = leg.dialog if leg is not None else None
        if a is None or b is None or leg is None or not a.connected or not b.connected:
            return Outcome("media.restore_failed", {"why": "a side of the call is gone"})
        spec = leg.spec
        if direct_media(ms.caller, spec.codecs):
            return Outcome("media.restored", {"moved": []})  # RTPEngine was not in the path
        a_sdp = a.remote_sdp or (ack.body if ack is not None else sv.req.body)
        b_sdp = b.remote_sdp
        if not a_sdp or not b_sdp:
            return Outcome("media.restore_failed", {"why": "a side's SDP is unknown"})
        media.forget(ms.call_id)  # the next offer may go to any healthy instance
        if ack is not None:  # late offer: the callee's 200 was the offer (D-34)
            offer = await media.offer(call_id=ms.call_id, from_tag=b.remote_tag, sdp=b_sdp,
                                      source_codecs=spec.codecs.codecs,
                                      dest_codecs=ms.caller.codecs)
            answer = await media.answer(call_id=ms.call_id, from_tag=b.remote_tag,
                                        to_tag=ms.from_tag, sdp=a_sdp)
            for_a, for_b = offer.sdp, answer.sdp
        else:
            offer = await media.offer(call_id=ms.call_id, from_tag=ms.from_tag, sdp=a_sdp,
                                      source_codecs=ms.caller.codecs,
                                      dest_codecs=spec.codecs.codecs,
                                      branch=leg.branch, received_from=ms.source)
            answer = await media.answer(call_id=ms.call_id, from_tag=ms.from_tag,
                                        to_tag=b.remote_tag, sdp=b_sdp, branch=leg.branch)
            for_a, for_b = answer.sdp, offer.sdp
        moved: list[str] = []
        for side, dialog, sdp in (("A", a, for_a), ("B", b, for_b)):
            if not media_moved(sdp, dialog.local_sdp):
                continue
            response = await dialog.reinvite(sdp=sdp)
            if response.status >= 300:
                return Outcome("media.restore_failed",
                               {"why": f"re-INVITE to {side} answered {response.status}"})
            moved.append(side)
        return Outcome("media.restored", {"moved": moved})

    ctx.start(restore(), done="media.restored", error="media.restore_failed")


@dataclass(frozen=True)
class MediaLostParams:
    outcome: Literal["restored", "hangup"]


@action(params=MediaLostParams)
async def report_media_lost(ctx: Ctx[ConnectVars], p: MediaLostParams) -> None:
    """StatusHook ``media:lost`` {outcome, instance, reason} and one log line per call."""
    lost = ctx.vars.media_lost or {}
    data = ctx.event.data
    why = data.get("why") or (repr(data["error"]) if data.get("error") else None)
    extra: dict[str, Any] = {"outcome": p.outcome, "rtpengine": lost.get("instance"),
                             "reason": lost.get("why")}
    if p.outcome == "restored":
        extra["reinvited"] = list(data.get("moved") or [])
        ctx.log.info("call media re-created after RTPEngine lost it", **extra)
    else:
        extra["error"] = why
        ctx.log.warning("call ended: RTPEngine lost its media and it could not be re-created",
                        **extra)
    try:
        _send_media_lost(ctx, {k: v for k, v in extra.items() if v is not None})
    except Exception as exc:  # reporting must never disturb the call
        ctx.log.warning("status event not sent", event="media:lost", error=repr(exc))


def _send_media_lost(ctx: Ctx[ConnectVars], extra: dict[str, Any]) -> None:
    """``{"callId", "event": "media:lost", outcome, rtpengine, reason, …, "label"}`` to the
    dialplan's statusHook (our event: the original has no media-fault event)."""
    call = session_vars(ctx)
    url = call.route.status_hook if call.route is not None else None
    if not url:
        return
    call_id = call.req.call_id
    label = ctx.vars.verb.status_label
    body = statushook_body(call_id, "media:lost", label=label)
    if body is None:  # statusLabel: false
        return
    tail = {"label": body.pop("label")} if "label" in body else {}
    ctx.services.statushook.send_body(url, call_id, {**body, **extra, **tail})


@action()
async def hangup_caller(ctx: Ctx[ConnectVars], p: object) -> None:
    """BYE the caller (in the background) and end the session after this verb: the call
    cannot go on (its media could not be re-created)."""
    ctx.result["caller_gone"] = True  # no further verb, no CallHook retry: the session ends
    dialog = session_vars(ctx).a_dialog
    if dialog is not None and dialog.connected:
        ctx.runtime.background(dialog.bye(), "BYE caller")
