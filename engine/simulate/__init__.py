"""Run machines without a network: scripted inputs, scripted outcomes, virtual time.

``dragonpbx simulate`` (engine.simulate.cli), the golden tests of the shipped
machines and the machines' unit tests all use these fakes and this runner.
"""

from engine.simulate.fakes import (
    FakeDialog,
    FakeMedia,
    FakeRequest,
    FakeSipPort,
    RecordingStatusHook,
    ScriptedAbuse,
    ScriptedCaller,
    ScriptedStore,
)
from engine.simulate.outcomes import Outcomes
from engine.simulate.report import format_report
from engine.simulate.runner import Simulation, run_script, simulate
from engine.simulate.script import Script, load_script, parse_script
from engine.simulate.services import load_library, machines_root, make_services

__all__ = [
    "FakeDialog", "FakeMedia", "FakeRequest", "FakeSipPort", "Outcomes", "RecordingStatusHook",
    "Script", "ScriptedAbuse", "ScriptedCaller", "ScriptedStore", "Simulation", "format_report",
    "load_library", "load_script", "machines_root", "make_services", "parse_script",
    "run_script", "simulate",
]
