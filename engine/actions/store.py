"""``store.*``: registration bindings in the state store (Redis in production).

Each action starts one store operation and finishes with ``store.done`` or
``store.error``; the machine decides what a store failure means (503 + Retry-After).
"""

from __future__ import annotations

from typing import Any

from engine.actions._request import aor_user, domain
from engine.actions.reg import granted_expires
from engine.fsm import action
from engine.ports import Binding

STORE_OUTCOMES = ("store.done", "store.error")


def binding_for(ctx: Any) -> Binding:
    """The binding a successful REGISTER writes (seed fields + transport/flow/callid…)."""
    req = ctx.vars.req
    msg = req.message
    grant = ctx.vars.grant
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


@action(emits=STORE_OUTCOMES, outcomes=STORE_OUTCOMES)
async def save_binding(ctx: Any, p: Any) -> None:
    """Write ``client:{domain}:{user}`` (one MULTI/EXEC, TTL = granted expiry)."""
    binding = binding_for(ctx)
    store = ctx.services.store
    dom, user = domain(ctx), aor_user(ctx)

    async def save() -> None:
        await store.save_binding(domain=dom, user=user, binding=binding)
        ctx.vars.binding = (binding.contact, binding.expires)

    ctx.start(save(), done="store.done", error="store.error")


@action(emits=STORE_OUTCOMES, outcomes=STORE_OUTCOMES)
async def remove_binding(ctx: Any, p: Any) -> None:
    """Delete the AOR's binding (``Expires: 0`` or ``Contact: *``)."""
    store = ctx.services.store
    dom, user = domain(ctx), aor_user(ctx)

    async def remove() -> None:
        await store.remove_binding(domain=dom, user=user)
        ctx.vars.removed = True

    ctx.start(remove(), done="store.done", error="store.error")


@action(emits=STORE_OUTCOMES, outcomes=STORE_OUTCOMES)
async def load_binding(ctx: Any, p: Any) -> None:
    """Read the AOR's binding and its remaining TTL (a REGISTER without Contact)."""
    store = ctx.services.store
    dom, user = domain(ctx), aor_user(ctx)

    async def load() -> None:
        found = await store.get_binding(domain=dom, user=user)
        if found is not None:
            binding, ttl = found
            ctx.vars.binding = (binding.contact, ttl if ttl >= 0 else binding.expires)

    ctx.start(load(), done="store.done", error="store.error")
