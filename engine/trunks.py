"""The trunk-registration manager: one ``trunk_registration`` instance per trunk that
registers (spec §10.4, fixed per D-21).

Every ``REGTRUNKREFRESH`` seconds and on every configuration change it compares
the configured trunks with the running instances and starts, stops or restarts
only those that changed; refreshes are serialised. At shutdown every instance
unregisters (Expires 0) before the SIP stack closes. Each instance is keyed by
(domain, trunk id); its reg-id is the Contact parameter the carrier sends back
in INVITEs, so ``by_reg_id`` tells the call pipeline which trunk (and domain) a
call for a registration belongs to.
"""

from __future__ import annotations

import asyncio
import contextlib
import secrets
import uuid
from dataclasses import dataclass
from typing import Any

from engine.app import Component
from engine.fsm import Instance, declare_events
from engine.log import get_logger

log = get_logger("engine.trunks")

declare_events("trunk_manager", ["start", "stop"],
               "stop: the trunk was removed or changed, or the daemon stops - unregister")


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


def desired_registrations(snapshot: Any) -> dict[tuple[str, str], Desired]:
    out: dict[tuple[str, str], Desired] = {}
    for domain in snapshot.list_domains():
        for trunk in snapshot.get_reg_trunks(domain):
            target = trunk.registration
            if target is not None:
                d = Desired(domain, trunk, target)
                out[d.key] = d
    return out


class TrunkRegistrations(Component):
    name = "trunks"

    def __init__(self, services: Any):
        self.services = services
        services.trunks = self
        self.running: dict[tuple[str, str], tuple[Desired, Instance]] = {}
        self._lock = asyncio.Lock()
        self._task: asyncio.Task[Any] | None = None
        self._unsubscribe: Any = None

    # ------------------------------------------------------------------ lifecycle
    async def start(self) -> None:
        await self.refresh("start")
        self._unsubscribe = self.services.config.on_change(self._config_changed)
        self._task = asyncio.get_running_loop().create_task(self._loop())

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

    async def _config_changed(self, snapshot: Any) -> None:
        await self.refresh("config changed")

    async def stop(self) -> None:
        if self._unsubscribe is not None:
            self._unsubscribe()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task
        async with self._lock:
            await self._stop_all(list(self.running))

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
            "reg_id": uuid.uuid4().hex, "call_id": f"{uuid.uuid4().hex}@dragonpbx",
            "from_tag": secrets.token_hex(6), "cseq": 0, "transport": transport,
            "answered_nonces": set(), "failures": 0, "granted": 0, "backoff": 0.0,
            "status": {"state": "starting", "registrar": d.target.host},
        })
        self.running[d.key] = (d, inst)
        inst.post("start")

    async def _stop_all(self, keys: list[tuple[str, str]], timeout: float = 10.0) -> None:
        waits = []
        for key in keys:
            _, inst = self.running.pop(key)
            if inst.done:
                continue
            finished = asyncio.get_running_loop().create_future()
            inst.on_finish(lambda _i, f=finished: f.done() or f.set_result(None))
            inst.post("stop")
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
