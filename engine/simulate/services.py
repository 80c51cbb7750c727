"""The ports a simulated machine sees: real logic (digest, hooks, config, templates)
over fake transports, all on one virtual clock."""

from __future__ import annotations

import itertools
import json
import os
from collections.abc import Mapping
from pathlib import Path
from types import SimpleNamespace
from typing import Any

from engine.clock import FakeClock
from engine.config.validate import snapshot_from_json_text
from engine.fsm import MachineLibrary
from engine.hooks.callhook import CallHook
from engine.hooks.reghook import RegHook
from engine.hooks.templates import CallTemplates
from engine.paths import machines_dir
from engine.settings import load_settings
from engine.simulate.defaults import DEFAULT_CONFIG
from engine.simulate.fakes import (
    FakeMedia,
    FakeSipPort,
    Recorder,
    RecordingStatusHook,
    ScriptedAbuse,
    ScriptedCaller,
    ScriptedStore,
    _nothing,
)
from engine.simulate.outcomes import Outcomes
from engine.sip.digest import DigestAuthenticator, StoreNonceCounter
from engine.vocabulary import load_vocabulary

# A fixed secret: nonces (and so the 401s a script shows) are the same on every run.
SIM_NONCE_SECRET = b"dragonpbx-simulate-nonce-secret!"


def machines_root() -> Path:
    """MACHINES_PATH when set (an operator's edited machines), else the shipped ones."""
    configured = os.environ.get("MACHINES_PATH")
    return Path(configured) if configured else machines_dir()


def load_library(root: Path | None = None) -> MachineLibrary:
    load_vocabulary()
    library = MachineLibrary(root or machines_root())
    library.load()
    return library


def counting_bytes() -> Any:
    """Deterministic stand-in for os.urandom (nonces and cnonces)."""
    counter = itertools.count(1)
    return lambda n: next(counter).to_bytes(n, "big")


from engine.lease import MemoryLeases  # noqa: E402


def make_services(config: Mapping[str, Any] | None = None, env: Mapping[str, str] | None = None,
                  *, outcomes: Outcomes | None = None, record: Recorder = _nothing,
                  abuse: bool = False, config_file: str = "config.json") -> SimpleNamespace:
    """Everything ``ctx.services`` offers, with fakes for the network and Redis.

    ``abuse`` wires the scripted abuse protection (clear unless the script says
    otherwise); without it the protection is off, as when ABUSE is not wired."""
    env = dict(env or {})
    settings = load_settings(env)
    outcomes = outcomes or Outcomes()
    clock = FakeClock()
    store = ScriptedStore(outcomes, clock=clock)
    caller = ScriptedCaller(outcomes=outcomes, record=record)
    snapshot = snapshot_from_json_text(json.dumps(config or DEFAULT_CONFIG), file=config_file)
    templates_dir = env.get("FILE_PATH")
    return SimpleNamespace(
        settings=settings, config=snapshot, store=store, clock=clock, caller=caller,
        outcomes=outcomes,
        digest=DigestAuthenticator(SIM_NONCE_SECRET, counter=StoreNonceCounter(store),
                                   wall_clock=clock.time, random_bytes=counting_bytes()),
        reghook=RegHook(caller, timeout=settings.reghook_timeout),
        callhook=CallHook(caller, timeout=settings.callhook_timeout),
        templates=CallTemplates(Path(templates_dir or settings.file_path), now=clock.time),
        statushook=RecordingStatusHook(record), media=FakeMedia(outcomes, record),
        sip=FakeSipPort(outcomes, record), abuse=ScriptedAbuse(outcomes) if abuse else None,
        runtime=None, trunks=None,
        leases=MemoryLeases("simulation", ttl=settings.regtrunk_refresh),
    )
