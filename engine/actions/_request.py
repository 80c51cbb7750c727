"""Facts about the SIP request an instance handles, parsed once and cached in ``ctx.vars``.

Not an action namespace (the leading underscore keeps it out of the registry):
guards and actions of several namespaces share these helpers. They work on any
machine whose variables are ``RequestVars`` (registration, digest_auth,
inbound_call).
"""

from __future__ import annotations

from engine.actions._context import Ctx
from engine.machine_vars import MALFORMED, Malformed, RequestVars
from engine.ports import IncomingRequest
from engine.sip.digest import DigestCredentials, find_credentials
from engine.sip.errors import SipParseError

__all__ = ["MALFORMED", "aor_user", "credentials", "domain", "from_user", "request",
           "requested_expires", "valid_credentials"]


def request(ctx: Ctx[RequestVars]) -> IncomingRequest:
    """The IncomingRequest (``ctx.vars.req``)."""
    return ctx.vars.req


def domain(ctx: Ctx[RequestVars]) -> str:
    """Request-URI host without port (IPv6 keeps its brackets), as the original keys it."""
    value = ctx.vars.domain
    if value is None:
        value = ctx.vars.domain = str(ctx.vars.req.message.request_uri.host)
    return value


def aor_user(ctx: Ctx[RequestVars]) -> str | None:
    """The To URI user: the address-of-record a REGISTER binds, the number an INVITE dials."""
    user: str | None = ctx.vars.req.message.to.uri.user
    return user


def from_user(ctx: Ctx[RequestVars]) -> str | None:
    user: str | None = ctx.vars.req.message.from_.uri.user
    return user


def credentials(ctx: Ctx[RequestVars], *,
                proxy: bool = False) -> DigestCredentials | Malformed | None:
    """The request's digest credentials for our realm, None, or ``MALFORMED``."""
    v = ctx.vars
    if not v.creds_parsed:
        try:
            v.creds = find_credentials(v.req.message, domain(ctx), proxy=proxy)
        except SipParseError:
            v.creds = MALFORMED
        v.creds_parsed = True
    return v.creds


def valid_credentials(ctx: Ctx[RequestVars]) -> DigestCredentials:
    creds = credentials(ctx)
    if not isinstance(creds, DigestCredentials):
        raise ValueError("no usable credentials (machine checked auth.has_credentials?)")
    return creds


def requested_expires(ctx: Ctx[RequestVars]) -> int | None:
    """Expiry the REGISTER asks for: the first Contact's ``expires``, else ``Expires``."""
    v = ctx.vars
    if not v.expires_read:
        msg = v.req.message
        value: int | None = None
        contacts = [] if msg.contact_is_star else msg.contacts
        if contacts:
            raw = contacts[0].params.get("expires")
            if raw is not None and raw.strip().isdigit():
                value = int(raw)
        if value is None:
            value = msg.expires
        v.requested_expires = value
        v.expires_read = True
    return v.requested_expires
