"""Run shipped machines against in-memory fakes (pure logic; real peers are in e2e).

The fakes live in ``engine.simulate`` (shared with ``dragonpbx simulate`` and the
golden tests): ``FakeRequest`` records replies; services use an in-memory store, a
scripted HookCaller, the real DigestAuthenticator and a ConfigSnapshot built from
JSON. Machines are loaded from MACHINES_PATH when it is set (an operator's edited
copies), else the shipped ones.
"""

from __future__ import annotations

import asyncio
from types import SimpleNamespace
from typing import Any

from engine.fsm import MachineLibrary
from engine.fsm.runtime import Runtime
from engine.simulate import load_library, machines_root
from engine.simulate import make_services as _make_services
from engine.simulate.defaults import DEFAULT_CONFIG
from engine.simulate.fakes import (  # noqa: F401 - re-exported for the tests
    FakeMedia,
    FakeRequest,
    RecordingStatusHook,
    ScriptedCaller,
)
from engine.vocabulary import load_vocabulary

load_vocabulary()  # this harness is the unit tests' composition root

CONFIG = DEFAULT_CONFIG

_LIBRARIES: dict[str, MachineLibrary] = {}


def library() -> MachineLibrary:
    root = machines_root()
    key = str(root)
    if key not in _LIBRARIES:
        _LIBRARIES[key] = load_library(root)
    return _LIBRARIES[key]


def make_services(config: dict[str, Any] | None = None, **env: str) -> SimpleNamespace:
    return _make_services(config or CONFIG, env)


def make_runtime(services: SimpleNamespace) -> Runtime:
    return Runtime(library(), services, services.clock)


async def run(rt: Runtime, machine: str, req: FakeRequest, settle: int = 50,
              tick: float = 0.0) -> Any:
    """Start ``machine`` for ``req`` and let it run; ``tick`` advances the fake clock
    that much per step (for timers)."""
    inst = rt.spawn(machine, vars={"req": req})
    await inst.send("start")
    for _ in range(settle):
        if inst.done:
            break
        await asyncio.sleep(0)
        if tick:
            rt.clock.advance(tick)
    return inst
