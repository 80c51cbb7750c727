"""An instance's variables: built from its machine's vars dataclass, emptied when it ends.

Each machine declares the dataclass of its instance variables in the registry
(``@machine_vars("registration")``); the runtime builds it from the values a spawn
passes in, so a misspelt name fails at the spawn instead of creating a new variable.
A machine that declares none (the fsm tests' ad-hoc machines) gets a namespace.
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable
from types import SimpleNamespace
from typing import Any


def build_vars(vars_type: type | None, machine: str, values: dict[str, Any]) -> Any:
    """``vars_type(**values)``, or a namespace of ``values`` when ``vars_type`` is None."""
    if vars_type is None:
        return SimpleNamespace(**values)
    try:
        return vars_type(**values)
    except TypeError as exc:  # an unknown or missing name: say which machine
        raise TypeError(f"vars of machine {machine!r} ({vars_type.__name__}): {exc}") from None


def drop_vars(values: Any, matches: Callable[[Any], bool]) -> None:
    """Forget every variable whose value ``matches`` (an ended instance lets go of the
    instances it knew). A dataclass field is reset to None (a dict to empty), keeping the
    variable readable; a namespace attribute is deleted."""
    if isinstance(values, SimpleNamespace):
        for key, value in list(values.__dict__.items()):
            if matches(value):
                delattr(values, key)
        return
    for f in dataclasses.fields(values):
        value = getattr(values, f.name)
        if matches(value):
            setattr(values, f.name, {} if isinstance(value, dict) else None)
