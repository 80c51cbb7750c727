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


def drop_vars(values: Any, is_instance: Callable[[Any], bool]) -> None:
    """Forget every variable that refers to an instance (an ended instance lets go of the
    instances it knew): an instance, a dict of them, or a record holding one (a call's
    shared record names its session). A dataclass field is reset to None (a dict to
    empty), keeping the variable readable; a namespace attribute is deleted."""
    def refers(value: Any) -> bool:
        if is_instance(value):
            return True
        if isinstance(value, dict):
            return any(is_instance(v) for v in value.values())
        return (dataclasses.is_dataclass(value) and not isinstance(value, type)
                and any(is_instance(getattr(value, f.name)) for f in dataclasses.fields(value)))

    if isinstance(values, SimpleNamespace):
        for key, value in list(values.__dict__.items()):
            if refers(value):
                delattr(values, key)
        return
    for f in dataclasses.fields(values):
        value = getattr(values, f.name)
        if refers(value):
            setattr(values, f.name, {} if isinstance(value, dict) else None)
