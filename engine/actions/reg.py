"""``reg.*``: registrar rules (RFC 3261 §10.3) and the registration replies.

Compatible where it matters: the key is ``client:{domain}:{user}``, the 200
carries ``Expires``; fixed where the original was wrong (D-10): the granted
expiry is min(requested, grant) clamped to REGISTRATION_MIN/MAX_SECS, a
request below the minimum gets 423 with Min-Expires, ``Expires: 0`` removes
the binding, a REGISTER without Contact is a query, and the 200 lists the
binding with its expiry.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.actions._context import Ctx
from engine.actions._request import aor_user, from_user, requested_expires, valid_credentials
from engine.actions.sip import send_reply
from engine.config.model import PasswordClient
from engine.fsm import action, guard
from engine.machine_vars import AuthenticatedVars, DigestAuthVars, RegistrationVars
from engine.settings import Settings
from engine.store.codec import JsonText


@dataclass(frozen=True)
class Grant:
    """What authentication allowed: limits and the client's call settings."""

    expires: int | None
    dialplan: Any
    codecs: Any
    aor: str | None = None


@action()
async def grant_from_config(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """The static-password client's settings become the grant."""
    match = ctx.vars.client_match
    assert isinstance(match, PasswordClient)  # digest_auth checked config.client_has_password
    client = match.client
    ctx.vars.grant = Grant(
        expires=client.expires,
        # the config's dialplan keeps its JSON text: stored as is, not re-encoded each time
        dialplan=JsonText(client.dialplan.to_json()) if client.dialplan is not None else None,
        codecs=list(client.codecs) if client.codecs is not None else None,
    )


@guard()
def identity_allowed(ctx: Ctx[RegistrationVars], p: object) -> bool:
    """The credentials may bind this AOR: digest username = To user = From user, or the
    RegHook named this AOR (S-2)."""
    aor = aor_user(ctx)
    if not aor:
        return False
    grant = ctx.vars.grant
    if grant is not None and grant.aor:
        return grant.aor == aor
    return valid_credentials(ctx).username == aor and from_user(ctx) == aor


def _settings(ctx: Ctx[object]) -> Settings:
    return ctx.services.settings


@guard()
def is_query(ctx: Ctx[RegistrationVars], p: object) -> bool:
    """No Contact header: the client asks for its current bindings."""
    msg = ctx.vars.req.message
    return not msg.contact_is_star and not msg.contacts


@guard()
def is_removal(ctx: Ctx[RegistrationVars], p: object) -> bool:
    """``Contact: *`` or an expiry of 0 removes the binding."""
    msg = ctx.vars.req.message
    return bool(msg.contact_is_star) or requested_expires(ctx) == 0


@guard()
def too_brief(ctx: Ctx[RegistrationVars], p: object) -> bool:
    """A requested expiry above 0 but below REGISTRATION_MIN_SECS (→ 423)."""
    requested = requested_expires(ctx)
    return requested is not None and 0 < requested < _settings(ctx).registration_min_secs


def granted_expires(ctx: Ctx[AuthenticatedVars]) -> int:
    """min(requested, grant limit), clamped to [REGISTRATION_MIN_SECS, REGISTRATION_MAX_SECS]."""
    settings = _settings(ctx)
    requested = requested_expires(ctx)
    grant = ctx.vars.grant
    limit = grant.expires if grant is not None and grant.expires else None
    candidates = [v for v in (requested, limit) if v]
    value = min(candidates) if candidates else settings.registration_max_secs
    return max(settings.registration_min_secs, min(value, settings.registration_max_secs))


@action()
async def reply_interval_too_brief(ctx: Ctx[RegistrationVars], p: object) -> None:
    """423 Interval Too Brief with Min-Expires."""
    minimum = _settings(ctx).registration_min_secs
    await send_reply(ctx, 423, "Interval Too Brief",
                     why=f"expiry below the minimum of {minimum}s",
                     headers=[("Min-Expires", str(minimum))])


@action()
async def reply_bindings(ctx: Ctx[RegistrationVars], p: object) -> None:
    """200 OK listing the current binding (if any) with its remaining expiry."""
    binding = ctx.vars.binding
    headers: list[tuple[str, str]] = []
    if binding is not None:
        contact, expires = binding
        headers.append(("Contact", f"<{contact}>;expires={expires}"))
        headers.append(("Expires", str(expires)))
    elif ctx.vars.removed:
        headers.append(("Expires", "0"))
    await send_reply(ctx, 200, "OK", headers=headers)
