"""Golden scenarios of the shipped machines, run by ``engine.simulate``.

Each ``golden/<group>/<scenario>.yaml`` is a ``dragonpbx simulate`` script; its
``.out`` file is the report the machines produced when it was last accepted (the
path, guard results, actions with their parameters, replies, webhook calls, log
lines). A machine edit that changes any of them fails here, and the diff shows
how. Regenerate after an intended change, then review the diff:

    UPDATE_GOLDEN=1 .venv/bin/python -m pytest tests/unit/machines/test_golden.py

The scenarios' own ``expect:`` blocks must hold either way. With MACHINES_PATH set
the scenarios run against those machines (an operator's edited copies).
"""

from __future__ import annotations

import asyncio
import os
from pathlib import Path

import pytest

from engine.simulate import format_report, load_script, simulate
from tests.unit.machines.harness import library

GOLDEN = Path(__file__).parent / "golden"
SCENARIOS = sorted(GOLDEN.rglob("*.yaml"))


def test_there_are_scenarios_for_every_shipped_flow() -> None:
    groups = {p.parent.name for p in SCENARIOS}
    assert {"registration", "inbound_call", "trunk_registration", "verbs"} <= groups
    assert len(SCENARIOS) >= 25


@pytest.mark.parametrize("scenario", SCENARIOS, ids=lambda p: f"{p.parent.name}/{p.stem}")
def test_scenario_matches_its_golden_report(scenario: Path) -> None:
    script = load_script(scenario)
    result = asyncio.run(simulate(script, library=library()))
    report = format_report(result, header=False)
    golden = scenario.with_suffix(".out")
    if os.environ.get("UPDATE_GOLDEN") == "1":
        golden.write_text(report, encoding="utf-8")
    assert golden.exists(), f"no golden report {golden}; run with UPDATE_GOLDEN=1"
    assert report == golden.read_text(encoding="utf-8"), (
        f"{scenario.relative_to(GOLDEN)} no longer produces {golden.name}; if the change "
        "is intended: UPDATE_GOLDEN=1 .venv/bin/python -m pytest "
        "tests/unit/machines/test_golden.py")
    assert result["expectations"]["met"], result["expectations"]["failures"]
    assert not result["unused_outcomes"], "the script scripts outcomes nothing asked for"
