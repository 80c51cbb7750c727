"""The YAML state-machine interpreter: loader, checks, registry, compiler, runtime, trace.

This package's namespace holds the pure parts only (what a machine file is, what it may
name, the values actions exchange): importing it starts no asyncio driver. The runtime
that runs instances is ``engine.fsm.runtime`` (``Runtime``, ``Instance``), imported by the
composition roots that run machines.
"""

from engine.fsm.events import Event, Outcome
from engine.fsm.loader import LoadResult, MachineLibrary, load_file, load_text
from engine.fsm.registry import REGISTRY, Registry, action, declare_events, delay, guard

__all__ = [
    "REGISTRY", "Event", "LoadResult", "MachineLibrary", "Outcome", "Registry", "action",
    "declare_events", "delay", "guard", "load_file", "load_text",
]
