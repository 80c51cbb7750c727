"""Interpreter cost: create an instance, take transitions, finish.

A PBX creates several instances per call (pipeline, session, verbs, legs), so
instance creation + a transition must stay far below a millisecond. Prints
µs per instance and instances/s for: spawn + one transition with an action;
a 6-step flow with guards, an always-decision and an ``after`` timer armed
and cancelled (closer to a real call leg). Both are driven by ``await
inst.send``; ``posted`` runs the flow again with every event ``post``ed from
outside (how the daemon's SIP, timer and webhook callbacks deliver them), in
batches of instances with one loop turn per event. ``registration`` is one digest
registration (REGISTER → 401, REGISTER with credentials → 200) through the shipped
machines with the in-memory fakes of ``engine.simulate`` (static password, memory
store): the interpreter plus the real actions, no sockets. ``--profile`` runs it
once more under cProfile and prints the interpreter's top functions by own time.

    .venv/bin/python bench/bench_fsm.py [--n 50000] [--registrations 3000] [--profile]
                                        [--only-registrations]
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import gc
import pstats
import time
from types import SimpleNamespace
from typing import Any

from engine.clock import LoopClock
from engine.fsm import Registry, load_text
from engine.fsm.runtime import Runtime
from engine.simulate import FakeRequest, load_library, make_services
from engine.sip.digest import DigestClient, parse_challenge

ONE = """
machine: one
inputs: [start]
initial: idle
states:
  idle: {on: {start: done}}
  done:
    entry: [b.noop]
    final: true
"""

FLOW = """
machine: flow
inputs: [start, answer, hangup]
initial: idle
states:
  idle: {on: {start: check}}
  check:
    always:
      - {guard: b.yes, target: ringing, actions: [b.noop]}
      - {target: rejected}
  ringing:
    entry: [b.noop]
    after: [{delay: 30, target: rejected}]
    on: {answer: {target: connected, actions: [b.noop]}}
  connected:
    entry: [b.noop]
    after: [{delay: 14400, target: ended}]
    on: {hangup: ended}
  ended: {entry: [b.noop], final: true}
  rejected: {final: true}
