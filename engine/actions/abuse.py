"""``abuse.*``: password-guessing containment in the registration and call machines.

The machines decide what happens (``machines/registration.yaml``,
``machines/inbound_call.yaml``): ``abuse.source_exempt`` skips the protection for
ABUSE_ALLOW and trunk sources, ``abuse.check`` reads the shared bans and the
nonce's failure count before any password or RegHook check, ``abuse.record_failure``
counts every failed authentication. The counting and its limits live in
``engine.abuse``; ``ctx.services.abuse`` is None when the protection is not wired
(unit harnesses, ``dragonpbx simulate``), which makes every source exempt.
"""

from __future__ import annotations

from engine.abuse.guard import AbuseGuard
from engine.actions._context import Ctx
from engine.actions._request import domain, valid_credentials
from engine.errors import StoreError
from engine.fsm import Outcome, action, guard
from engine.log import get_logger
from engine.machine_vars import DigestAuthVars

log = get_logger("engine.abuse")


def _service(ctx: Ctx[object]) -> AbuseGuard | None:
    return ctx.services.abuse


@guard()
def source_exempt(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """The source is never banned or counted (protection off, ABUSE_ALLOW, a trunk CIDR)."""
    service = _service(ctx)
    return service is None or service.exempt(ctx.vars.req.source.host)


@action(emits=("abuse.clear", "abuse.banned", "abuse.nonce_spent", "abuse.error"),
        outcomes=("abuse.clear", "abuse.banned", "abuse.nonce_spent", "abuse.error"))
async def check(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """One Redis read: is the source banned (for everyone, or for this user), or has the
    nonce had too many failed responses? → abuse.banned / abuse.nonce_spent / abuse.clear."""
    service = _service(ctx)
    creds = valid_credentials(ctx)
    source = ctx.vars.req.source.host
    realm = domain(ctx)

    async def read() -> Outcome:
        if service is None:
            return Outcome("abuse.clear")
        try:
            result = await service.check(source=source, domain=realm, user=creds.username,
                                         nonce=creds.nonce)
        except StoreError as exc:
            return Outcome("abuse.error", {"error": exc})
        return Outcome(f"abuse.{result}")

    ctx.start(read(), done="abuse.clear", error="abuse.error")


@action(emits=("abuse.recorded",), outcomes=("abuse.recorded",))
async def record_failure(ctx: Ctx[DigestAuthVars], p: object) -> None:
    """Count a failed authentication for the nonce, the source and the user (exempt
    sources are not counted); bans it creates are logged. Always → abuse.recorded: an
    unavailable counter store does not change the answer to the request."""
    service = _service(ctx)
    creds = valid_credentials(ctx)
    req = ctx.vars.req
    source = req.source.host
    realm = domain(ctx)

    async def record() -> Outcome:
        if service is None or service.exempt(source):
            return Outcome("abuse.recorded")
        try:
            await service.record_failure(source=source, domain=realm, user=creds.username,
                                         nonce=creds.nonce, method=req.method)
        except StoreError as exc:
            log.info("authentication failure not counted: store unavailable",
                     source=source, error=str(exc))
        return Outcome("abuse.recorded")

    ctx.start(record(), done="abuse.recorded", error="abuse.recorded")
