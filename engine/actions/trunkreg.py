"""``trunkreg.*``: outbound REGISTERs to carriers (machines/trunk_registration.yaml).

Variables: ``engine.machine_vars.TrunkRegistrationVars``.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from types import SimpleNamespace

from engine.actions._context import Ctx
from engine.fsm import Outcome, action, delay, guard
from engine.lease import Leases
from engine.machine_vars import TrunkRegistrationVars
from engine.ports import SipResponseView
from engine.sip.digest import DigestClient, parse_challenge
from engine.sip.errors import SipParseError

REG_OUTCOMES = ("reg.ok", "reg.challenged", "reg.failed", "reg.timeout")
ALLOW = "INVITE, ACK, BYE, CANCEL, OPTIONS, MESSAGE, INFO, UPDATE, REGISTER, REFER, NOTIFY"
BACKOFF_BASE = 2.0
BACKOFF_CAP = 300.0

_digest = DigestClient()


@dataclass(frozen=True)
class RegisterParams:
    unregister: bool = False
    authenticate: bool = False


def _aor(v: TrunkRegistrationVars) -> str:
    return f"sip:{v.target.username}@{_host_only(v.target.host)}"


def _host_only(hostport: str) -> str:
    if hostport.startswith("["):
        return hostport[: hostport.index("]") + 1]
    return hostport.rsplit(":", 1)[0] if hostport.count(":") == 1 else hostport


def contact(ctx: Ctx[TrunkRegistrationVars]) -> str:
    """Our Contact: the registrar sends the trunk's calls here; reg-id names the trunk."""
    v = ctx.vars
    sip = ctx.services.sip
    # The SIP port all workers share, not this worker's private one (engine/supervisor.py):
    # any worker takes the carrier's calls, and the next lease holder's REGISTER replaces
    # this very binding.
    # Only the embedded port has workers (and so a shared port apart from its own).
    make = getattr(sip, "listen_contact_uri", sip.contact_uri)
    base = make(transport=v.transport, user=v.target.username)
    return f"{base};reg-id={v.reg_id}"


@action(params=RegisterParams, emits=REG_OUTCOMES, outcomes=REG_OUTCOMES)
async def send_register(ctx: Ctx[TrunkRegistrationVars], p: RegisterParams) -> None:
    """REGISTER (or Expires 0 to unregister); with ``authenticate`` answer the last
    challenge. The challenge is never answered by the SIP layer: the machine decides."""
    v = ctx.vars
    v.cseq += 1
    expires = 0 if p.unregister else ctx.services.settings.trunk_register_expires
    uri = f"sip:{v.target.host}"
    aor = _aor(v)
    headers = [("From", f"<{aor}>;tag={v.from_tag}"), ("To", f"<{aor}>"),
               ("Call-ID", v.call_id), ("CSeq", f"{v.cseq} REGISTER"),
               ("Contact", f"<{contact(ctx)}>"), ("Expires", str(expires)), ("Allow", ALLOW)]
    if p.authenticate and v.challenge is not None:
        sent = SimpleNamespace(method="REGISTER", uri=uri)
        headers += _digest.answer(v.challenge, sent, username=v.target.username,
                                  password=v.target.password)
        v.answered_nonces.add(_nonce_of(v.challenge))
    v.requested_expires = expires
    sip = ctx.services.sip

    async def send() -> Outcome:
        response = await sip.request(uri, "REGISTER", headers=headers)
        status = response.status
        data = {"status": status, "reason": response.reason}
        if 200 <= status < 300:
            v.last_response = response
            return Outcome("reg.ok", data)
        if status in (401, 407):
            v.challenge = response
            return Outcome("reg.challenged", data)
        if status == 408:
            return Outcome("reg.timeout", data)
        return Outcome("reg.failed", data)

    ctx.start(send(), done="reg.ok", error="reg.timeout")


