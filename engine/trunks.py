"""The trunk-registration manager: one ``trunk_registration`` instance per trunk that
registers (spec §10.4, fixed per D-21).

Every ``REGTRUNKREFRESH`` seconds and on every configuration change it compares
the configured trunks with the running instances and starts, stops or restarts
only those that changed; refreshes are serialised. At shutdown every instance
unregisters (Expires 0) before the SIP stack closes. Each instance is keyed by
(domain, trunk id); its reg-id is the Contact parameter the carrier sends back
in INVITEs, so ``by_reg_id`` tells the call pipeline which trunk (and domain) a
call for a registration belongs to.

Several engines on one Redis (README "Several engines and workers"): every
engine runs an instance per trunk, but only the holder of the trunk's lease
(engine/lease.py) registers; this manager renews the leases its instances
hold every third of a lease (``REGTRUNKREFRESH`` seconds) and posts
``lease.lost`` when one was taken or could not be renewed in time. The reg-id
is derived from the trunk, not drawn at random, so every engine recognises the
carrier's calls for it and a new holder's REGISTER replaces the old binding.
When the daemon drains, a holder hands its trunk over (no ``Expires: 0``) if
another engine stands by for it; the last engine unregisters.
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import hashlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from engine.app import Component
from engine.fsm import declare_events
from engine.fsm.runtime import Instance
from engine.lease import Leases
from engine.log import get_logger

log = get_logger("engine.trunks")

declare_events("trunk_manager", ["start", "stop", "lease.lost"],
               "stop: the trunk was removed or changed, or the daemon stops - unregister "
               "(data handover: another engine stands by, keep the registration); "
               "lease.lost: another engine holds the trunk's lease now")

# Two engines draining at once each see the other standing by: look again after this.
_HANDOVER_RECHECK = 0.3


@dataclass(frozen=True)
class Desired:
    domain: str
    trunk: Any
    target: Any  # RegistrationTarget

    @property
    def key(self) -> tuple[str, str]:
        return (self.domain, str(self.trunk.id))

    @property
    def fingerprint(self) -> tuple[Any, ...]:
        t = self.target
        return (t.host, t.username, t.password, t.origin)


def reg_id_of(d: Desired) -> str:
    """The trunk's reg-id: the same in every engine (any of them recognises the carrier's
    calls) and across restarts (a new REGISTER replaces the old binding)."""
    t = d.target
    return hashlib.sha256(f"{d.domain}\0{d.trunk.id}\0{t.host}\0{t.username}".encode()
                          ).hexdigest()[:32]


def desired_registrations(snapshot: Any) -> dict[tuple[str, str], Desired]:
    out: dict[tuple[str, str], Desired] = {}
    for domain in snapshot.list_domains():
        for trunk in snapshot.get_reg_trunks(domain):
            target = trunk.registration
            if target is not None:
                d = Desired(domain, trunk, target)
                out[d.key] = d
    return out


def _settle(fut: asyncio.Future[None], _inst: Instance) -> None:
    """``on_finish`` callback: wake the stopper waiting on ``fut`` (once)."""
    if not fut.done():
        fut.set_result(None)


class TrunkRegistrations(Component):
    name = "trunks"

    def __init__(self, services: Any):
        self.services = services
        services.trunks = self
        self.running: dict[tuple[str, str], tuple[Desired, Instance]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._lease_task: asyncio.Task[Any] | None = None
        self._unsubscribe: Any = None
        self._draining: asyncio.Task[Any] | None = None
        settings = services.settings
        # Redis leases between engines; a simulation brings its own (engine.lease.MemoryLeases)
        leases = getattr(services, "leases", None)
        if leases is None:
            leases = Leases(services.store.client, settings.instance_id,
                            ttl=settings.regtrunk_refresh)
        self.leases = services.leases = leases

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.refresh("start")
        self._unsubscribe = self.services.config.on_change(self._config_changed)
        self._task = asyncio.get_running_loop().create_task(self._loop())
        self._lease_task = asyncio.get_running_loop().create_task(self._renew_loop())

    async def _loop(self) -> None:
        interval = self.services.settings.regtrunk_refresh
        while True:
            await asyncio.sleep(interval)
            try:
                await self.refresh("periodic")
            except asyncio.CancelledError:
                raise
            except Exception as exc:  # never let the refresh loop die
                log.error("trunk refresh failed", error=repr(exc))

    async def _renew_loop(self) -> None:
        """Renew the leases our instances hold, every third of a lease."""
        leases, clock = self.leases, self.services.runtime.clock
        while True:
            await asyncio.sleep(leases.ttl / 3)
            for d, inst in list(self.running.values()):
                v = inst.vars
                if inst.done or not v.lease_held:
                    continue
                trunk_id = str(d.trunk.id)
                try:
                    held = await leases.take_or_renew(d.domain, trunk_id)
                except asyncio.CancelledError:
                    raise
                except Exception as exc:
                    if clock.time() - v.lease_renewed > leases.ttl:
                        inst.post("lease.lost", {"reason": f"not renewed in time ({exc})"})
                    continue
                if not v.lease_held or inst.done:  # released while we renewed: undo
                    if held:
                        with contextlib.suppress(Exception):
                            await leases.release(d.domain, trunk_id)
                elif held:
                    v.lease_renewed = clock.time()
                else:
                    inst.post("lease.lost", {"reason": "held by another engine"})

    async def _config_changed(self, snapshot: Any) -> None:
        await self.refresh("config changed")

    def refuse_new_work(self) -> None:
        """Draining: stop standing by for trunks others hold (those instances end), so
        their holders — draining too, perhaps — do not hand them over to us."""
        self._draining = asyncio.get_running_loop().create_task(self._stop_standing_by())

    async def _stop_standing_by(self) -> None:
        for d, inst in list(self.running.values()):
            if not inst.done and not inst.vars.lease_held:
                inst.post("stop", {"handover": False})
                with contextlib.suppress(Exception):
                    await self.leases.stop_standing_by(d.domain, str(d.trunk.id))

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        for task in (self._task, self._lease_task):
            if task is not None:
                task.cancel()
                with contextlib.suppress(asyncio.CancelledError):
                    await task
        if self._draining is not None:
            with contextlib.suppress(Exception):
                await self._draining
        async with self._lock:
            keys = list(self.running)
            handover = await self._taken_over(keys)
            if handover:  # other engines draining at the same moment leave the set soon
                await asyncio.sleep(_HANDOVER_RECHECK)
                handover = await self._taken_over(handover, final=True)
            await self._stop_all(keys, handover=handover)

    async def _taken_over(self, keys: Any, final: bool = False) -> set[tuple[str, str]]:
        """The trunks we hold for which another engine stands by (the daemon drains)."""
        out = set()
        for key in keys:
            d, inst = self.running[key]
            if inst.done or not inst.vars.lease_held:
                continue
            try:
                others = await self.leases.others_standing_by(d.domain, str(d.trunk.id))
            except Exception as exc:
                log.warning("trunk hand-over check failed; unregistering", error=repr(exc))
                continue
            if others:
                out.add(key)
                if final:
                    log.info("trunk handed over", trunk=d.trunk.display_name,
                             standing_by=others)
        return out

    # ------------------------------------------------------------------ reconcile
    async def refresh(self, reason: str) -> None:
        """Start, stop or restart only the registrations whose configuration changed."""
        async with self._lock:
            desired = desired_registrations(self.services.config.snapshot)
            to_stop = [k for k, (d, inst) in self.running.items()
                       if k not in desired or desired[k].fingerprint != d.fingerprint
                       or inst.done]
            await self._stop_all(to_stop)
            started = [k for k in desired if k not in self.running]
            for key in started:
                self._start(desired[key])
            if to_stop or started:
                log.info("trunk registrations reconciled", reason=reason,
                         stopped=len(to_stop), started=len(started), running=len(self.running))

    def _start(self, d: Desired) -> None:
        runtime = self.services.runtime
        transport = "tcp" if "transport=tcp" in d.target.host.lower() else "udp"
        inst = runtime.spawn("trunk_registration", vars={
            "trunk": d.trunk, "domain": d.domain, "target": d.target,
            "reg_id": reg_id_of(d), "call_id": f"{uuid.uuid4().hex}@dragonpbx",
            "from_tag": secrets.token_hex(6), "cseq": 0, "transport": transport,
            "answered_nonces": set(), "failures": 0, "granted": 0, "backoff": 0.0,
            "lease_held": False, "lease_renewed": 0.0,
            "status": {"state": "starting", "registrar": d.target.host},
        })
        self.running[d.key] = (d, inst)
        inst.post("start")

    async def _stop_all(self, keys: list[tuple[str, str]], timeout: float = 10.0,
                        handover: set[tuple[str, str]] | None = None) -> None:
        waits = []
        for key in keys:
            _, inst = self.running.pop(key)
            if inst.done:
                continue
            finished: asyncio.Future[None] = asyncio.get_running_loop().create_future()
            inst.on_finish(functools.partial(_settle, finished))
            inst.post("stop", {"handover": key in (handover or ())})
            waits.append(finished)
        if waits:
            _done, pending = await asyncio.wait(waits, timeout=timeout)
            if pending:
                log.warning("trunk registrations did not unregister in time",
                            pending=len(pending))

    # ------------------------------------------------------------------ queries
    def by_reg_id(self, reg_id: str) -> tuple[str, Any] | None:
        """(domain, trunk) of the registration this instance made with ``reg_id``."""
        for (domain, _), (d, inst) in self.running.items():
            if inst.vars.reg_id == reg_id:
                return domain, d.trunk
        return None

    def status(self) -> list[dict[str, Any]]:
        out = []
        for (domain, trunk_id), (d, inst) in sorted(self.running.items()):
            out.append({"domain": domain, "trunk_id": trunk_id,
                        "trunk": d.trunk.display_name, "reg_id": inst.vars.reg_id,
                        "machine_state": inst.state, **inst.vars.status})
        return out

    def summary(self) -> dict[str, Any]:
        return {"trunk_registrations": len(self.running)}
