"""What the machines may name: every shipped action, guard and delay, and the events the
drivers deliver (``inputs:``).

Actions register themselves with ``engine.fsm.REGISTRY`` through their decorators when
their module is imported; which modules make up the vocabulary is decided here, once,
and each composition root (the daemon, the CLI, ``simulate``, tools) calls
``load_vocabulary()`` explicitly. Importing ``engine.actions`` alone registers nothing.
"""

from __future__ import annotations

from importlib import import_module

from engine.fsm.registry import REGISTRY, Registry

# One module per namespace: engine/actions/sip.py → "sip.reply".
ACTION_MODULES: tuple[str, ...] = (
    "log", "timer", "sip", "config", "auth", "hooks", "reg", "store", "trunk", "call", "status",
    "session", "verb", "media", "leg", "connect", "relay", "trunkreg", "transfer", "abuse",
)

# Drivers that declare the events they deliver to machines.
EVENT_SOURCES: tuple[str, ...] = ("engine.dispatch", "engine.trunks", "engine.api.events",
                                  "engine.drain_events")


def load_vocabulary() -> Registry:
    """Import every action module and event source (idempotent); the filled registry."""
    for name in EVENT_SOURCES:
        import_module(name)
    for name in ACTION_MODULES:
        import_module(f"engine.actions.{name}")
    return REGISTRY