def _nonce_of(response: SipResponseView) -> str:
    name = "www-authenticate" if response.status == 401 else "proxy-authenticate"
    nonces = []
    for value in response.header_values(name):
        try:
            nonces.append(parse_challenge(value).nonce)
        except SipParseError:
            continue
    return ",".join(sorted(nonces))


def _stale(response: SipResponseView) -> bool:
    name = "www-authenticate" if response.status == 401 else "proxy-authenticate"
    return any("stale=true" in v.lower().replace(" ", "") for v in response.header_values(name))


@guard()
def can_answer_challenge(ctx: Ctx[TrunkRegistrationVars], p: object) -> bool:
    """We have credentials and have not answered this challenge's nonce yet (or the
    registrar says our nonce went stale): a refused password never loops (D-20)."""
    v = ctx.vars
    if not v.target.password or v.challenge is None:
        return False
    nonce = _nonce_of(v.challenge)
    return bool(nonce) and (nonce not in v.answered_nonces or _stale(v.challenge))


def granted_expires(ctx: Ctx[TrunkRegistrationVars]) -> int:
    """The registrar's grant: our Contact's ``expires`` parameter, else ``Expires``."""
    v = ctx.vars
    response = v.last_response
    if response is None:  # save_registered runs on reg.ok, which set it
        return v.requested_expires
    for value in response.header_values("contact"):
        if v.reg_id in value:
            for param in value.split(";")[1:]:
                name, _, num = param.partition("=")
                if name.strip().lower() == "expires" and num.strip().isdigit():
                    return int(num.strip())
    header = response.header("expires")
    if header and header.strip().isdigit():
        return int(header.strip())
    return v.requested_expires


