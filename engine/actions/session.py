"""``session.*``: running the CallScript — one verb machine at a time — and the caller's
(A-leg) side of the call: whether it is answered, gone, and hanging it up.

The session is the ``inbound_call`` instance. It owns the A leg: the A dialog's
in-dialog requests arrive here as ``a.*`` events and are forwarded to the verb
that is running, so exactly one verb at a time acts on them (D-9).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.actions.sip import send_reply
from engine.fsm import action, declare_events, guard
from engine.log import get_logger

log = get_logger("engine.session")

declare_events(
    "sip.dialog",
    ["a.bye", "a.reinvite", "a.update", "a.info", "a.refer",
     "b.bye", "b.reinvite", "b.update", "b.info", "b.refer", "sip.bye"],
    "in-dialog requests received on a call's A dialog (a.*) or B dialog (b.*, sip.bye)",
)

declare_events("session", ["abort"],
               "abort: the caller left (CANCEL/BYE); the running verb must stop and end")

VERB_MACHINES = {"announce": "verb_announce", "connect": "verb_connect",
                 "response": "verb_response", "pause": "verb_pause"}


@action()
async def load_script(ctx: Any, p: Any) -> None:
    """The validated CallScript replaces any previous one; run it from its first verb."""
    ctx.vars.script = ctx.event.data["script"]
    ctx.vars.verb_index = 0


@guard()
def call_over(ctx: Any, p: Any) -> bool:
    """The caller left (CANCEL/BYE) or was rejected with a final response (D-11, D-12)."""
    v = ctx.vars
    if getattr(v, "caller_gone", False):
        return True
    req = v.req
    return bool(req.final_sent) and getattr(v, "a_dialog", None) is None


@guard()
def has_next_verb(ctx: Any, p: Any) -> bool:
    return ctx.vars.verb_index < len(ctx.vars.script)


@action(emits=("verb.done",), outcomes=("verb.done",))
async def start_verb(ctx: Any, p: Any) -> None:
    """Run the next verb as a child machine (machines/verbs/<verb>.yaml)."""
    verb = ctx.vars.script[ctx.vars.verb_index]
    ctx.vars.verb_index += 1
    ctx.vars.current_verb = ctx.spawn_child(
        VERB_MACHINES[verb.name], vars={"session": ctx, "verb": verb}, done="verb.done")


@guard()
def verb_running(ctx: Any, p: Any) -> bool:
    child = getattr(ctx.vars, "current_verb", None)
    return child is not None and not child.done


@action()
async def mark_caller_gone(ctx: Any, p: Any) -> None:
    ctx.vars.caller_gone = True


@action()
async def abort_verb(ctx: Any, p: Any) -> None:
    """Tell the running verb the caller left; it stops its legs and media, then ends."""
    child = getattr(ctx.vars, "current_verb", None)
    if child is not None and not child.done:
        child.post("abort", {"by": ctx.event.name})


@action()
async def forward_to_verb(ctx: Any, p: Any) -> None:
    """Hand an A-leg in-dialog request to the running verb (the one owner of the legs)."""
    child = getattr(ctx.vars, "current_verb", None)
    if child is not None and not child.done:
        child.post(ctx.event.name, ctx.event.data)
        return
    await default_in_dialog_answer(ctx, ctx.event.data.get("req"))


async def default_in_dialog_answer(ctx: Any, req: Any) -> None:
    """Nobody handles it now: a re-INVITE/UPDATE gets our current SDP, others 200."""
    if req is None or req.final_sent:
        return
    dialog = getattr(session_vars(ctx), "a_dialog", None)
    if req.method in ("INVITE", "UPDATE") and dialog is not None and dialog.local_sdp:
        await req.reply(200, "OK", body=dialog.local_sdp, content_type="application/sdp")
    else:
        await req.reply(200, "OK")


def session_vars(ctx: Any) -> Any:
    session = getattr(ctx.vars, "session", None)
    return (session or ctx).vars


@dataclass(frozen=True)
class InDialogReply:
    status: int
    reason: str | None = None


@action(params=InDialogReply)
async def reply_in_dialog(ctx: Any, p: InDialogReply) -> None:
    """Answer the in-dialog request carried by the current event."""
    req = ctx.event.get("req")
    if req is not None and not req.final_sent:
        await req.reply(p.status, p.reason)


@guard()
def answered(ctx: Any, p: Any) -> bool:
    """The caller's leg is answered and still up."""
    dialog = getattr(session_vars(ctx), "a_dialog", None)
    return dialog is not None and dialog.connected


@guard()
def can_retry(ctx: Any, p: Any) -> bool:
    """Another CallHook round is allowed (count < CALLHOOK_MAX_RETRIES) and the caller waits."""
    v = ctx.vars
    return (not getattr(v, "caller_gone", False)
            and getattr(v, "count", 0) < ctx.services.settings.callhook_max_retries)


@action()
async def count_retry(ctx: Any, p: Any) -> None:
    """The next CallHook request carries count+1 (D-2: its new script is the one that runs)."""
    ctx.vars.count = getattr(ctx.vars, "count", 0) + 1


@action(emits=("session.bye_done",), outcomes=("session.bye_done",))
async def bye_caller(ctx: Any, p: Any) -> None:
    """Hang up the caller's leg (BYE) if it is up."""
    dialog = getattr(ctx.vars, "a_dialog", None)

    async def bye() -> None:
        if dialog is not None and dialog.connected:
            await dialog.bye()

    ctx.start(bye(), done="session.bye_done", error="session.bye_done")


@action()
async def bye_caller_now(ctx: Any, p: Any) -> None:
    """Hang up the caller in the background (clean-up of a failed call)."""
    dialog = getattr(ctx.vars, "a_dialog", None)
    if dialog is not None and dialog.connected:
        ctx.runtime.background(dialog.bye(), "BYE caller")


def attach_caller_dialog(session: Any, dialog: Any) -> None:
    """Route the A dialog's in-dialog requests to the session as a.* events."""
    session.vars.a_dialog = dialog

    def forward(event: str) -> Any:
        def listener(req: Any) -> None:
            session.post(event, {"req": req})
        return listener

    dialog.on("bye", forward("a.bye"))
    dialog.on("reinvite", forward("a.reinvite"))
    dialog.on("update", forward("a.update"))
    dialog.on("info", forward("a.info"))
    dialog.on("refer", forward("a.refer"))


__all__ = ["attach_caller_dialog", "default_in_dialog_answer", "send_reply"]
