"""The YAML state-machine interpreter: loader, checks, registry, compiler, runtime, trace."""

from engine.fsm.loader import LoadResult, MachineLibrary, load_file, load_text
from engine.fsm.registry import REGISTRY, Registry, action, declare_events, delay, guard
from engine.fsm.runtime import Event, Instance, Outcome, Runtime

__all__ = [
    "REGISTRY", "Event", "Instance", "LoadResult", "MachineLibrary", "Outcome", "Registry",
    "Runtime", "action", "declare_events", "delay", "guard", "load_file", "load_text",
]