"""


class Lib:
    def __init__(self, reg: Registry, *texts: str):
        self.m = {}
        for t in texts:
            r = load_text(t, "bench.yaml", reg)
            assert r.ok, r.diagnostics
            self.m[r.compiled.name] = r.compiled

    def get(self, name: str) -> Any:
        return self.m[name]


def registry() -> Registry:
    reg = Registry()
    reg.declare_events("bench", ["start", "answer", "hangup"])

    @reg.action(name="b.noop")
    async def noop(ctx: Any, p: Any) -> None:
        return None

    @reg.guard(name="b.yes")
    def yes(ctx: Any, p: Any) -> bool:
        return True

    return reg


async def run(n: int) -> None:
    rt = Runtime(Lib(registry(), ONE, FLOW), SimpleNamespace(), LoopClock(),
                 trace_ignored=False)
    for name, events in (("one", ["start"]), ("flow", ["start", "answer", "hangup"])):
        for _ in range(2000):  # warm-up
            inst = rt.spawn(name)
            for ev in events:
                await inst.send(ev)
        gc.collect()
        t0 = time.perf_counter()
        c0 = time.process_time()
        for _ in range(n):
            inst = rt.spawn(name)
            for ev in events:
                await inst.send(ev)
            assert inst.done
        wall = time.perf_counter() - t0
        cpu = time.process_time() - c0
        transitions = len(events) + (1 if name == "flow" else 0)
        print(f"{name:5s}: {n} instances, {transitions} transitions each: "
              f"{wall / n * 1e6:7.1f} µs/instance  {n / wall:9.0f} instances/s  "
              f"({cpu / n * 1e6:.1f} µs CPU)")
    await run_posted(rt, n)
    assert not rt.live


async def run_posted(rt: Runtime, n: int, batch: int = 1000) -> None:
    """The flow with each event posted by a loop callback: one loop turn per event for a
    batch of instances, so the figure includes how ``post`` gets the event processed."""
    events = ["start", "answer", "hangup"]

    async def rounds(count: int) -> None:
        for _ in range(count // batch):
            insts = [rt.spawn("flow") for _ in range(batch)]
            for ev in events:
                for inst in insts:
                    inst.post(ev)
                await asyncio.sleep(0)
            for inst in insts:
                assert inst.done, inst

    await rounds(2 * batch)  # warm-up
    gc.collect()
    n -= n % batch
    t0 = time.perf_counter()
    c0 = time.process_time()
    await rounds(n)
    wall = time.perf_counter() - t0
    cpu = time.process_time() - c0
    print(f"posted: {n} instances, 4 transitions each: "
          f"{wall / n * 1e6:7.1f} µs/instance  {n / wall:9.0f} instances/s  "
          f"({cpu / n * 1e6:.1f} µs CPU)")


REGISTER = (
    "REGISTER sip:pbx.test SIP/2.0\r\n"
    "Via: SIP/2.0/UDP 192.0.2.10:5072;branch=z9hG4bK-{n}\r\n"
    "From: <sip:alice@pbx.test>;tag=f{n}\r\n"
    "To: <sip:alice@pbx.test>\r\n"
    "Call-ID: reg-{n}@192.0.2.10\r\n"
    "CSeq: {n} REGISTER\r\n"
    "Contact: <sip:alice@192.0.2.10:5072>\r\n"
    "Max-Forwards: 70\r\n"
    "Expires: 300\r\n"
    "{auth}Content-Length: 0\r\n\r\n"
)


async def registrations(n: int, profile: bool) -> None:
    """``n`` digest registrations of alice (password ``secret`` in the simulation's
    default config), each a 401 round and a 200 round, one instance at a time."""
    services = make_services()
    rt = Runtime(load_library(), services, services.clock)
    digest = DigestClient()
    seq = iter(range(1, 1 << 62))

    async def handle(auth: str) -> FakeRequest:
        req = FakeRequest(REGISTER.format(n=next(seq), auth=auth))
        inst = rt.spawn("registration", vars={"req": req})
        await inst.send("start")
        while not inst.done:  # the digest_auth child reports back through post()
            await asyncio.sleep(0)
        return req

    async def one() -> None:
        req = await handle("")
        challenge = parse_challenge(req.reply_header("WWW-Authenticate")[0])
        value = digest.authorization(challenge, method="REGISTER", uri="sip:pbx.test",
                                     username="alice", password="secret")
        req = await handle(f"Authorization: {value}\r\n")
        assert req.status == 200, req.replies

    for _ in range(300):  # warm-up
        await one()
    gc.collect()
    c0 = time.process_time()
    for _ in range(n):
        await one()
    cpu = time.process_time() - c0
    print(f"registration: {n} digest registrations: {cpu / n * 1e6:.0f} µs CPU each")
    if profile:
        prof = cProfile.Profile()
        prof.enable()
        for _ in range(n):
            await one()
        prof.disable()
        print("\nunder cProfile (about 2.5x slower), interpreter and transitions only:")
        stats = pstats.Stats(prof).sort_stats("tottime")
        stats.print_stats(r"engine/fsm/|transitions/", 15)


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--n", type=int, default=50000)
    ap.add_argument("--registrations", type=int, default=3000)
    ap.add_argument("--profile", action="store_true",
                    help="profile the registrations once more and print the top functions")
    ap.add_argument("--only-registrations", action="store_true",
                    help="skip the spawn/flow figures (bench_instructions.py runs this)")
    args = ap.parse_args()
    try:
        import uvloop
        uvloop.install()
        print("event loop: uvloop")
    except ImportError:
        print("event loop: asyncio")
    if not args.only_registrations:
        asyncio.run(run(args.n))
    asyncio.run(registrations(args.registrations, args.profile))


if __name__ == "__main__":
    main()
