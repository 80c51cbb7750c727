"""``auth.*``: the digest challenge and credential checks (server side, S-3).

The flow is ``machines/digest_auth.yaml``, run as a child machine by the
registration and call machines (``auth.authenticate``): the parent passes the
request and the challenge kind in, the child answers challenges and refusals
itself and reports its ending and what it granted as ``auth.<ending>``.

Nonces are stateless HMACs (any instance with the same NONCE_SECRET verifies
them); the nonce-count high-water mark lives in the state store so a captured
request cannot be replayed against another instance.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any, Literal

from engine.actions._context import Ctx
from engine.actions._request import MALFORMED, credentials, domain, valid_credentials
from engine.actions.sip import send_reply
from engine.config.model import PasswordClient
from engine.errors import StoreError
from engine.fsm import Outcome, action, guard
from engine.fsm.runtime import DONE, Instance
from engine.machine_vars import AuthenticatedVars, DigestAuthVars, Malformed
from engine.ports import IncomingRequest
from engine.sip.digest import DigestCredentials, DigestOutcome


@dataclass(frozen=True)
class NonceIs:
    outcome: Literal["ok", "stale", "bad_nonce", "wrong_realm", "unsupported_algorithm",
                     "malformed"]


def _credentials(ctx: Ctx[DigestAuthVars]) -> DigestCredentials | Malformed | None:
    """The credentials digest_auth checks: Authorization, or Proxy-Authorization when the
    parent asked for 407 challenges. The first check of the machine parses and caches them
    (``ctx.vars.creds``), so the abuse, RegHook and trunk actions read the same ones."""
    return credentials(ctx, proxy=ctx.vars.proxy)


@guard()
def has_credentials(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The request carries an Authorization (Proxy-Authorization) header, well formed or
    not."""
    return _credentials(ctx) is not None


@guard()
def malformed(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The Authorization header cannot be parsed or lacks required fields (→ 400)."""
    creds = _credentials(ctx)
    if creds is MALFORMED:
        return True
    return creds is not None and _static(ctx) is DigestOutcome.MALFORMED


def _static(ctx: Ctx[DigestAuthVars]) -> DigestOutcome:
    outcome = ctx.vars.nonce_outcome
    if outcome is None:
        outcome = ctx.vars.nonce_outcome = ctx.services.digest.check_static(
            valid_credentials(ctx), realm=domain(ctx))
    return outcome


@guard(params=NonceIs)
def nonce_is(ctx: Ctx[DigestAuthVars], p: NonceIs) -> bool:
    """Result of the password-free checks (realm, algorithm, our nonce, fresh)."""
    creds = _credentials(ctx)
    if creds is None or creds is MALFORMED:
        return False
    return _static(ctx).value == p.outcome


@action()
async def mark_stale(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """The next challenge carries stale=true (the client may retry without asking the user)."""
    ctx.vars.stale = True


@action()
async def challenge(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """401 with WWW-Authenticate (407 with Proxy-Authenticate when the parent asked for it):
    realm = the domain, a fresh nonce, qop=auth."""
    proxy = ctx.vars.proxy
    headers = ctx.services.digest.challenge_headers(domain(ctx), stale=ctx.vars.stale,
                                                    proxy=proxy)
    if proxy:
        await send_reply(ctx, 407, "Proxy Authentication Required", headers=headers)
    else:
        await send_reply(ctx, 401, "Unauthorized", headers=headers)


_VERIFY_EVENTS = {
    DigestOutcome.OK: "auth.ok",
    DigestOutcome.STALE: "auth.stale",
    DigestOutcome.REPLAY: "auth.replay",
}


@action(emits=("auth.ok", "auth.stale", "auth.replay", "auth.bad", "auth.error"),
        outcomes=("auth.ok", "auth.stale", "auth.replay", "auth.bad", "auth.error"))
async def verify_password(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """Check the digest response with the client's static password (the nc count is
    advanced in the store only for a correct response)."""
    creds = valid_credentials(ctx)
    match = ctx.vars.client_match
    assert isinstance(match, PasswordClient)  # the machine checked config.client_has_password
    password = match.client.password
    realm = domain(ctx)
    method = ctx.vars.req.method

    static = ctx.vars.nonce_outcome

    async def verify() -> Outcome:
        outcome = await ctx.services.digest.verify(creds, method=method, realm=realm,
                                                   password=password, static=static)
        return Outcome(_VERIFY_EVENTS.get(outcome, "auth.bad"), {"outcome": outcome.value})

    ctx.start(verify(), done="auth.ok", error="auth.error")


@action(emits=("auth.ok", "auth.replay", "auth.error"),
        outcomes=("auth.ok", "auth.replay", "auth.error"))
async def advance_nonce_count(ctx: Ctx[DigestAuthVars], p: object) -> None:
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
async def verify_trunk_password(ctx: Ctx[DigestAuthVars], p: object) -> None:
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


@guard()
def trunks_allowed(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The parent asked to try the domain's auth trunks (calls; a REGISTER is a client's)."""
    return bool(ctx.vars.trunks)


