"""An instance's variables: built from its machine's vars dataclass, emptied when it ends.

Each machine declares the dataclass of its instance variables in the registry
(``@machine_vars("registration")``); the runtime builds it from the values a spawn
passes in, so a misspelt name fails at the spawn instead of creating a new variable.
A machine that declares none (the fsm tests' ad-hoc machines) gets a namespace.
"""

from __future__ import annotations

import dataclasses
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


# Values that can never be or hold an instance: skipped without further checks (most
# variables are these, and every instance runs this when it ends).
_PLAIN = frozenset({type(None), str, int, float, bool, bytes, tuple, list})


# Annotations (as written, strings under ``from __future__ import annotations``) of
# fields that cannot hold an instance: such fields are not looked at.
_SCALAR_NAMES = frozenset({"str", "int", "float", "bool", "bytes", "None"})


def _scalar(annotation: Any) -> bool:
    if not isinstance(annotation, str):
        return annotation in _PLAIN
    return all(part.strip() in _SCALAR_NAMES for part in annotation.split("|"))


_FIELDS: dict[type, tuple[str, ...]] = {}


def _field_names(cls: type) -> tuple[str, ...]:
    """The fields of a dataclass that may refer to an instance, looked up once per class
    (``fields()`` is slow): every field but those annotated with scalar types only."""
    names = _FIELDS.get(cls)
    if names is None:
        names = _FIELDS[cls] = tuple(f.name for f in dataclasses.fields(cls)
                                     if not _scalar(f.type))
    return names


# How a value of each type is looked at, per instance class (decided at its first sight):
# _OPAQUE (never is nor holds one directly: a request, a string...), _DICT, or the
# names of a dataclass's fields that may hold one. Every instance runs this when it
# ends, most of its variables are opaque, and a type check per variable beats the
# ``is_dataclass``/``isinstance`` chain (~35 µs per digest registration, 4 instances).
_OPAQUE: tuple[str, ...] = ()
_DICT: tuple[str, ...] = ("",)
_SHAPES: dict[type, dict[type, tuple[str, ...]]] = {}


def _shape(kind: type) -> tuple[str, ...]:
    """For a type that is not an instance class (``refers`` checks that first)."""
    if kind is dict:
        return _DICT
    if dataclasses.is_dataclass(kind):
        return _field_names(kind)
    return _OPAQUE


def drop_vars(values: Any, instance_type: type) -> None:
    """Forget every variable that refers to an instance (an ended instance lets go of the
    instances it knew): an instance, a dict of them, or a record holding one (a call's
    shared record names its session). A dataclass field is reset to None (a dict to
    empty), keeping the variable readable; a namespace attribute is deleted."""
    shapes = _SHAPES.get(instance_type)
    if shapes is None:
        shapes = _SHAPES[instance_type] = {kind: _OPAQUE for kind in _PLAIN}

    def refers(value: Any) -> bool:
        if isinstance(value, instance_type):
            return True
        kind = type(value)
        shape = shapes.get(kind)
        if shape is None:
            shape = shapes[kind] = _shape(kind)
        if not shape:
            return False
        if shape is _DICT:
            return any(isinstance(v, instance_type) for v in value.values())
        return any(isinstance(getattr(value, name), instance_type) for name in shape)

    if isinstance(values, SimpleNamespace):
        for key, value in list(values.__dict__.items()):
            if refers(value):
                delattr(values, key)
        return
    for name in _field_names(type(values)):
        value = getattr(values, name)
        if value is not None and refers(value):  # most optional fields are still None
            setattr(values, name, {} if isinstance(value, dict) else None)
