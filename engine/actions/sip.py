"""``sip.*``: answer the request an instance handles.

Every rejection carries its status, an ``X-Reason`` header naming the cause
(``why``) and one log line, so an operator can tell from either end why a
request failed.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.fsm import action, guard
from engine.log import get_logger

log = get_logger("engine.sip.reply")


@dataclass(frozen=True)
class ReplyParams:
    status: int = field(metadata={"doc": "SIP status code (100-699)"})
    reason: str | None = field(default=None, metadata={"doc": "reason phrase"})
    why: str | None = field(default=None, metadata={"doc": "cause, sent as X-Reason and logged"})
    retry_after: int | None = field(default=None, metadata={"doc": "Retry-After seconds"})
    headers: dict[str, str] = field(default_factory=dict, metadata={"doc": "extra headers"})


async def send_reply(ctx: Any, status: int, reason: str | None = None, *,
                     why: str | None = None, headers: list[tuple[str, str]] | None = None,
                     body: bytes = b"", content_type: str | None = None) -> None:
    """Reply to ``ctx.vars.req`` unless a final response already went out."""
    req = ctx.vars.req
    if req.final_sent:
        log.debug("reply skipped: final response already sent", status=status,
                  call_id=req.call_id)
        return
    hdrs = list(headers or ())
    if why:
        hdrs.append(("X-Reason", why))
    if status >= 300:
        src = req.source
        log.info("request rejected", method=req.method, status=status, why=why,
                 call_id=req.call_id, source=f"{src.host}:{src.port}",
                 machine=f"{ctx.machine.name}@{ctx.state}")
    await req.reply(status, reason, headers=hdrs, body=body, content_type=content_type)


@action(params=ReplyParams)
async def reply(ctx: Any, p: ReplyParams) -> None:
    """Send a response (skipped if a final response was already sent)."""
    headers = list(p.headers.items())
    if p.retry_after is not None:
        headers.append(("Retry-After", str(p.retry_after)))
    await send_reply(ctx, p.status, p.reason, why=p.why, headers=headers)


@guard()
def final_sent(ctx: Any, p: Any) -> bool:
    """A final response has already been sent on the request."""
    return bool(ctx.vars.req.final_sent)
