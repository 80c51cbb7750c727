"""Run one machine through a script on a virtual clock and journal what happens.

The journal is the simulation's output: every transition (time, instance, from →
to, event, guard results), every action with its parameters and outcome, and what
went out through the ports (SIP replies and requests, webhook calls, StatusHook
events), in the order it happened.
"""

from __future__ import annotations

import asyncio
import dataclasses
import logging
import random
import re
import uuid
from collections import Counter
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from pathlib import Path
from types import MappingProxyType, SimpleNamespace
from typing import Any

from engine.fsm import MachineLibrary
from engine.fsm.compile import BoundCall
from engine.fsm.runtime import Instance, Runtime
from engine.fsm.trace import Trace, TraceEntry
from engine.log import redact
from engine.ports import Binding
from engine.simulate.fakes import FakeRequest
from engine.simulate.outcomes import Outcomes, acting
from engine.simulate.requests import ScriptError, build_request, parse_source, raw_request
from engine.simulate.script import Script
from engine.simulate.services import counting_bytes, load_library, make_services
from engine.sip.digest import DigestClient

SETTLE_QUIET_ROUNDS = 20
SETTLE_MAX_ROUNDS = 20_000
MAX_TIMER_FIRINGS = 10_000


def jsonable(value: Any) -> Any:
    """Action parameters (frozen dataclasses of tuples and mapping proxies) as JSON."""
    if dataclasses.is_dataclass(value) and not isinstance(value, type):
        return {f.name: jsonable(getattr(value, f.name)) for f in dataclasses.fields(value)}
    if isinstance(value, (dict, MappingProxyType, Mapping)):
        return {str(k): jsonable(v) for k, v in value.items()}
    if isinstance(value, (list, tuple, set, frozenset)):
        return [jsonable(v) for v in value]
    if value is None or isinstance(value, (bool, int, float, str)):
        return value
    return repr(value)


def shown_params(params: Any) -> dict[str, Any]:
    """An action's parameters, without those that are unset (None or empty): a row then
    reads like the machine file's line, and false or 0 still show."""
    if not dataclasses.is_dataclass(params) or isinstance(params, type):
        return {}
    out = {}
    for f in dataclasses.fields(params):
        value = jsonable(getattr(params, f.name))
        if value is None or value in ({}, []):
            continue
        out[f.name] = value
    return out


class Journal:
    """Everything that happened, in order; ``t`` is virtual seconds since the start."""

    def __init__(self, clock: Any):
        self.clock = clock
        self.t0 = clock.time()
        self.items: list[dict[str, Any]] = []
        self._entries: dict[int, dict[str, Any]] = {}

    def now(self) -> float:
        return round(self.clock.time() - self.t0, 3)

    def note(self, item: dict[str, Any]) -> None:
        self.items.append({"t": self.now(), **item})

    def step(self, instance: str, entry: TraceEntry) -> None:
        item = {"t": round(entry.time - self.t0, 3), "kind": "step", "instance": instance,
                "_entry": entry, "actions": []}
        self._entries[id(entry)] = item
        self.items.append(item)

    def action(self, entry: TraceEntry, record: dict[str, Any]) -> None:
        item = self._entries.get(id(entry))
        if item is not None:
            item["actions"].append(record)

    def finished(self) -> list[dict[str, Any]]:
        """The items as JSON (trace entries read now, when guards and notes are final)."""
        out = []
        for item in self.items:
            if item.get("kind") != "step":
                out.append(item)
                continue
            entry: TraceEntry = item["_entry"]
            row: dict[str, Any] = {"t": item["t"], "kind": "step", "instance": item["instance"],
                                   "from": entry.source, "to": entry.target,
                                   "event": entry.event}
            if entry.guards:
                row["guards"] = [{"guard": g, "result": r} for g, r in entry.guard_results()]
            if item["actions"]:
                row["actions"] = item["actions"]
            if entry.note:
                row["note"] = entry.note
            out.append(row)
        return out


# Log fields that measure real time differ between runs; they are left out of the journal.
_VOLATILE_FIELD = re.compile(r"duration|elapsed|latency|took|_ms$|_us$|_secs?$")


class _JournalLogs(logging.Handler):
    """The engine's log lines (info and up) during a run become journal items: a
    machine's log.* actions and the summary lines are part of what an operator checks."""

    def __init__(self, journal: Journal):
        super().__init__(logging.INFO)
        self.journal = journal

    def emit(self, record: logging.LogRecord) -> None:
        fields = redact(getattr(record, "fields", None) or {})
        shown = {k: v if isinstance(v, (bool, int, float, str, type(None))) else str(v)
                 for k, v in fields.items() if not _VOLATILE_FIELD.search(k)}
        self.journal.note({"kind": "log", "level": record.levelname.lower(),
                           "logger": record.name, "msg": record.getMessage(), "fields": shown})


