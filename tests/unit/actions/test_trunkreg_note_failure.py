"""``trunkreg.note_failure``: the worked example of docs/design-notes.md ("The typed seam").

The action is called as the runtime calls it — ``(ctx, params)`` — with a stand-in
context whose ``vars`` is the machine's real dataclass, and the loader is shown to
refuse it in a machine whose variables are not ``TrunkRegistrationVars``.
"""

from __future__ import annotations

from types import SimpleNamespace
from typing import Any

from engine.actions.trunkreg import FailureParams, note_failure
from engine.clock import FakeClock
from engine.config.model import RegistrationTarget
from engine.fsm import Event, load_text
from engine.machine_vars import TrunkRegistrationVars
from engine.vocabulary import load_vocabulary


class _Log:
    def __init__(self) -> None:
        self.lines: list[tuple[str, dict[str, Any]]] = []

    def warning(self, message: str, **fields: Any) -> None:
        self.lines.append((message, fields))


def _ctx(event: Event) -> SimpleNamespace:
    trunk = SimpleNamespace(display_name="carrier", id=7)
    target = RegistrationTarget(host="reg.example.net", username="acme", password="pw")
    v = TrunkRegistrationVars(trunk=trunk, domain="pbx.test",
                              target=target, reg_id="r1", call_id="c1", from_tag="t1")
    return SimpleNamespace(vars=v, event=event, log=_Log(),
                           runtime=SimpleNamespace(clock=FakeClock()))


async def test_each_failure_doubles_the_backoff_and_says_why() -> None:
    ctx = _ctx(Event("reg.failed", {"status": 403, "reason": "Forbidden"}))
    await note_failure(ctx, FailureParams(reason="registrar refused"))
    v = ctx.vars
    assert v.failures == 1 and 1.6 <= v.backoff <= 2.4  # 2 s ± 20 % jitter
    assert v.status["state"] == "failing"
    assert v.status["last_error"] == "registrar refused (403 Forbidden)"
    assert v.status["next_retry"] == round(ctx.runtime.clock.time() + v.backoff, 1)
    await note_failure(ctx, FailureParams(reason="no answer"))
    assert v.failures == 2 and 3.2 <= v.backoff <= 4.8
    assert [m for m, _ in ctx.log.lines] == ["trunk registration failed"] * 2


async def test_a_failure_without_a_status_keeps_the_reason_alone() -> None:
    ctx = _ctx(Event("reg.timeout", {}))
    await note_failure(ctx, FailureParams(reason="no answer"))
    assert ctx.vars.status["last_error"] == "no answer"


def test_a_machine_without_its_variables_cannot_use_it() -> None:
    text = """
machine: registration
version: 1
inputs: [start]
initial: idle
states:
  idle:
    on:
      start: {target: done, actions: [{action: trunkreg.note_failure, params: {reason: x}}]}
  done: {final: true}
"""
    result = load_text(text, "registration.yaml", load_vocabulary())
    (diag,) = [d for d in result.diagnostics if d.code == "E014"]
    assert diag.line == 9
    assert "works on TrunkRegistrationVars, not on RegistrationVars" in diag.message
