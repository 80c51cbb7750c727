"""Facts about the SIP request an instance handles, parsed once and cached in ``ctx.vars``.

Not an action namespace (the leading underscore keeps it out of the registry):
guards and actions of several namespaces share these helpers.
"""

from __future__ import annotations

from typing import Any

from engine.sip.digest import DigestCredentials, find_credentials
from engine.sip.errors import SipParseError

MALFORMED = object()  # cached marker: an Authorization header that cannot be parsed


def request(ctx: Any) -> Any:
    """The IncomingRequest (``ctx.vars.req``)."""
    return ctx.vars.req


def domain(ctx: Any) -> str:
    """Request-URI host without port (IPv6 keeps its brackets), as the original keys it."""
    value = getattr(ctx.vars, "domain", None)
    if value is None:
        value = ctx.vars.domain = ctx.vars.req.message.request_uri.host
    return value


def aor_user(ctx: Any) -> str | None:
    """The To URI user: the address-of-record a REGISTER binds, the number an INVITE dials."""
    return ctx.vars.req.message.to.uri.user


def from_user(ctx: Any) -> str | None:
    return ctx.vars.req.message.from_.uri.user


def credentials(ctx: Any, *, proxy: bool = False) -> DigestCredentials | object | None:
    """The request's digest credentials for our realm, None, or ``MALFORMED``."""
    if not hasattr(ctx.vars, "creds"):
        try:
            ctx.vars.creds = find_credentials(ctx.vars.req.message, domain(ctx), proxy=proxy)
        except SipParseError:
            ctx.vars.creds = MALFORMED
    return ctx.vars.creds


def valid_credentials(ctx: Any) -> DigestCredentials:
    creds = credentials(ctx)
    if not isinstance(creds, DigestCredentials):
        raise ValueError("no usable credentials (machine checked auth.has_credentials?)")
    return creds


def requested_expires(ctx: Any) -> int | None:
    """Expiry the REGISTER asks for: the first Contact's ``expires``, else ``Expires``."""
    if not hasattr(ctx.vars, "requested_expires"):
        msg = ctx.vars.req.message
        value: int | None = None
        contacts = [] if msg.contact_is_star else msg.contacts
        if contacts:
            raw = contacts[0].params.get("expires")
            if raw is not None and raw.strip().isdigit():
                value = int(raw)
        if value is None:
            value = msg.expires
        ctx.vars.requested_expires = value
    return ctx.vars.requested_expires