@action()
async def save_registered(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    """Record the registration at ``regtrunk:{domain}:{reg-id}`` (TTL = the grant)."""
    v = ctx.vars
    v.granted = max(1, granted_expires(ctx))
    v.failures = 0
    now = int(ctx.runtime.clock.time())
    v.status = {"state": "registered", "expires": v.granted, "since": now,
                "registrar": v.target.host, "last_error": None, "next_retry": None}
    fields = {"trunkID": str(v.trunk.id), "status": "registered",
              "registrar": v.target.host, "expires": str(v.granted), "since": str(now)}
    ctx.runtime.background(ctx.services.store.save_regtrunk(
        domain=v.domain, reg_id=v.reg_id, fields=fields, ttl=v.granted), "save regtrunk")
    ctx.log.info("trunk registered", trunk=v.trunk.display_name, registrar=v.target.host,
                 expires=v.granted)


@delay()
def refresh_delay(ctx: Ctx[TrunkRegistrationVars], p: object) -> float:
    """Half the granted expiry (at least 1 s)."""
    return max(1.0, ctx.vars.granted / 2)


@dataclass(frozen=True)
class FailureParams:
    reason: str


@action(params=FailureParams)
async def note_failure(ctx: Ctx[TrunkRegistrationVars], p: FailureParams) -> None:
    """Count the failure and compute the next retry (exponential backoff with jitter)."""
    v = ctx.vars
    v.failures += 1
    raw = min(BACKOFF_CAP, BACKOFF_BASE * 2 ** (v.failures - 1))
    v.backoff = raw * random.uniform(0.8, 1.2)
    status = ctx.event.get("status")
    error = f"{p.reason} ({status} {ctx.event.get('reason') or ''})".strip() if status \
        else p.reason
    v.status = {"state": "failing", "last_error": error, "failures": v.failures,
                "next_retry": round(ctx.runtime.clock.time() + v.backoff, 1),
                "registrar": v.target.host}
    ctx.log.warning("trunk registration failed", trunk=v.trunk.display_name,
                    registrar=v.target.host, error=error, retry_in=round(v.backoff, 1))


@delay()
def backoff_delay(ctx: Ctx[TrunkRegistrationVars], p: object) -> float:
    return ctx.vars.backoff


@action(emits=("store.done", "store.error"), outcomes=("store.done", "store.error"))
async def delete_state(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    """Delete our regtrunk key (only if this instance owns it, D-21)."""
    v = ctx.vars
    v.status = {"state": "stopped", "registrar": v.target.host}
    store = ctx.services.store
    ctx.start(store.delete_regtrunk(domain=v.domain, reg_id=v.reg_id,
                                    owner=ctx.services.settings.instance_id),
              done="store.done", error="store.error")


@action()
async def delete_state_now(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    v = ctx.vars
    ctx.runtime.background(ctx.services.store.delete_regtrunk(
        domain=v.domain, reg_id=v.reg_id, owner=ctx.services.settings.instance_id),
        "delete regtrunk")


# ---------------------------------------------------------------------- leases (engine/lease.py)
LEASE_OUTCOMES = ("lease.acquired", "lease.held_elsewhere", "lease.unavailable")


def _leases(ctx: Ctx[object]) -> Leases:
    leases = ctx.services.leases
    if leases is None:  # the daemon and the simulator wire one; trunk registrations need it
        raise RuntimeError("trunk registration without a lease service")
    return leases


@action(emits=LEASE_OUTCOMES, outcomes=LEASE_OUTCOMES)
async def take_lease(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    """Take (or renew) the trunk's lease in Redis: ``lease.acquired`` when this engine
    holds it, ``lease.held_elsewhere`` when another does, ``lease.unavailable`` on a
    Redis failure."""
    v = ctx.vars
    leases = _leases(ctx)

    async def take() -> Outcome:
        if await leases.take_or_renew(v.domain, str(v.trunk.id)):
            v.lease_renewed = ctx.runtime.clock.time()
            v.lease_held = True
            return Outcome("lease.acquired")
        return Outcome("lease.held_elsewhere")

    ctx.start(take(), done="lease.acquired", error="lease.unavailable")


@action()
async def note_standby(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    """Another engine registers this trunk (or Redis could not be asked): say so."""
    v = ctx.vars
    v.lease_held = False
    error = ctx.event.get("error")
    v.status = {"state": "standby", "registrar": v.target.host,
                "last_error": f"lease: {error}" if error else None}
    if ctx.event.name == "lease.unavailable":
        ctx.log.warning("trunk lease unavailable", trunk=v.trunk.display_name,
                        error=str(error))


@action()
async def note_lease_lost(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    """Our lease was taken or could not be renewed in time: stop refreshing, without
    unregistering — the new holder registers the same Contact."""
    v = ctx.vars
    v.lease_held = False
    v.status = {"state": "standby", "registrar": v.target.host,
                "last_error": "lease lost"}
    ctx.log.warning("trunk lease lost; another engine takes the registration over",
                    trunk=v.trunk.display_name, reason=ctx.event.get("reason"))


@delay()
def lease_retry_delay(ctx: Ctx[TrunkRegistrationVars], p: object) -> float:
    """Half the lease (± 10 % jitter): a dead holder is replaced within two leases."""
    return _leases(ctx).ttl / 2 * random.uniform(0.9, 1.1)


@guard()
def hand_over(ctx: Ctx[TrunkRegistrationVars], p: object) -> bool:
    """The daemon drains and another engine is alive to take this trunk over: keep the
    registration at the registrar (calls keep arriving) and only give the lease back."""
    return bool(ctx.event.get("handover"))


@action(emits=("lease.released",), outcomes=("lease.released",))
async def release_lease(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    """Give the lease back if we hold it (owner-checked), so the next engine need not
    wait for it to run out."""
    v = ctx.vars
    held, v.lease_held = v.lease_held, False
    if not held:
        ctx.emit("lease.released")
        return
    ctx.start(_leases(ctx).release(v.domain, str(v.trunk.id)), done="lease.released",
              error="lease.released")


@action()
async def release_lease_now(ctx: Ctx[TrunkRegistrationVars], p: object) -> None:
    v = ctx.vars
    if v.lease_held:
        v.lease_held = False
        ctx.runtime.background(_leases(ctx).release(v.domain, str(v.trunk.id)),
                               "release trunk lease")
