"""Scripted outcomes of the ports' operations, chosen by the action that asked.

A simulation script lists, per action name, what the outside world answers each
time that action uses a port (``hooks.reghook: [{status: 200, json: …}]``). The
runtime records which action is running in a context variable; work the action
starts with ``ctx.start`` runs in a task that inherits it, so the fake ports know
whose outcome to take even when the port is used later, after the action returned.
"""

from __future__ import annotations

from collections import deque
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from contextvars import ContextVar
from typing import Any

_current_action: ContextVar[str | None] = ContextVar("simulated_action", default=None)


def current_action() -> str | None:
    """Name of the action whose port call this is (None outside actions)."""
    return _current_action.get()


@contextmanager
def acting(name: str) -> Iterator[None]:
    # set back rather than reset(token): the runtime may resume an action's coroutine in
    # another task (another context), where a token from the first one is refused
    previous = _current_action.get()
    _current_action.set(name)
    try:
        yield
    finally:
        _current_action.set(previous)


class Outcomes:
    """Per-action queues of scripted results; what each port call consumed is logged."""

    def __init__(self, scripted: Mapping[str, list[dict[str, Any]]] | None = None):
        self._queues: dict[str, deque[dict[str, Any]]] = {
            name: deque(items) for name, items in (scripted or {}).items()}
        self.used: list[dict[str, Any]] = []

    def take(self, port: str, *keys: str | None) -> dict[str, Any] | None:
        """The next scripted outcome for the running action (or another key, e.g. a URL),
        or None when nothing is scripted (the fake port's default then applies)."""
        for key in (current_action(), *keys):
            if key and self._queues.get(key):
                outcome = self._queues[key].popleft()
                self.used.append({"port": port, "key": key, "outcome": outcome})
                return outcome
        return None

    def unused(self) -> dict[str, int]:
        """Scripted outcomes no port call asked for (a script mistake worth reporting)."""
        return {name: len(q) for name, q in self._queues.items() if q}