@contextmanager
def journaled_logs(journal: Journal) -> Iterator[None]:
    """Route the ``engine`` loggers into ``journal`` (and not to stderr) meanwhile."""
    logger = logging.getLogger("engine")
    handler = _JournalLogs(journal)
    saved = (logger.level, logger.propagate)
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    logger.propagate = False
    try:
        yield
    finally:
        logger.removeHandler(handler)
        logger.setLevel(saved[0])
        logger.propagate = saved[1]


class _JournalTrace(Trace):
    __slots__ = ("_instance", "_journal")

    def __init__(self, machine: str, journal: Journal, instance: str):
        super().__init__(machine)
        self._journal = journal
        self._instance = instance

    def add(self, entry: TraceEntry) -> TraceEntry:
        self._journal.step(self._instance, entry)
        return super().add(entry)


class _RecordingInstance(Instance):
    """An instance that journals each action call with its parameters and marks the
    action as the one using the ports meanwhile (for its scripted outcomes)."""

    __slots__ = ()

    async def _call(self, call: BoundCall, entry: TraceEntry) -> bool:
        record: dict[str, Any] = {"action": call.name, "params": shown_params(call.params)}
        runtime = self.runtime
        assert isinstance(runtime, SimRuntime)  # SimRuntime.spawn makes every such instance
        runtime.journal.action(entry, record)
        with acting(call.name):
            ok = await super()._call(call, entry)
        if not ok:
            record["outcome"] = "error: " + (entry.failed or "").partition(": ")[2]
        return ok


class SimRuntime(Runtime):
    """A Runtime whose instances are journaled and named ``machine#n``."""

    def __init__(self, library: MachineLibrary, services: Any, journal: Journal):
        super().__init__(library, services, services.clock)
        self.journal = journal
        self.instances: list[Instance] = []
        self._numbers: Counter[str] = Counter()

    def spawn(self, machine: Any, *, vars: dict[str, Any] | None = None,
              parent: Instance | None = None, instance_id: str | None = None) -> Instance:
        compiled = machine if not isinstance(machine, str) else self.library.get(machine)
        self._numbers[compiled.name] += 1
        iid = instance_id or f"{compiled.name}#{self._numbers[compiled.name]}"
        inst = _RecordingInstance(self, compiled, vars or {}, parent, iid)
        inst.trace = _JournalTrace(compiled.label, self.journal, iid)
        compiled.set_state(inst, compiled.initial)
        self.live[inst.id] = inst
        self.instances.append(inst)
        return inst


