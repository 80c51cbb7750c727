"""engine.simulate as a library: determinism, scripted outcomes, virtual time."""

from __future__ import annotations

import asyncio
import json
import shutil
from pathlib import Path
from typing import Any

import pytest

from engine.errors import DefinitionError
from engine.simulate import load_script, parse_script, simulate
from engine.simulate.outcomes import Outcomes, acting

ROOT = Path(__file__).resolve().parents[3]
TRUNK = """
machine: trunk_registration
config:
  domains:
    pbx.test:
      domain_id: 1
      trunks:
        - {id: 3, authType: registration, regHost: reg.test, regUser: u, regPass: p,
           dialplan: {"*": "http://hooks/x"}}
trunk: {domain: pbx.test, id: 3}
"""


def run(text: str, machine: str | None = None) -> dict[str, Any]:
    return asyncio.run(simulate(parse_script(text, "t.yaml", machine)))


def test_the_same_script_gives_the_same_result_every_time() -> None:
    script = ROOT / "tests/unit/machines/golden/trunk_registration/failure_backoff.yaml"
    first = asyncio.run(simulate(load_script(script)))
    second = asyncio.run(simulate(load_script(script)))
    assert json.dumps(first, default=str) == json.dumps(second, default=str)


def test_outcomes_are_taken_in_order_per_action_and_leftovers_reported() -> None:
    outcomes = Outcomes({"a": [{"n": 1}, {"n": 2}], "b": [{"n": 3}]})
    with acting("a"):
        assert outcomes.take("hook") == {"n": 1}
    assert outcomes.take("hook") is None  # no action running, no other key
    assert outcomes.take("hook", "b") == {"n": 3}
    assert outcomes.unused() == {"a": 1}


def test_timers_fire_in_virtual_time_one_deadline_at_a_time() -> None:
    result = run(TRUNK + """
outcomes:
  trunkreg.send_register:
    - {status: 200, headers: {Expires: "100"}}
    - {status: 200, headers: {Expires: "100"}}
    - {status: 200, headers: {Expires: "100"}}
steps:
  - {event: start}
  - {advance: 120}
""")
    sent = [i["t"] for i in result["journal"] if i["kind"] == "sip_request"]
    assert sent == [0.0, 50.0, 100.0]  # refreshed at half of each grant, within one advance
    assert result["final_state"] == "registered" and result["status"] == "running"


def test_an_unscripted_register_gets_the_default_answer_and_a_store_failure_its_path() -> None:
    result = run(TRUNK + """
outcomes:
  trunkreg.delete_state: [{error: redis gone}]
steps:
  - {event: start}
  - {event: stop}
""")
    # the lease (engine.lease.MemoryLeases in a simulation) is taken first and released last
    assert result["path"] == ["idle", "acquiring_lease", "registering", "registered",
                              "unregistering", "removing", "releasing", "done"]
    removing = [s for s in result["journal"] if s.get("from") == "removing"]
    assert removing[0]["event"] == "store.error"
    assert result["unused_outcomes"] == {}


def test_events_after_the_machine_ended_are_a_script_error() -> None:
    from engine.simulate.requests import ScriptError

    with pytest.raises(ScriptError) as err:
        run(TRUNK + "steps:\n  - {event: stop}\n  - {event: start}\n")
    assert err.value.path == ("steps", 1, "event") and "already ended" in str(err.value)


def test_config_errors_point_into_the_script() -> None:
    with pytest.raises(DefinitionError) as err:
        parse_script("config:\n  domains:\n    a.test:\n      clients: []\n"
                     "steps: [{advance: 1}]\n", "c.yaml")
    (finding,) = err.value.diagnostics
    assert (finding.line, finding.code) == (3, "S004")
    assert "domain_id" in finding.message and finding.path.startswith('$.config.domains["a.test"]')


def test_every_example_script_is_valid_and_meets_its_expectations() -> None:
    examples = sorted((ROOT / "examples" / "simulate").glob("*.yaml"))
    assert examples
    for path in examples:
        result = asyncio.run(simulate(load_script(path)))
        assert result["expectations"]["met"], (path, result["expectations"])


def test_the_unit_harness_loads_machines_from_machines_path(
        tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from tests.unit.machines import harness

    machines = tmp_path / "m"
    shutil.copytree(ROOT / "machines", machines)
    reg = machines / "registration.yaml"
    reg.write_text(reg.read_text().replace("version: 1", "version: 99", 1))
    monkeypatch.setenv("MACHINES_PATH", str(machines))
    assert harness.library().get("registration").version.startswith("99+")
    monkeypatch.delenv("MACHINES_PATH")
    assert harness.library().get("registration").version.startswith("1+")


def test_a_raw_sip_request_is_accepted_with_its_source() -> None:
    result = run("""
steps:
  - source: 192.0.2.77:5080/tcp
    request: |
      REGISTER sip:pbx.test SIP/2.0
      Via: SIP/2.0/TCP 192.0.2.77:5080;branch=z9hG4bK-raw1
      From: <sip:alice@pbx.test>;tag=r1
      To: <sip:alice@pbx.test>
      Call-ID: raw-1@192.0.2.77
      CSeq: 1 REGISTER
      Contact: <sip:alice@192.0.2.77:5080;transport=tcp>
      Max-Forwards: 70
      Content-Length: 0

""", "registration")
    assert result["replies"] == [401]
    assert [i["call_id"] for i in result["journal"] if i["kind"] == "request"] == [
        "raw-1@192.0.2.77"]


def test_the_json_result_carries_the_webhook_payload() -> None:
    script = ROOT / "tests/unit/machines/golden/registration/reghook_grant.yaml"
    result = asyncio.run(simulate(load_script(script)))
    (hook,) = [i for i in result["journal"] if i["kind"] == "hook"]
    assert hook["by"] == "hooks.reghook" and hook["url"] == "http://hooks/reg"
    assert hook["payload"]["username"] == "2001" and hook["payload"]["realm"] == "pbx.test"


def test_time_going_backwards_is_a_script_error() -> None:
    from engine.simulate.requests import ScriptError

    with pytest.raises(ScriptError) as err:
        run(TRUNK + "steps:\n  - {advance: 10}\n  - {at: 5, event: start}\n")
    assert err.value.path == ("steps", 1, "at") and "already 10 s" in str(err.value)
