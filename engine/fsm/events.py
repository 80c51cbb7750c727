"""The values that flow between machines and actions: an ``Event`` an instance receives,
and the ``Outcome`` an action's started work ends with (pure data, no runtime)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any


@dataclass(frozen=True, slots=True)
class Outcome:
    """Returned by work started with ``ctx.start`` to choose the event it ends with."""

    event: str
    data: dict[str, Any] | None = None


class Event:
    """An event delivered to an instance: its name and data (``ev.get("status")``)."""

    __slots__ = ("data", "name")

    def __init__(self, name: str, data: dict[str, Any] | None):
        self.name = name
        self.data = data if data is not None else {}

    def get(self, key: str, default: Any = None) -> Any:
        return self.data.get(key, default)

    def __repr__(self) -> str:
        return f"Event({self.name!r})"