@action()
async def grant_trunk(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """The trunk whose password verified is who authenticated (reported as ``trunk``)."""
    ctx.vars.granted_trunk = ctx.vars.candidate_trunk


# --------------------------------------------------------------------------- the child machine

AUTH_MACHINE = "digest_auth"
AUTH_OUTCOMES = ("auth.granted", "auth.challenged", "auth.rejected", "auth.failed")
_ENDINGS = {"granted": "auth.granted", "challenged": "auth.challenged",
            "rejected": "auth.rejected"}


@dataclass(frozen=True)
class Authenticate:
    challenge: Literal[401, 407] = field(default=401, metadata={
        "doc": "401: WWW-Authenticate, credentials in Authorization (a UAS; the original "
               "challenges INVITEs so too); 407: Proxy-Authenticate / Proxy-Authorization"})
    trunks: bool = field(default=False, metadata={
        "doc": "try the domain's auth trunks whose authUser is the digest username first"})


def digest_auth_vars(req: IncomingRequest, realm: str, *, proxy: bool,
                     trunks: bool) -> dict[str, Any]:
    """What digest_auth is spawned with (``DigestAuthVars``): the request, the realm, 407
    or 401, auth trunks or not. What it finds out goes back in its result
    (``auth.report``)."""
    return {"req": req, "domain": realm, "proxy": proxy, "trunks": trunks}


@action(params=Authenticate, emits=AUTH_OUTCOMES, outcomes=AUTH_OUTCOMES)
async def authenticate(ctx: Ctx[AuthenticatedVars], p: Authenticate) -> None:
    """Run ``machines/digest_auth.yaml`` as a child for this request. It ends with
    auth.granted, auth.challenged or auth.rejected (the child sent the challenge or the
    refusal), or auth.failed (it failed unexpectedly and sent nothing); the event's data is
    the child's result (``auth.report``). This instance keeps from it the credentials
    (``creds``), the ``grant``, the verified trunk (``candidate_trunk``) and the response the
    child sent (``reply_status``/``reply_why``/``reply_challenge``, for its summary line).
    The child ends with this instance."""
    child_vars = digest_auth_vars(ctx.vars.req, domain(ctx), proxy=p.challenge == 407,
                                  trunks=p.trunks)
    assert isinstance(ctx, Instance)  # the runtime calls every action with its instance
    child = ctx.runtime.spawn(AUTH_MACHINE, vars=child_vars, parent=ctx)

    def finished(done: Instance) -> None:
        if ctx.done:
            return
        result = done.result
        event = _ENDINGS.get(done.state, "auth.failed") if done.status == DONE \
            else "auth.failed"
        _keep(ctx.vars, result)
        ctx.post(event, result)

    child.on_finish(finished)
    ctx.on_finish(lambda _: child.kill(f"parent {ctx.id} ended"))
    # The child's first steps run now, inside this action, not one loop turn later: a
    # challenge or a refusal needs no waiting, and its outcome is queued on this instance.
    await child.send("start")


def _keep(v: AuthenticatedVars, result: dict[str, Any]) -> None:
    """The parent's own copy of what the child found (see ``authenticate``)."""
    if result.get("creds") is not None:
        v.creds = result["creds"]
        v.creds_parsed = True
    if result.get("grant") is not None:
        v.grant = result["grant"]
    if result.get("trunk") is not None:
        v.candidate_trunk = result["trunk"]
    if result.get("status") is not None:
        v.reply_status = result["status"]
        v.reply_why = result["why"]
        v.reply_challenge = result["challenge"]


@action()
async def report(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """digest_auth's result for its parent (at each ending): the credentials, the grant
    (client settings or the RegHook's reply), the verified trunk, and the final response
    sent (status, why, challenge)."""
    v = ctx.vars
    creds = _credentials(ctx)
    granted = ctx.state == "granted"
    ctx.result.update(
        creds=creds if isinstance(creds, DigestCredentials) else None,
        grant=v.grant if granted else None,
        trunk=v.granted_trunk if granted else None,
        status=v.reply_status, why=v.reply_why, challenge=v.reply_challenge,
    )


@guard()
def by_trunk(ctx: Ctx[object], p: object) -> bool:
    """The granted credentials are an auth trunk's, not a client's (``auth.granted`` data)."""
    return ctx.event.get("trunk") is not None
