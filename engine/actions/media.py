"""``media.*``: RTPEngine work for the caller's side of a call (announcements, early
media, the end-of-call delete). B-leg offers/answers live in ``leg.*``/``connect.*``.

The RTPEngine call is the caller's Call-ID; the caller is the party named by its
From tag. Every operation that touches RTPEngine marks the session so that
``media.delete_session`` always deletes it when the call ends (D-30).
"""

from __future__ import annotations

from dataclasses import dataclass, field

from engine.actions._context import Ctx
from engine.fsm import Outcome, action, declare_events, delay, guard
from engine.machine_vars import AnnounceVars, CallShared, CallVars, OnCall
from engine.media.codecs import LegCodecs, leg_codecs
from engine.media.commands import dummy_sdp
from engine.ports import MediaPort
from engine.sip.sdp import audio_codecs

MEDIA_OUTCOMES = ("media.done", "media.error")

declare_events(
    "media.watch", ["media.lost"],
    "media.lost: RTPEngine no longer knows the call's media session (its instance restarted "
    "or answered \"Unknown call-id\"); data: instance, why",
)


@dataclass
class MediaSession:
    """RTPEngine state of one call, kept on the inbound_call instance."""

    call_id: str
    from_tag: str
    caller: LegCodecs
    source: str  # the caller's signalling address (NAT handling)
    used: bool = False
    early_open: bool = False
    early_to_tag: str = ""
    deleted: bool = False
    branches: dict[int, str] = field(default_factory=dict)


def media_session(ctx: Ctx[OnCall]) -> MediaSession:
    """The call's MediaSession, created on first use."""
    sv = ctx.vars.call
    ms = sv.media
    if ms is None:
        from engine.actions.call import codecs_of

        req = sv.req
        ms = sv.media = MediaSession(
            call_id=req.call_id, from_tag=req.message.from_tag or "",
            caller=leg_codecs(codecs_of(sv.trunk, sv.caller_binding),
                              ctx.services.settings.default_codecs),
            source=req.source.host,
        )
        _watch(sv, ctx.services.media, ms.call_id)
    return ms


def _watch(call: CallShared, media: MediaPort, call_id: str) -> None:
    """The session hears ``media.lost`` if RTPEngine loses this call (issue 10)."""
    session = call.session

    def lost(instance: str, why: str) -> None:
        session.post("media.lost", {"instance": instance, "why": why})

    media.watch(call_id, lost)
    session.on_finish(lambda _inst: media.unwatch(call_id))


def caller_sdp(ctx: Ctx[OnCall]) -> bytes:
    return ctx.vars.call.req.body


@action(emits=MEDIA_OUTCOMES, outcomes=MEDIA_OUTCOMES)
async def resolve_announcement(ctx: Ctx[AnnounceVars], p: object) -> None:
    """Turn the verb's ``url`` into a local file RTPEngine can read (confined/fetched)."""
    url = ctx.vars.verb.url
    media = ctx.services.media

    async def resolve() -> None:
        ctx.vars.media_file = await media.resolve(url)

    ctx.start(resolve(), done="media.done", error="media.error")


@guard()
def early_media_open(ctx: Ctx[OnCall], p: object) -> bool:
    """Early media towards the caller is already flowing through RTPEngine."""
    return media_session(ctx).early_open


async def open_early(ctx: Ctx[OnCall]) -> None:
    """Offer the caller's SDP, answer it with a placeholder, send 183 with RTPEngine's SDP.

    Shared by announce and the connect ringback; a no-op when already open.
    """
    ms = media_session(ctx)
    if ms.early_open:
        return
    sdp = caller_sdp(ctx)
    if not sdp:
        raise ValueError("the caller's INVITE has no SDP: no early media possible")
    media = ctx.services.media
    ms.used = True
    await media.offer(call_id=ms.call_id, from_tag=ms.from_tag, sdp=sdp,
                      received_from=ms.source)
    ms.early_to_tag = ms.from_tag[::-1] or "early"  # the original's placeholder to-tag
    answer = await media.answer(call_id=ms.call_id, from_tag=ms.from_tag,
                                to_tag=ms.early_to_tag, sdp=placeholder_answer(sdp))
    req = ctx.vars.call.req
    if not req.final_sent:
        await req.reply(183, "Session Progress", body=answer.sdp,
                        content_type="application/sdp")
    ms.early_open = True


def placeholder_answer(offer: bytes) -> bytes:
    """The early-media placeholder answer, accepting the caller's own first codec (and its
    telephone-event): answering with a fixed PCMU would make RTPEngine negotiate PCMU
    with a caller that prefers PCMA, forcing transcoding on the whole call (and leaving
    nowhere to inject DTMF into the caller's real stream)."""
    codecs = audio_codecs(offer)
    audio = [c for c in codecs if c.name.lower() != "telephone-event"]
    te = next((c.payload for c in codecs if c.name.lower() == "telephone-event"), None)
    if not audio:
        return dummy_sdp(telephone_event=te)
    first = audio[0]
    rtpmap = f"{first.name}/{first.clock_rate or 8000}"
    if first.channels:
        rtpmap += f"/{first.channels}"
    return dummy_sdp(codec=(first.payload, rtpmap), telephone_event=te)


@action(emits=MEDIA_OUTCOMES, outcomes=MEDIA_OUTCOMES)
async def open_early_media(ctx: Ctx[OnCall], p: object) -> None:
    """Early media to the caller: RTPEngine offer/answer and a 183 with its SDP."""
    ctx.start(open_early(ctx), done="media.done", error="media.error")


@action(emits=MEDIA_OUTCOMES, outcomes=MEDIA_OUTCOMES)
async def play_announcement(ctx: Ctx[AnnounceVars], p: object) -> None:
    """Play the resolved file towards the caller; RTPEngine reports its duration."""
    ms = media_session(ctx)
    media = ctx.services.media
    file = ctx.vars.media_file
    assert file is not None  # resolve_announcement ran first (media.done)

    async def play() -> Outcome:
        ms.used = True
        duration = await media.play_media(call_id=ms.call_id, from_tag=ms.from_tag, file=file)
        ctx.vars.duration_ms = duration
        return Outcome("media.done", {"duration": duration})

    ctx.start(play(), done="media.done", error="media.error")


@delay()
def playback_seconds(ctx: Ctx[AnnounceVars], p: object) -> float:
    """How long the announcement plays (RTPEngine's reported duration; 0 if unknown)."""
    duration = ctx.vars.duration_ms
    return (duration or 0) / 1000.0


@action(emits=MEDIA_OUTCOMES, outcomes=MEDIA_OUTCOMES)
async def stop_announcement(ctx: Ctx[AnnounceVars], p: object) -> None:
    """Stop playback towards the caller."""
    ms = media_session(ctx)
    ctx.start(ctx.services.media.stop_media(call_id=ms.call_id, from_tag=ms.from_tag),
              done="media.done", error="media.error")


@action()
async def delete_session(ctx: Ctx[CallVars], p: object) -> None:
    """Delete the call's RTPEngine session whatever happened (D-30); in the background so
    the end of the call is not delayed."""
    call = ctx.vars.call
    ms = call.media if call is not None else None
    if ms is None or not ms.used or ms.deleted:
        return
    ms.deleted = True
    ctx.runtime.background(ctx.services.media.delete(call_id=ms.call_id),
                           "delete RTPEngine session")


__all__ = ["MediaSession", "caller_sdp", "media_session", "open_early"]
