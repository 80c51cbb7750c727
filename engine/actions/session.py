"""``session.*``: running the CallScript — one verb machine at a time — and the caller's
(A-leg) side of the call: whether it is answered, gone, and hanging it up.

The session is the ``inbound_call`` instance. It owns the A leg: the A dialog's
in-dialog requests arrive here as ``a.*`` events and are forwarded to the verb
that is running, so exactly one verb at a time acts on them (D-9).
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from engine.actions._context import Ctx
from engine.actions._request import domain
from engine.actions.sip import send_reply
from engine.fsm import action, declare_events, guard
from engine.fsm.runtime import Instance
from engine.log import get_logger
from engine.machine_vars import CallShared, CallVars, VerbVars
from engine.ports import Dialog, IncomingRequest

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
async def load_script(ctx: Ctx[CallVars], p: object) -> None:
    """The validated CallScript replaces any previous one; run it from its first verb."""
    ctx.vars.script = ctx.event.data["script"]
    ctx.vars.verb_index = 0


@action()
async def verb_ended(ctx: Ctx[CallVars], p: object) -> None:
    """What the verb that ended reports (its ``verb.done`` data): the caller is gone (it
    hung up the call), or a transfer's CallScript replaces what is left of this one."""
    v = ctx.vars
    if ctx.event.get("caller_gone"):
        v.caller_gone = True
    script = ctx.event.get("script")
    if script is not None:
        v.script = script
        v.verb_index = 0


def _a_dialog(v: CallVars) -> Dialog | None:
    return v.call.a_dialog if v.call is not None else None


@guard()
def call_over(ctx: Ctx[CallVars], p: object) -> bool:
    """The caller left (CANCEL/BYE) or was rejected with a final response (D-11, D-12)."""
    v = ctx.vars
    if v.caller_gone:
        return True
    return bool(v.req.final_sent) and _a_dialog(v) is None


@guard()
def has_next_verb(ctx: Ctx[CallVars], p: object) -> bool:
    script = ctx.vars.script
    return script is not None and ctx.vars.verb_index < len(script)


def call_state(ctx: Ctx[CallVars]) -> CallShared:
    """The call's shared record, created when the first verb starts (routing is done)."""
    v = ctx.vars
    if v.call is None:
        assert isinstance(ctx, Instance)  # the runtime calls every action with its instance
        v.call = CallShared(session=ctx, req=v.req, domain=domain(ctx), route=v.route,
                            trunk=v.trunk, caller_binding=v.caller_binding)
    return v.call


@action(emits=("verb.done",), outcomes=("verb.done",))
async def start_verb(ctx: Ctx[CallVars], p: object) -> None:
    """Run the next verb as a child machine (machines/verbs/<verb>.yaml), giving it the
    call's shared record and its verb."""
    script = ctx.vars.script
    assert script is not None  # the machine checked session.has_next_verb
    verb = script[ctx.vars.verb_index]
    ctx.vars.verb_index += 1
    ctx.vars.current_verb = ctx.spawn_child(
        VERB_MACHINES[verb.name], vars={"call": call_state(ctx), "verb": verb},
        done="verb.done")


def _running_verb(ctx: Ctx[CallVars]) -> Instance | None:
    child = ctx.vars.current_verb
    return child if child is not None and not child.done else None


@guard()
def verb_running(ctx: Ctx[CallVars], p: object) -> bool:
    return _running_verb(ctx) is not None


@action()
async def mark_caller_gone(ctx: Ctx[CallVars], p: object) -> None:
    ctx.vars.caller_gone = True


@action()
async def abort_verb(ctx: Ctx[CallVars], p: object) -> None:
    """Tell the running verb the caller left; it stops its legs and media, then ends."""
    child = _running_verb(ctx)
    if child is not None:
        child.post("abort", {"by": ctx.event.name})


@action()
async def forward_to_verb(ctx: Ctx[CallVars], p: object) -> None:
    """Hand an A-leg in-dialog request to the running verb (the one owner of the legs)."""
    child = _running_verb(ctx)
    if child is not None:
        child.post(ctx.event.name, ctx.event.data)
        return
    await default_in_dialog_answer(_a_dialog(ctx.vars), ctx.event.data.get("req"))


async def default_in_dialog_answer(dialog: Dialog | None,
                                   req: IncomingRequest | None) -> None:
    """Nobody handles it now: a re-INVITE/UPDATE gets our current SDP, others 200."""
    if req is None or req.final_sent:
        return
    if req.method in ("INVITE", "UPDATE") and dialog is not None and dialog.local_sdp:
        await req.reply(200, "OK", body=dialog.local_sdp, content_type="application/sdp")
    else:
        await req.reply(200, "OK")


def session_vars(ctx: Ctx[VerbVars]) -> CallShared:
    """The call's shared record a verb (or a leg, a relay) was given."""
    return ctx.vars.call


@dataclass(frozen=True)
class InDialogReply:
    status: int
    reason: str | None = None


@action(params=InDialogReply)
async def reply_in_dialog(ctx: Ctx[object], p: InDialogReply) -> None:
    """Answer the in-dialog request carried by the current event."""
    req = ctx.event.get("req")
    if req is not None and not req.final_sent:
        await req.reply(p.status, p.reason)


@guard()
def answered(ctx: Ctx[CallVars | VerbVars], p: object) -> bool:
    """The caller's leg is answered and still up (asked by the session or a verb)."""
    v = ctx.vars
    dialog = _a_dialog(v) if isinstance(v, CallVars) else v.call.a_dialog
    return dialog is not None and dialog.connected


@guard()
def can_retry(ctx: Ctx[CallVars], p: object) -> bool:
    """Another CallHook round is allowed (count < CALLHOOK_MAX_RETRIES) and the caller waits."""
    v = ctx.vars
    return not v.caller_gone and v.count < ctx.services.settings.callhook_max_retries


@action()
async def count_retry(ctx: Ctx[CallVars], p: object) -> None:
    """The next CallHook request carries count+1 (D-2: its new script is the one that runs)."""
    ctx.vars.count += 1


@action(emits=("session.bye_done",), outcomes=("session.bye_done",))
async def bye_caller(ctx: Ctx[CallVars], p: object) -> None:
    """Hang up the caller's leg (BYE) if it is up."""
    dialog = _a_dialog(ctx.vars)

    async def bye() -> None:
        if dialog is not None and dialog.connected:
            await dialog.bye()

    ctx.start(bye(), done="session.bye_done", error="session.bye_done")


@action()
async def bye_caller_now(ctx: Ctx[CallVars], p: object) -> None:
    """Hang up the caller in the background (clean-up of a failed call)."""
    dialog = _a_dialog(ctx.vars)
    if dialog is not None and dialog.connected:
        ctx.runtime.background(dialog.bye(), "BYE caller")


def attach_caller_dialog(call: CallShared, dialog: Dialog) -> None:
    """The caller is answered: route the A dialog's in-dialog requests to the session as
    a.* events."""
    call.a_dialog = dialog
    session = call.session

    def forward(event: str) -> Callable[[IncomingRequest], None]:
        def listener(req: IncomingRequest) -> None:
            session.post(event, {"req": req})
        return listener

    dialog.on("bye", forward("a.bye"))
    dialog.on("reinvite", forward("a.reinvite"))
    dialog.on("update", forward("a.update"))
    dialog.on("info", forward("a.info"))
    dialog.on("refer", forward("a.refer"))


__all__ = ["attach_caller_dialog", "default_in_dialog_answer", "send_reply"]
