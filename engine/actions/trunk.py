"""``trunk.*``: recognising calls from carriers (spec §1.2 steps 2, 3, 5; §10.2).

Order, as in the original: the packet source in a trunk's inbound CIDRs; a
``reg-id`` in the Request-URI naming a trunk we register to — accepted only
when the request comes from that trunk's registrar (S-9); a trunk whose
``authUser`` is the digest username (checked by ``auth.verify_trunk_password``).
"""

from __future__ import annotations

import asyncio
import ipaddress

from engine.actions._context import Ctx
from engine.actions._request import credentials, domain
from engine.config.model import Trunk
from engine.fsm import Outcome, action, guard
from engine.machine_vars import CallVars, DigestAuthVars
from engine.sip.digest import DigestCredentials

REG_ID_OUTCOMES = ("trunk.reg_id_valid", "trunk.reg_id_unknown", "trunk.reg_id_wrong_source")


@guard()
def source_in_cidr(ctx: Ctx[CallVars], p: object) -> bool:
    """The packet source is in the inbound CIDRs of a trunk of this domain (first wins)."""
    trunk = ctx.services.config.get_trunk_by_ip(domain(ctx), ctx.vars.req.source.host)
    ctx.vars.candidate_trunk = trunk
    return trunk is not None


@action()
async def use_cidr_trunk(ctx: Ctx[CallVars], p: object) -> None:
    """The call comes from the trunk found by source address."""
    _use(ctx, ctx.vars.candidate_trunk, "cidr")


@guard()
def reg_id_is_ours(ctx: Ctx[CallVars], p: object) -> bool:
    """The Request-URI carries the reg-id of a registration this instance keeps: the call
    belongs to that trunk's domain (the carrier addresses our Contact, not the domain)."""
    reg_id = ctx.vars.req.message.request_uri.params.get("reg-id")
    manager = ctx.services.trunks
    found = manager.by_reg_id(reg_id) if reg_id and manager is not None else None
    if found is None:
        return False
    ctx.vars.domain = found[0]
    return True


@guard()
def has_reg_id(ctx: Ctx[CallVars], p: object) -> bool:
    """The Request-URI carries the ``reg-id`` of one of our trunk registrations."""
    value = ctx.vars.req.message.request_uri.params.get("reg-id")
    ctx.vars.reg_id = value
    return bool(value)


async def _resolve(host: str) -> set[str]:
    """Addresses of ``host`` (a name, or an address literal), without port."""
    name = host.strip("[]")
    try:
        return {str(ipaddress.ip_address(name))}
    except ValueError:
        pass
    loop = asyncio.get_running_loop()
    infos = await loop.getaddrinfo(name, None)
    return {str(ipaddress.ip_address(info[4][0])) for info in infos}


def _host_only(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[1:hostport.index("]")]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


@action(emits=REG_ID_OUTCOMES, outcomes=REG_ID_OUTCOMES)
async def lookup_reg_id(ctx: Ctx[CallVars], p: object) -> None:
    """Find the trunk registration named by ``reg-id`` (Redis ``regtrunk:{domain}:{id}``)
    and check the request comes from that trunk's registrar."""
    store, config = ctx.services.store, ctx.services.config
    dom, reg_id = domain(ctx), ctx.vars.reg_id
    source = ctx.vars.req.source.host

    async def lookup() -> Outcome:
        if not reg_id:  # the machine checked trunk.has_reg_id
            return Outcome("trunk.reg_id_unknown")
        fields = await store.get_regtrunk(domain=dom, reg_id=reg_id)
        trunk = config.get_trunk_by_id(dom, fields.get("trunkID")) if fields else None
        if trunk is None or trunk.registration is None:
            return Outcome("trunk.reg_id_unknown")
        allowed = await _resolve(_host_only(trunk.registration.host))
        if trunk.outbound is not None and trunk.outbound.host:
            allowed |= await _resolve(_host_only(trunk.outbound.host))
        if str(ipaddress.ip_address(source)) not in allowed:
            return Outcome("trunk.reg_id_wrong_source", {"source": source})
        ctx.vars.candidate_trunk = trunk
        return Outcome("trunk.reg_id_valid")

    ctx.start(lookup(), done="trunk.reg_id_unknown", error="trunk.reg_id_unknown")


@action()
async def use_reg_trunk(ctx: Ctx[CallVars], p: object) -> None:
    """The call is for a trunk we register to (the dialled number is then the To user)."""
    _use(ctx, ctx.vars.candidate_trunk, "reg-id")


@guard()
def auth_user_matches(ctx: Ctx[DigestAuthVars], p: object) -> bool:
    """Some trunk with authType "authentication" has the digest username as authUser."""
    creds = credentials(ctx)
    if not isinstance(creds, DigestCredentials):
        return False
    dom = ctx.services.config.get_domain(domain(ctx))
    trunks = dom.auth_trunks_for(creds.username) if dom is not None else ()
    ctx.vars.auth_trunks = trunks
    return bool(trunks)


@action()
async def use_auth_trunk(ctx: Ctx[CallVars], p: object) -> None:
    """The call comes from the trunk whose credentials verified."""
    _use(ctx, ctx.vars.candidate_trunk, "digest")


def _use(ctx: Ctx[CallVars], trunk: Trunk | None, how: str) -> None:
    assert trunk is not None  # the guard that found it ran first
    ctx.vars.trunk = trunk
    ctx.vars.trunk_match = how
    ctx.log.debug("call from trunk", trunk=trunk.display_name, trunk_id=trunk.id, how=how,
                  call_id=ctx.vars.req.call_id)
