"""``log.*``: write a structured log line from a machine (with its state and event), and
``log.summary``, the one line a registration or a call leaves when it ends."""

from __future__ import annotations

import functools
import logging
import string
from dataclasses import dataclass, field
from typing import Any

from engine.actions._context import Ctx
from engine.fsm import action
from engine.log import get_logger
from engine.machine_vars import (
    CallVars,
    LegVars,
    RegistrationVars,
    RequestVars,
    TrunkRegistrationVars,
)
from engine.sip.digest import DigestCredentials

# -------------------------------------------------------------------------- log.*
# A log.* message may name fields of its instance in braces: "call from {from} to {to}".
# Only the names in TEMPLATE_FIELDS, looked up by the code below: a template can never
# reach an attribute, an index or a format spec ("{x.__class__}", "{a[0]}", "{x:>99999}"
# are refused when the machine is loaded, as are unknown names), so a machine file
# cannot read what it was not given nor make a huge string. "{{" and "}}" are braces.

TEMPLATE_FIELDS: dict[str, str] = {
    "call_id": "the call's Call-ID (the A leg's, also in a verb, call leg or digest_auth)",
    "leg_call_id": "a call leg's own (B-leg) Call-ID, once its INVITE is sent",
    "from": "the caller's user (the request's From)",
    "to": "the dialled number (the request's To user)",
    "domain": "the domain the request is for",
    "trunk": "the trunk the call came from",
    "source": "the client's address and port",
    "status": "the current event's SIP status, else the final status sent to the client",
    "machine": "the machine and its version (name@version)",
    "state": "the current state",
    "event": "the event being handled",
    "instance": "the instance's id",
}
MISSING = "-"  # a known field with no value here (no trunk, no status yet)

_Part = tuple[str, str | None]  # literal text, then the field that follows it (or None)


@functools.lru_cache(maxsize=256)
def compile_template(message: str) -> tuple[_Part, ...]:
    """Parse ``message`` into (text, field) parts; ValueError names what is refused."""
    try:
        parsed = list(string.Formatter().parse(message))
    except ValueError as exc:  # a lone "{" or "}"
        raise ValueError(f"message {message!r}: {exc} (write {{{{ and }}}} for braces)") \
            from None
    parts: list[_Part] = []
    for text, name, spec, conversion in parsed:
        if name is None:
            parts.append((text, None))
            continue
        if not name or "." in name or "[" in name or name.isdigit():
            raise ValueError(f"message {message!r}: {{{name}}} is refused; only plain "
                             f"field names: {', '.join(TEMPLATE_FIELDS)}")
        if spec or conversion:
            raise ValueError(f"message {message!r}: {{{name}}} takes no format spec or "
                             "conversion")
        if name not in TEMPLATE_FIELDS:
            raise ValueError(f"message {message!r}: unknown field {{{name}}}; known: "
                             f"{', '.join(TEMPLATE_FIELDS)}")
        parts.append((text, name))
    return tuple(parts)


def _root_vars(ctx: Ctx[object]) -> object:
    """The variables of the instance that owns the call's request (the root ancestor)."""
    vars_: object = ctx.vars
    node = ctx.parent
    for _ in range(16):  # bounded: parents form a short chain (call → verb → leg)
        if node is None:
            break
        vars_, node = node.vars, node.parent
    return vars_


def template_value(ctx: Ctx[object], name: str) -> Any:
    """The value of TEMPLATE_FIELDS' ``name`` for instance ``ctx`` (None when it has none)."""
    if name == "call_id":
        return ctx.call_id
    if name == "leg_call_id":
        return ctx.vars.leg_call_id if isinstance(ctx.vars, LegVars) else None
    if name == "machine":
        return ctx.machine.label
    if name == "state":
        return ctx.state
    if name == "event":
        return ctx.event.name or None
    if name == "instance":
        return ctx.id
    root = _root_vars(ctx)
    if name == "trunk":
        trunk = root.trunk if isinstance(root, CallVars | TrunkRegistrationVars) else None
        return trunk.display_name if trunk is not None else None
    if not isinstance(root, RequestVars):
        return ctx.event.get("status") if name == "status" else None
    req = root.req
    msg = req.message
    if name == "status":
        return ctx.event.get("status") or req.final_status or root.reply_status
    if name == "domain":
        return root.domain or msg.to.uri.host
    if name == "to":
        return (root.dialled if isinstance(root, CallVars) else None) or msg.to.uri.user
    if name == "from":
        return msg.from_.uri.user
    if name == "source":
        return f"{req.source.host}:{req.source.port}"
    return None