class Simulation:
    """One script's run; ``await run()`` then read ``result()``."""

    def __init__(self, script: Script, machine: str, library: MachineLibrary | None = None):
        self.script = script
        self.machine = machine
        self.library = library or load_library()
        self.outcomes = Outcomes(script.outcomes)
        self.services = make_services(script.config, script.settings, outcomes=self.outcomes,
                                      record=self._record, abuse=True,
                                      config_file=f"{script.file}#config")
        self.journal = Journal(self.services.clock)
        self.runtime = SimRuntime(self.library, self.services, self.journal)
        self.services.runtime = self.runtime
        self.requests: list[FakeRequest] = []
        self._phone = DigestClient(random_bytes=counting_bytes())
        self._challenge: tuple[str, str] | None = None

    # ------------------------------------------------------------------ ports → journal
    def _record(self, item: dict[str, Any]) -> None:
        if "status" in item and "method" in item:  # a reply to one of our requests
            for name, value in item["headers"]:
                if name.lower() in ("www-authenticate", "proxy-authenticate"):
                    self._challenge = (name, value)
            self.journal.note({"kind": "reply", **item,
                               "headers": [list(h) for h in item["headers"]]})
        elif "hook" in item:
            self.journal.note({"kind": "hook", **item["hook"]})
        elif "sip_request" in item:
            self.journal.note({"kind": "sip_request", **item["sip_request"]})
        elif "media" in item:
            self.journal.note({"kind": "media", **item["media"]})
        elif "statushook" in item:
            self.journal.note({"kind": "statushook", "event": item["statushook"]})

    # ------------------------------------------------------------------ running
    async def run(self) -> None:
        with journaled_logs(self.journal):
            await self._run()

    async def _run(self) -> None:
        random.seed(self.script.seed)
        await self._seed_store()
        for i, step in enumerate(self.script.steps):
            if "at" in step:
                ahead = step["at"] - (self.services.clock.time() - self.journal.t0)
                if ahead < -1e-9:
                    raise ScriptError(("steps", i, "at"), f"time goes forward only: it is "
                                      f"already {self.journal.now():g} s")
                if ahead > 0:
                    await self.advance(ahead)
            if "request" in step:
                await self._request(step, ("steps", i, "request"))
            elif "event" in step:
                await self._event(step["event"], step.get("data"), ("steps", i, "event"))
            elif "advance" in step:
                await self.advance(float(step["advance"]))
            elif "hangup" in step:
                await self._hangup(step["hangup"], ("steps", i, "hangup"))
            elif step.get("cancel"):
                if not self.requests:
                    raise ScriptError(("steps", i, "cancel"), "no request to cancel")
                self.requests[-1].cancel()
            await self.settle()
        await self.runtime.wait_background(timeout=1.0)

    async def _seed_store(self) -> None:
        for b in self.script.store.get("bindings", ()):
            await self.services.store.save_binding(domain=b["domain"], user=b["user"],
                                                   binding=Binding(
                contact=b["contact"], proxy=b.get("proxy", b["contact"]),
                dialplan=b.get("dialplan", {}), codecs=b.get("codecs", []),
                transport=b.get("transport", "udp"), expires=b.get("expires", 3600)))

    async def _request(self, step: dict[str, Any], path: tuple[str | int, ...]) -> None:
        spec = step["request"]
        n = len(self.requests) + 1
        if isinstance(spec, str):
            text, source = raw_request(spec), parse_source(step.get("source"))
        else:
            text = build_request(spec, n, self._challenge, self._phone, path)
            source = parse_source(spec.get("source"))
        try:
            req = FakeRequest(text, source=source, on_reply=self._record)
        except Exception as exc:  # the SIP parser's verdict on a script's raw text
            raise ScriptError(path, f"not a valid SIP request: {exc}") from None
        req.dialog_record = self._record
        self.requests.append(req)
        self.journal.note({"kind": "request", "method": req.method, "uri": req.uri,
                           "call_id": req.call_id})
        inst = self.runtime.spawn(self.machine, vars={"req": req})
        if req.method == "INVITE":
            req.on_cancel(lambda: inst.post("sip.cancel"))
        await inst.send("start")

    async def _hangup(self, party: str, path: tuple[str | int, ...]) -> None:
        """The caller or the (last answered) callee sends BYE in its dialog."""
        if party == "caller":
            dialogs = [r.dialog for r in self.requests if r.dialog is not None]
        else:
            dialogs = list(self.services.sip.dialogs)
        if not dialogs:
            raise ScriptError(path, f"no answered {party} dialog to hang up")
        dialog = dialogs[-1]
        listener = dialog.listeners.get("bye")
        if listener is None:
            raise ScriptError(path, f"nothing listens for BYE on the {party}'s dialog")
        n = len(self.requests) + 1
        bye = FakeRequest(
            f"BYE sip:pbx@198.51.100.1 SIP/2.0\r\nVia: SIP/2.0/UDP 192.0.2.10:5072;branch="
            f"z9hG4bK-sim{n}\r\nFrom: <sip:{party}@sim.invalid>;tag=sim-remote\r\n"
            f"To: <sip:pbx@198.51.100.1>;tag=sim-local\r\nCall-ID: {dialog.call_id}\r\n"
            f"CSeq: {n} BYE\r\nMax-Forwards: 70\r\nContent-Length: 0\r\n\r\n",
            on_reply=self._record)
        self.journal.note({"kind": "request", "method": "BYE", "uri": f"({party} dialog)",
                           "call_id": dialog.call_id})
        outcome = listener(bye)
        if asyncio.iscoroutine(outcome):
            await outcome

    async def _event(self, name: str, data: dict[str, Any] | None,
                     path: tuple[str | int, ...]) -> None:
        inst = self.main_instance()
        if inst is None:
            inst = self.runtime.spawn(self.machine, vars=self._machine_vars(path))
        if inst.done:
            raise ScriptError(path, f"{inst.id} has already ended ({inst.state})")
        await inst.send(name, data)

    def _machine_vars(self, path: tuple[str | int, ...]) -> dict[str, Any]:
        """Variables of a machine no request starts: for ``trunk:``, exactly those the
        trunk-registration manager gives its instances (its own code builds them), with
        its random identifiers made deterministic."""
        trunk = self.script.trunk
        if trunk is None:
            return {}
        from engine.trunks import TrunkRegistrations, desired_registrations

        wanted = desired_registrations(self.services.config)
        d = wanted.get((trunk["domain"], str(trunk["id"])))
        if d is None:
            raise ScriptError(("trunk",), f"no registration trunk {trunk['id']} in domain "
                              f"{trunk['domain']!r} (have: "
                              f"{', '.join(f'{k[0]}/{k[1]}' for k in wanted) or 'none'})")
        captured: dict[str, Any] = {}

        class _Capture:  # stands in for the runtime: keeps the vars, starts nothing
            def spawn(self, machine: str, *, vars: dict[str, Any], **kw: Any) -> Any:
                captured.update(vars)
                return SimpleNamespace(post=lambda *a, **k: None, vars=SimpleNamespace(**vars))

        manager_services = SimpleNamespace(**{**vars(self.services), "runtime": _Capture()})
        TrunkRegistrations(manager_services)._start(d)
        reg_id = uuid.uuid5(uuid.NAMESPACE_URL, f"sim:{d.domain}/{d.trunk.id}").hex
        deterministic = {"reg_id": reg_id, "call_id": f"{reg_id}@dragonpbx",
                         "from_tag": "simtag"}
        captured.update({k: v for k, v in deterministic.items() if k in captured})
        return captured

    async def settle(self) -> None:
        """Let everything that is ready run, until nothing changes for a while."""
        quiet = 0
        me = asyncio.current_task()
        for _ in range(SETTLE_MAX_ROUNDS):
            before = (len(self.journal.items),
                      sum(1 for t in asyncio.all_tasks() if t is not me and not t.done()))
            await asyncio.sleep(0)
            after = (len(self.journal.items),
                     sum(1 for t in asyncio.all_tasks() if t is not me and not t.done()))
            quiet = quiet + 1 if before == after else 0
            if quiet >= SETTLE_QUIET_ROUNDS:
                return

    async def advance(self, seconds: float) -> None:
        """Move the virtual clock; due timers fire one deadline at a time, each settling
        before the next (a timer armed meanwhile can still be due in this window)."""
        clock = self.services.clock
        target = clock.monotonic() + seconds
        for _ in range(MAX_TIMER_FIRINGS):
            deadline = clock.next_deadline()
            if deadline is None or deadline > target:
                break
            clock.advance(max(0.0, deadline - clock.monotonic()))
            await self.settle()
        else:
            raise ScriptError(("steps",), f"more than {MAX_TIMER_FIRINGS} timer deadlines "
                              f"within {seconds:g} s: does a machine re-arm a timer of 0 s?")
        clock.advance(max(0.0, target - clock.monotonic()))
        await self.settle()

    # ------------------------------------------------------------------ reading
    def main_instance(self) -> Instance | None:
        """The last instance of the simulated machine (the one expectations are about)."""
        for inst in reversed(self.runtime.instances):
            if inst.machine.name == self.machine:
                return inst
        return None

    def result(self) -> dict[str, Any]:
        instances = [{"instance": i.id, "machine": i.machine.name, "version": i.machine.version,
                      "state": i.state, "status": i.status, "path": i.trace.path()}
                     for i in self.runtime.instances]
        main = self.main_instance()
        return {
            "machine": self.machine,
            "version": main.machine.version if main else self.library.get(self.machine).version,
            "script": self.script.file,
            "final_state": main.state if main else None,
            "status": main.status if main else None,
            "path": main.trace.path() if main else [],
            "instances": instances,
            "journal": self.journal.finished(),
            "replies": [r[0] for req in self.requests for r in req.replies],
            "unused_outcomes": self.outcomes.unused(),
        }


async def simulate(script: Script, machine: str | None = None,
                   library: MachineLibrary | None = None) -> dict[str, Any]:
    """Run ``script`` and return its result (see ``Simulation.result``) with ``expect``
    checked under ``"expectations"``."""
    from engine.simulate.expect import check_expectations

    name = machine or script.machine
    if not name:
        raise ScriptError(("machine",), "which machine? give MACHINE or machine: in the script")
    sim = Simulation(script, name, library)
    if name not in sim.library:
        raise ScriptError(("machine",), f"no machine named {name!r} "
                          f"(have: {', '.join(sim.library.names())})")
    await sim.run()
    result = sim.result()
    result["expectations"] = check_expectations(script.expect, result)
    return result


def run_script(script: Script, machine: str | None = None, *,
               machines: Path | None = None) -> dict[str, Any]:
    """Synchronous entry point (CLI, tests): a fresh event loop per run."""
    library = load_library(machines) if machines else None
    return asyncio.run(simulate(script, machine, library))
