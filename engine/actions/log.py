"""``log.*``: write a structured log line from a machine (with its state and event), and
``log.summary``, the one line a registration or a call leaves when it ends."""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from typing import Any

from engine.fsm import action
from engine.log import get_logger
from engine.sip.digest import DigestCredentials


@dataclass(frozen=True)
class LogParams:
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def _fields(ctx: Any, p: LogParams) -> dict[str, Any]:
    return {"machine": ctx.machine.label, "state": ctx.state, "event": ctx.event.name,
            **dict(p.fields)}


@action(params=LogParams)
async def info(ctx: Any, p: LogParams) -> None:
    """Log ``message`` at info level."""
    ctx.log.info(p.message, **_fields(ctx, p))


@action(params=LogParams)
async def warn(ctx: Any, p: LogParams) -> None:
    """Log ``message`` at warning level."""
    ctx.log.warning(p.message, **_fields(ctx, p))


@action(params=LogParams)
async def error(ctx: Any, p: LogParams) -> None:
    """Log ``message`` at error level, with the error of the current event if any."""
    err = ctx.event.get("error")
    extra = {"error": repr(err)} if err is not None else {}
    ctx.log.error(p.message, **_fields(ctx, p), **extra)


# -------------------------------------------------------------------------- summaries
# One line per registration or call, written when it ends (at a final state of
# registration.yaml / inbound_call.yaml). It is what an operator reads at
# LOGLEVEL=info: the outcome, the final status, how long it took, who and from
# where — and for a rejection its reason and the digest username (for fail2ban).
# A digest challenge (the normal first 401/407) is logged at debug only.

summary_log = get_logger("engine.summary")


@dataclass(frozen=True)
class SummaryParams:
    what: str = field(metadata={"doc": "registration or call: the line reads '<what> summary'"})
    outcome: str | None = field(default=None, metadata={
        "doc": "outcome word; default from the final response: registered/unregistered/"
               "queried or completed (2xx), challenged, cancelled (487), rejected"})


@action(params=SummaryParams)
async def summary(ctx: Any, p: SummaryParams) -> None:
    """The one summary line of a registration or call (info; debug for a challenge)."""
    v = ctx.vars
    req = getattr(v, "req", None)
    if req is None:
        return
    status = getattr(req, "final_status", None) or getattr(v, "reply_status", None)
    outcome = p.outcome or _outcome(v, req, status)
    level = logging.DEBUG if outcome == "challenged" else logging.INFO
    if not summary_log.is_enabled(level):
        return
    src = req.source
    fields: dict[str, Any] = {
        "outcome": outcome, "status": status,
        "ms": round((ctx.runtime.clock.time() - ctx.created) * 1000),
        "call_id": req.call_id, "source": f"{src.host}:{src.port}",
    }
    msg = req.message
    if req.method == "REGISTER":
        fields["aor"] = f"{msg.to.uri.user}@{getattr(v, 'domain', None) or msg.to.uri.host}"
        binding = getattr(v, "binding", None)
        if binding is not None and outcome != "rejected":
            fields["expires"] = binding[1]
    else:
        fields["from"] = msg.from_.uri.user
        fields["to"] = getattr(v, "dialled", None) or msg.to.uri.user
        trunk = getattr(v, "trunk", None)
        if trunk is not None:
            fields["trunk"] = trunk.display_name
    creds = getattr(v, "creds", None)
    if isinstance(creds, DigestCredentials):
        fields["username"] = creds.username
    why = getattr(v, "reply_why", None)
    if why and outcome != "challenged":
        fields["why"] = why
    if level == logging.INFO:
        summary_log.info(f"{p.what} summary", **fields)
    else:
        summary_log.debug(f"{p.what} summary", **fields)


def _outcome(v: Any, req: Any, status: int | None) -> str:
    """The outcome word for a final response ``status`` (see ``SummaryParams``)."""
    if status is None:
        return "ended"
    if 200 <= status < 300:
        if req.method != "REGISTER":
            return "completed"
        if getattr(v, "removed", False):
            return "unregistered"
        msg = req.message
        return "registered" if msg.contacts or msg.contact_is_star else "queried"
    if getattr(v, "reply_challenge", False) and status in (401, 407):
        return "challenged"
    if status == 487 or getattr(req, "cancelled", False):
        return "cancelled"
    return "rejected"
