"""``sip.*``: answer the request an instance handles.

Every rejection carries its status and an ``X-Reason`` header naming the cause
(``why``); the same cause is in the instance's summary line (``log.summary``), so
an operator can tell from either end why a request failed.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field

from engine.actions._context import Ctx
from engine.fsm import action, guard
from engine.log import get_logger
from engine.machine_vars import RequestVars

log = get_logger("engine.sip.reply")

_CHALLENGE_HEADERS = frozenset({"www-authenticate", "proxy-authenticate"})


@dataclass(frozen=True)
class ReplyParams:
    status: int = field(metadata={"doc": "SIP status code (100-699)"})
    reason: str | None = field(default=None, metadata={"doc": "reason phrase"})
    why: str | None = field(default=None, metadata={"doc": "cause, sent as X-Reason and logged"})
    retry_after: int | None = field(default=None, metadata={"doc": "Retry-After seconds"})
    headers: dict[str, str] = field(default_factory=dict, metadata={"doc": "extra headers"})


async def send_reply(ctx: Ctx[RequestVars], status: int, reason: str | None = None, *,
                     why: str | None = None, headers: list[tuple[str, str]] | None = None,
                     body: bytes = b"", content_type: str | None = None) -> None:
    """Reply to ``ctx.vars.req`` unless a final response already went out.

    A rejection's status and ``why`` are kept in ``ctx.vars`` (``reply_status``,
    ``reply_why``, ``reply_challenge``) for the instance's ``log.summary`` line, the one
    an operator sees at info; here it is a debug line. A 401/407 carrying a challenge is
    the normal first step of digest authentication, not a rejection."""
    req = ctx.vars.req
    if req.final_sent:
        log.debug("reply skipped: final response already sent", status=status,
                  call_id=req.call_id)
        return
    hdrs = list(headers or ())
    if why:
        hdrs.append(("X-Reason", why))
    if status >= 200:
        ctx.vars.reply_status = status
    if status >= 300:
        challenge = status in (401, 407) and any(
            n.lower() in _CHALLENGE_HEADERS for n, _ in hdrs)
        ctx.vars.reply_why = why
        ctx.vars.reply_challenge = challenge
        if log.is_enabled(logging.DEBUG):
            src = req.source
            log.debug("challenge sent" if challenge else "request rejected",
                      method=req.method, status=status, why=why, call_id=req.call_id,
                      source=f"{src.host}:{src.port}",
                      machine=f"{ctx.machine.name}@{ctx.state}")
    await req.reply(status, reason, headers=hdrs, body=body, content_type=content_type)


@action(params=ReplyParams)
async def reply(ctx: Ctx[RequestVars], p: ReplyParams) -> None:
    """Send a response (skipped if a final response was already sent)."""
    headers = list(p.headers.items())
    if p.retry_after is not None:
        headers.append(("Retry-After", str(p.retry_after)))
    await send_reply(ctx, p.status, p.reason, why=p.why, headers=headers)


@guard()
def final_sent(ctx: Ctx[RequestVars], p: object) -> bool:
    """A final response has already been sent on the request."""
    return bool(ctx.vars.req.final_sent)
