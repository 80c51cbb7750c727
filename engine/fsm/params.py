"""Parameter dataclasses of actions, guards and delays ↔ JSON Schema.

Each registered callable declares a frozen dataclass for its parameters. The
registry exports its JSON Schema (for docs and the machine linter) and builds
the instance once, at load time, from the YAML mapping — so a machine that
passes a wrong parameter is refused before it ever runs.
"""

from __future__ import annotations

import dataclasses
import types
import typing
from collections.abc import Mapping, Sequence
from typing import Any, Literal, Union, get_args, get_origin, get_type_hints


@dataclasses.dataclass(frozen=True)
class NoParams:
    """For callables that take no parameters."""


def _type_schema(tp: Any) -> dict[str, Any]:
    origin = get_origin(tp)
    if tp is Any or tp is object:
        return {}
    if tp is type(None):
        return {"type": "null"}
    if tp is bool:
        return {"type": "boolean"}
    if tp is int:
        return {"type": "integer"}
    if tp is float:
        return {"type": "number"}
    if tp is str:
        return {"type": "string"}
    if origin is Literal:
        return {"enum": list(get_args(tp))}
    if origin in (Union, types.UnionType):
        return {"anyOf": [_type_schema(a) for a in get_args(tp)]}
    if origin in (list, tuple, Sequence, typing.Sequence) or tp in (list, tuple):
        args = get_args(tp)
        item = args[0] if args and args[0] is not Ellipsis else Any
        return {"type": "array", "items": _type_schema(item)}
    if origin in (dict, Mapping, typing.Mapping) or tp in (dict,):
        args = get_args(tp)
        schema: dict[str, Any] = {"type": "object"}
        if len(args) == 2 and args[1] is not Any:
            schema["additionalProperties"] = _type_schema(args[1])
        return schema
    if isinstance(tp, type) and dataclasses.is_dataclass(tp):
        return schema_for(tp)
    raise TypeError(f"unsupported parameter type {tp!r}")


def schema_for(cls: type[Any]) -> dict[str, Any]:
    """JSON Schema (2020-12) of a params dataclass."""
    hints = get_type_hints(cls)
    props: dict[str, Any] = {}
    required: list[str] = []
    for f in dataclasses.fields(cls):
        prop = _type_schema(hints[f.name])
        doc = f.metadata.get("doc") if f.metadata else None
        if doc:
            prop = {**prop, "description": doc}
        props[f.name] = prop
        if f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING:
            required.append(f.name)
        elif f.default is not dataclasses.MISSING and _jsonable(f.default):
            props[f.name] = {**prop, "default": f.default}
    schema: dict[str, Any] = {"type": "object", "properties": props,
                              "additionalProperties": False}
    if required:
        schema["required"] = required
    return schema


def _jsonable(value: Any) -> bool:
    return value is None or isinstance(value, (bool, int, float, str))


def build(cls: type, values: Mapping[str, Any] | None) -> Any:
    """Instantiate ``cls`` from an already schema-validated mapping.

    Lists become tuples so the frozen instance is really immutable (actions may
    share it between instances without copying).
    """
    kwargs = {k: _freeze(v) for k, v in (values or {}).items()}
    return cls(**kwargs)


def _freeze(value: Any) -> Any:
    if isinstance(value, list):
        return tuple(_freeze(v) for v in value)
    if isinstance(value, dict):
        return types.MappingProxyType({k: _freeze(v) for k, v in value.items()})
    return value
