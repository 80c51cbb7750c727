"""Typed instance variables: the vars dataclass of a machine, the context annotation of its
actions (``ctx: Ctx[V]``), and what the loader and the runtime refuse."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import pytest

from engine.actions._context import Ctx
from engine.fsm import REGISTRY, Registry, load_text
from engine.fsm.registry import ctx_vars_type
from engine.fsm.vars import build_vars, drop_vars
from tests.unit.fsm.test_runtime import CountVars, Library, make_registry, settle

ROOT = Path(__file__).resolve().parents[3]

COUNTING = """
machine: counting
inputs: [start]
initial: idle
states:
  idle: {on: {start: {target: done, actions: [t.count, t.count]}}}
  done: {final: true}
"""


class HasN(Protocol):
    n: int


def test_context_annotation_names_the_variables() -> None:
    async def typed(ctx: Ctx[CountVars], p: Any) -> None: ...
    async def shared(ctx: Ctx[HasN], p: Any) -> None: ...
    async def untyped(ctx: Any, p: Any) -> None: ...

    assert ctx_vars_type(typed) is CountVars
    assert ctx_vars_type(shared) is HasN
    assert ctx_vars_type(untyped) is Any


async def test_an_instance_keeps_its_machines_dataclass() -> None:
    reg = make_registry()
    from engine.clock import FakeClock
    from engine.fsm.runtime import Runtime

    rt = Runtime(Library(reg, COUNTING), None, FakeClock(), vars_types=reg.vars_types)
    inst = rt.spawn("counting", vars={"n": 40})
    assert isinstance(inst.vars, CountVars)
    await inst.send("start")
    await settle()
    assert inst.state == "done" and inst.vars.n == 42
    with pytest.raises(TypeError, match=r"machine 'counting' \(CountVars\).*'nn'"):
        rt.spawn("counting", vars={"nn": 1})  # a misspelt variable is refused, not created
    with pytest.raises(AttributeError):
        inst.vars.nn = 1  # slots: no variable appears by assignment either


def _protocol_registry() -> Registry:
    reg = make_registry()

    @reg.guard(name="t.has_n")
    def has_n(ctx: Ctx[HasN], p: Any) -> bool:
        return ctx.vars.n > 0

    return reg


def test_a_protocol_context_needs_its_fields_in_the_machines_variables() -> None:
    def machine(name: str) -> str:
        return f"""
machine: {name}
inputs: [start]
initial: idle
states:
  idle:
    on:
      start:
        - {{guard: t.has_n, target: done}}
        - {{target: done}}
  done: {{final: true}}
"""
    ok = load_text(machine("counting"), "counting.yaml", _protocol_registry())
    assert ok.ok, "\n".join(map(str, ok.diagnostics))
    bad = load_text(machine("other_vars"), "other.yaml", _protocol_registry())
    assert not bad.ok
    (diag,) = [d for d in bad.diagnostics if d.code == "E014"]
    assert (diag.line, diag.path) == (9, "$.states.idle.on.start[0].guard")
    assert "uses variable(s) n, which OtherVars (machine 'other_vars') does not have" in str(diag)


def test_an_ended_instance_lets_go_of_other_instances() -> None:
    @dataclass(slots=True)
    class Shared:  # like CallShared: a record naming the session instance
        session: Any

    @dataclass(slots=True, kw_only=True)
    class Family:
        child: Any = None
        legs: dict[int, Any] = field(default_factory=dict)
        others: dict[int, Any] = field(default_factory=dict)
        call: Any = None
        name: str = "kept"

    class Inst:  # stands in for engine.fsm.runtime.Instance
        pass

    family = Family(child=Inst(), legs={1: Inst()}, others={1: "x"},
                    call=Shared(Inst()), name="instance-free")
    drop_vars(family, Inst)
    assert (family.child, family.legs, family.others, family.call, family.name) == \
        (None, {}, {1: "x"}, None, "instance-free")
    loose = build_vars(None, "adhoc", {"a": 1, "b": Inst()})
    drop_vars(loose, Inst)
    assert vars(loose) == {"a": 1}


def test_every_shipped_machine_declares_its_variables() -> None:
    """The shipped machines run on dataclasses, never on a free namespace."""
    from engine.vocabulary import load_vocabulary

    load_vocabulary()  # the actions, and with them the machines' variables
    names = {line.split(":", 1)[1].strip()
             for p in (ROOT / "machines").rglob("*.yaml")
             for line in p.read_text().splitlines() if line.startswith("machine:")}
    assert len(names) == 10
    assert names <= set(REGISTRY.vars_types), sorted(names - set(REGISTRY.vars_types))

