"""``store.*``: registration bindings in the state store (Redis in production).

Each action starts one store operation and finishes with ``store.done`` or
``store.error``; the machine decides what a store failure means (503 + Retry-After).
"""

from __future__ import annotations

from engine.actions._context import Ctx
from engine.actions._request import aor_user, domain
from engine.actions.reg import granted_expires
from engine.fsm import action
from engine.machine_vars import AuthenticatedVars, RegistrationVars
from engine.ports import Binding

STORE_OUTCOMES = ("store.done", "store.error")


def binding_for(ctx: Ctx[AuthenticatedVars]) -> Binding:
    """The binding a successful REGISTER writes (seed fields + transport/flow/callid…)."""
    req = ctx.vars.req
    msg = req.message
    grant = ctx.vars.grant
    assert grant is not None  # saving follows auth.granted
    src = req.source
    contact = msg.contacts[0].uri
    return Binding(
        contact=str(contact),
        proxy=f"sip:{src.host}:{src.port}" if ":" not in src.host
        else f"sip:[{src.host}]:{src.port}",
        dialplan=grant.dialplan,
        codecs=grant.codecs,
        transport=src.transport,
        flow=req.flow,
        callid=msg.call_id,
        cseq=msg.cseq.seq,
        user_agent=msg.header("user-agent") or "",
        expires=granted_expires(ctx),
    )


def _aor(ctx: Ctx[RegistrationVars]) -> str:
    user = aor_user(ctx)
    if not user:  # the machine refused it (reg.identity_allowed) before any store work
        raise ValueError("REGISTER without a To user")
    return user


@action(emits=STORE_OUTCOMES, outcomes=STORE_OUTCOMES)
async def save_binding(ctx: Ctx[RegistrationVars], p: object) -> None:
    """Write ``client:{domain}:{user}`` (one MULTI/EXEC, TTL = granted expiry)."""
    binding = binding_for(ctx)
    store = ctx.services.store
    dom, user = domain(ctx), _aor(ctx)

    async def save() -> None:
        await store.save_binding(domain=dom, user=user, binding=binding)
        ctx.vars.binding = (binding.contact, binding.expires)

    ctx.start(save(), done="store.done", error="store.error")


@action(emits=STORE_OUTCOMES, outcomes=STORE_OUTCOMES)
async def remove_binding(ctx: Ctx[RegistrationVars], p: object) -> None:
    """Delete the AOR's binding (``Expires: 0`` or ``Contact: *``)."""
    store = ctx.services.store
    dom, user = domain(ctx), _aor(ctx)

    async def remove() -> None:
        await store.remove_binding(domain=dom, user=user)
        ctx.vars.removed = True

    ctx.start(remove(), done="store.done", error="store.error")


@action(emits=STORE_OUTCOMES, outcomes=STORE_OUTCOMES)
async def load_binding(ctx: Ctx[RegistrationVars], p: object) -> None:
    """Read the AOR's binding and its remaining TTL (a REGISTER without Contact)."""
    store = ctx.services.store
    dom, user = domain(ctx), _aor(ctx)

    async def load() -> None:
        found = await store.get_binding(domain=dom, user=user)
        if found is not None:
            binding, ttl = found
            ctx.vars.binding = (binding.contact, ttl if ttl >= 0 else binding.expires)

    ctx.start(load(), done="store.done", error="store.error")
