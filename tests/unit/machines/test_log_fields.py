"""``call_id`` on every line about a call (transitions, log.* actions, the B leg's lines with
``leg_call_id`` too), and the safe interpolation of log.* messages."""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from engine.actions.log import TEMPLATE_FIELDS, compile_template
from engine.fsm import REGISTRY, load_text
from engine.machine_vars import CallVars
from engine.simulate import load_script
from engine.simulate.runner import Simulation
from tests.unit.machines.harness import library, make_runtime, make_services
from tests.unit.machines.test_inbound_call import invite

GOLDEN = Path(__file__).parent / "golden"

MACHINE = """
machine: log_fields_test
version: 1
inputs: [start]
initial: idle
states:
  idle:
    on: {start: said}
  said:
    entry:
      - {action: log.info, params: {message: "MESSAGE"}}
    final: true
"""


def machine_with(message: str) -> Any:
    return load_text(MACHINE.replace("MESSAGE", message), "log_fields_test.yaml", REGISTRY)


class Lines(logging.Handler):
    def __init__(self) -> None:
        super().__init__(logging.DEBUG)
        self.records: list[logging.LogRecord] = []

    def emit(self, record: logging.LogRecord) -> None:
        self.records.append(record)

    def about(self, logger: str) -> list[tuple[str, dict[str, Any]]]:
        return [(r.getMessage(), dict(r.fields))  # type: ignore[attr-defined]
                for r in self.records if r.name == logger]


@pytest.fixture
def lines() -> Iterator[Lines]:
    """Every ``engine`` line at debug (``engine.fsm`` at debug before a Runtime is made,
    so it writes its per-transition lines)."""
    handler = Lines()
    engine, fsm = logging.getLogger("engine"), logging.getLogger("engine.fsm")
    saved = fsm.level
    engine.addHandler(handler)
    fsm.setLevel(logging.DEBUG)
    yield handler
    engine.removeHandler(handler)
    fsm.setLevel(saved)


# --------------------------------------------------------------------- interpolation

def test_known_fields_and_escaped_braces_parse() -> None:
    parts = compile_template("call from {from} to {to} {{literal}}")
    assert [name for _, name in parts if name] == ["from", "to"]
    assert "".join(text + (f"<{name}>" if name else "") for text, name in parts) \
        == "call from <from> to <to> {literal}"
    assert compile_template("no fields") == (("no fields", None),)
    assert {"call_id", "leg_call_id", "from", "to", "domain", "trunk", "status",
            "machine", "state"} <= set(TEMPLATE_FIELDS)


@pytest.mark.parametrize("message", [
    "{req.__class__}", "{from.__class__.__mro__}", "{vars[req]}", "{from[0]}",
    "{}", "{0}", "{from!r}", "{from:>99999999}", "{to:{from}}", "{password}", "{req}",
    "lone { brace", "lone } brace",
])
def test_attribute_access_indexing_specs_and_unknown_names_are_refused(message: str) -> None:
    with pytest.raises(ValueError):
        compile_template(message)


def test_a_refused_message_fails_the_machine_load_not_the_call() -> None:
    result = machine_with("peek {req.message}")
    assert not result.ok
    (diag,) = result.errors
    assert diag.code == "E013" and "req.message" in diag.message, diag
    result = machine_with("who is {fromm}")
    assert not result.ok and "unknown field {fromm}" in result.errors[0].message
    assert machine_with("call from {from} to {to}").ok


async def test_log_action_renders_fields_of_its_call(lines: Lines) -> None:
    compiled = machine_with("call from {from} to {to} at {domain} ({call_id}) "
                            "trunk {trunk} in {state} of {machine}").compiled
    rt = make_runtime(make_services())
    # the test machine keeps a call's variables, as inbound_call does
    rt.vars_types = {**rt.vars_types, compiled.name: CallVars}
    inst = rt.spawn(compiled, vars={"req": invite("1001", caller="alice", n=7)})
    await inst.send("start")
    ((msg, fields),) = [ln for ln in lines.about("engine.fsm") if ln[0].startswith("call from")]
    assert msg == ("call from alice to 1001 at pbx.test (call-7@203.0.113.9) trunk - in said "
                   f"of {compiled.label}")
    assert fields["call_id"] == "call-7@203.0.113.9" and fields["instance"] == inst.id
    assert inst.call_id == "call-7@203.0.113.9"


async def test_log_action_does_no_work_when_its_level_is_off(
        lines: Lines, monkeypatch: pytest.MonkeyPatch) -> None:
    import engine.actions.log as log_actions

    def boom(*_: Any) -> str:
        raise AssertionError("rendered although nothing is logged")

    compiled = machine_with("call from {from}").compiled
    monkeypatch.setattr(log_actions, "render", boom)
    logging.getLogger("engine.fsm").setLevel(logging.WARNING)
    rt = make_runtime(make_services())
    inst = rt.spawn(compiled, vars={"req": invite("1001")})
    await inst.send("start")
    assert inst.state == "said" and inst.status == "done"
    assert not lines.about("engine.fsm")


# ------------------------------------------------------- call_id on a whole call's lines

def test_every_line_of_a_connected_call_names_the_a_leg_and_b_lines_the_b_leg(
        lines: Lines) -> None:
    """A client→client call (digest challenge, CallHook, connect verb, one B leg), run by
    ``engine.simulate`` at debug: every transition line carries the A leg's Call-ID, the
    leg's lines the B leg's too, and the summary lists the B leg."""
    script = load_script(GOLDEN / "inbound_call" / "client_to_client_connect.yaml")
    sim = Simulation(script, "inbound_call", library())
    assert sim.runtime.log_transitions
    asyncio.run(sim.run())
    ((_, summary),) = [ln for ln in lines.about("engine.summary")
                       if ln[0] == "call summary" and ln[1].get("legs")]
    a_leg = summary["call_id"]  # the authenticated INVITE (the challenged one had its own)
    by_instance: dict[str, set[Any]] = {}
    machine_of: dict[str, str] = {}
    for msg, f in lines.about("engine.fsm"):
        if "instance" in f:
            by_instance.setdefault(f["instance"], set()).add(f.get("call_id"))
            if msg == "transition":
                machine_of[f["instance"]] = f["machine"].split("@")[0]
    assert all(len(ids) == 1 and None not in ids for ids in by_instance.values()), by_instance
    of_call = {machine_of[i] for i, ids in by_instance.items() if ids == {a_leg}}
    assert {"inbound_call", "digest_auth", "verb_connect", "call_leg"} <= of_call, of_call
    leg_lines = [f for m, f in lines.about("engine.fsm")
                 if m == "transition" and f["machine"].startswith("call_leg@")]
    sent = next(i for i, f in enumerate(leg_lines) if "leg_call_id" in f)
    b_legs = {f.get("leg_call_id") for f in leg_lines[sent:]}  # from the INVITE's step on
    assert len(leg_lines) - sent >= 3, leg_lines  # ringing, answered, hung up…
    assert len(b_legs) == 1 and None not in b_legs and a_leg not in b_legs, leg_lines
    assert all(f["call_id"] == a_leg for f in leg_lines)
    assert not [f for m, f in lines.about("engine.fsm") if "leg_call_id" in f
                and not f["machine"].startswith("call_leg@")]
    assert summary["legs"] == list(b_legs)
