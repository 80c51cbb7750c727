"""``auth.*``: the digest challenge and credential checks (server side, S-3).

Nonces are stateless HMACs (any instance with the same NONCE_SECRET verifies
them); the nonce-count high-water mark lives in the state store so a captured
request cannot be replayed against another instance.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Literal

from engine.actions._request import MALFORMED, credentials, domain, valid_credentials
from engine.actions.sip import send_reply
from engine.errors import StoreError
from engine.fsm import Outcome, action, guard
from engine.sip.digest import DigestOutcome


@dataclass(frozen=True)
class NonceIs:
    outcome: Literal["ok", "stale", "bad_nonce", "wrong_realm", "unsupported_algorithm",
                     "malformed"]


@guard()
def has_credentials(ctx: Any, p: Any) -> bool:
    """The request carries an Authorization header (well formed or not)."""
    return credentials(ctx) is not None


@guard()
def malformed(ctx: Any, p: Any) -> bool:
    """The Authorization header cannot be parsed or lacks required fields (→ 400)."""
    creds = credentials(ctx)
    if creds is MALFORMED:
        return True
    return creds is not None and _static(ctx) is DigestOutcome.MALFORMED


def _static(ctx: Any) -> DigestOutcome:
    outcome = getattr(ctx.vars, "nonce_outcome", None)
    if outcome is None:
        outcome = ctx.vars.nonce_outcome = ctx.services.digest.check_static(
            valid_credentials(ctx), realm=domain(ctx))
    return outcome


@guard(params=NonceIs)
def nonce_is(ctx: Any, p: NonceIs) -> bool:
    """Result of the password-free checks (realm, algorithm, our nonce, fresh)."""
    creds = credentials(ctx)
    if creds is None or creds is MALFORMED:
        return False
    return _static(ctx).value == p.outcome


@action()
async def mark_stale(ctx: Any, p: Any) -> None:
    """The next challenge carries stale=true (the client may retry without asking the user)."""
    ctx.vars.stale = True


@action()
async def challenge(ctx: Any, p: Any) -> None:
    """401 with WWW-Authenticate: realm = the domain, a fresh nonce, qop=auth."""
    headers = ctx.services.digest.challenge_headers(
        domain(ctx), stale=bool(getattr(ctx.vars, "stale", False)))
    await send_reply(ctx, 401, "Unauthorized", headers=headers)


_VERIFY_EVENTS = {
    DigestOutcome.OK: "auth.ok",
    DigestOutcome.STALE: "auth.stale",
    DigestOutcome.REPLAY: "auth.replay",
}


@action(emits=("auth.ok", "auth.stale", "auth.replay", "auth.bad", "auth.error"),
        outcomes=("auth.ok", "auth.stale", "auth.replay", "auth.bad", "auth.error"))
async def verify_password(ctx: Any, p: Any) -> None:
    """Check the digest response with the client's static password (the nc count is
    advanced in the store only for a correct response)."""
    creds = valid_credentials(ctx)
    password = ctx.vars.client_match.client.password
    realm = domain(ctx)
    method = ctx.vars.req.method

    static = getattr(ctx.vars, "nonce_outcome", None)

    async def verify() -> Outcome:
        outcome = await ctx.services.digest.verify(creds, method=method, realm=realm,
                                                   password=password, static=static)
        return Outcome(_VERIFY_EVENTS.get(outcome, "auth.bad"), {"outcome": outcome.value})

    ctx.start(verify(), done="auth.ok", error="auth.error")


@action(emits=("auth.ok", "auth.replay", "auth.error"),
        outcomes=("auth.ok", "auth.replay", "auth.error"))
async def advance_nonce_count(ctx: Any, p: Any) -> None:
    """Record the credentials' nonce count; a count already seen is a replay."""
    creds = valid_credentials(ctx)
    digest = ctx.services.digest

    async def advance() -> Outcome:
        counter = digest.counter
        if counter is None or creds.nc is None:
            return Outcome("auth.ok")
        try:
            fresh = await counter.advance(creds.nonce, int(creds.nc, 16), digest.ttl + 60)
        except StoreError as exc:
            return Outcome("auth.error", {"error": exc})
        return Outcome("auth.ok" if fresh else "auth.replay")

    ctx.start(advance(), done="auth.ok", error="auth.error")


@action(emits=("auth.ok", "auth.stale", "auth.replay", "auth.bad", "auth.error"),
        outcomes=("auth.ok", "auth.stale", "auth.replay", "auth.bad", "auth.error"))
async def verify_trunk_password(ctx: Any, p: Any) -> None:
    """Check the digest response against each auth trunk whose authUser is the username;
    the first that verifies is the calling trunk."""
    creds = valid_credentials(ctx)
    trunks = ctx.vars.auth_trunks
    realm = domain(ctx)
    method = ctx.vars.req.method
    digest = ctx.services.digest

    async def verify() -> Outcome:
        outcome = DigestOutcome.BAD_RESPONSE
        for trunk in trunks:
            outcome = await digest.verify(creds, method=method, realm=realm,
                                          password=trunk.auth_pass)
            if outcome is not DigestOutcome.BAD_RESPONSE:
                ctx.vars.candidate_trunk = trunk
                break
        return Outcome(_VERIFY_EVENTS.get(outcome, "auth.bad"), {"outcome": outcome.value})

    ctx.start(verify(), done="auth.ok", error="auth.error")