def render(ctx: Ctx[object], message: str) -> str:
    """``message`` with its fields filled in from ``ctx`` (see TEMPLATE_FIELDS)."""
    parts = compile_template(message)
    if len(parts) == 1 and parts[0][1] is None:
        return message  # no fields: the common case costs nothing
    out: list[str] = []
    for text, name in parts:
        out.append(text)
        if name is not None:
            try:
                value = template_value(ctx, name)
            except Exception:  # a log line never fails its machine over a missing detail
                value = None
            out.append(MISSING if value is None or value == "" else str(value))
    return "".join(out)


@dataclass(frozen=True)
class LogParams:
    message: str = field(metadata={
        "doc": "the text; may name instance fields in braces, e.g. 'call from {from} to {to}' "
               "(call_id, leg_call_id, from, to, domain, trunk, source, status, machine, "
               "state, event, instance)"})
    fields: dict[str, Any] = field(default_factory=dict)

    def __post_init__(self) -> None:
        compile_template(self.message)  # refused fields fail the machine's load (E013)


def _fields(ctx: Ctx[object], p: LogParams) -> dict[str, Any]:
    return {"machine": ctx.machine.label, "state": ctx.state, "event": ctx.event.name,
            **dict(p.fields)}


@action(params=LogParams)
async def info(ctx: Ctx[object], p: LogParams) -> None:
    """Log ``message`` at info level."""
    log = ctx.log
    if log.is_enabled(logging.INFO):
        log.info(render(ctx, p.message), **_fields(ctx, p))


@action(params=LogParams)
async def warn(ctx: Ctx[object], p: LogParams) -> None:
    """Log ``message`` at warning level."""
    log = ctx.log
    if log.is_enabled(logging.WARNING):
        log.warning(render(ctx, p.message), **_fields(ctx, p))


@action(params=LogParams)
async def error(ctx: Ctx[object], p: LogParams) -> None:
    """Log ``message`` at error level, with the error of the current event if any."""
    log = ctx.log
    if not log.is_enabled(logging.ERROR):
        return
    err = ctx.event.get("error")
    extra = {"error": repr(err)} if err is not None else {}
    log.error(render(ctx, p.message), **_fields(ctx, p), **extra)


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
async def summary(ctx: Ctx[RequestVars], p: SummaryParams) -> None:
    """The one summary line of a registration or call (info; debug for a challenge)."""
    v = ctx.vars
    req = v.req
    status = req.final_status or v.reply_status
    outcome = p.outcome or _outcome(v, status)
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
    if isinstance(v, RegistrationVars):
        fields["aor"] = f"{msg.to.uri.user}@{v.domain or msg.to.uri.host}"
        if v.binding is not None and outcome != "rejected":
            fields["expires"] = v.binding[1]
    else:
        fields["from"] = msg.from_.uri.user
        fields["to"] = (v.dialled if isinstance(v, CallVars) else None) or msg.to.uri.user
    if isinstance(v, CallVars) and v.trunk is not None:
        fields["trunk"] = v.trunk.display_name
    if isinstance(v.creds, DigestCredentials):
        fields["username"] = v.creds.username
    if isinstance(v, CallVars) and v.call is not None and v.call.leg_call_ids:
        # the B legs' Call-IDs: grep on either finds the call
        fields["legs"] = list(v.call.leg_call_ids)
    if v.reply_why and outcome != "challenged":
        fields["why"] = v.reply_why
    if level == logging.INFO:
        summary_log.info(f"{p.what} summary", **fields)
    else:
        summary_log.debug(f"{p.what} summary", **fields)


def _outcome(v: RequestVars, status: int | None) -> str:
    """The outcome word for a final response ``status`` (see ``SummaryParams``)."""
    req = v.req
    if status is None:
        return "ended"
    if 200 <= status < 300:
        if req.method != "REGISTER":
            return "completed"
        if isinstance(v, RegistrationVars) and v.removed:
            return "unregistered"
        msg = req.message
        return "registered" if msg.contacts or msg.contact_is_star else "queried"
    if v.reply_challenge and status in (401, 407):
        return "challenged"
    if status == 487 or req.cancelled:
        return "cancelled"
    return "rejected"
