"""``dragonpbx simulate`` end to end: the installed command in a subprocess."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import sys
from pathlib import Path

from tests.fixtures.procs import require_binary

ROOT = Path(__file__).resolve().parents[3]
EXAMPLE = ROOT / "examples" / "simulate" / "registration.yaml"
DRAGONPBX = Path(sys.executable).with_name("dragonpbx")


def simulate(*args: str | Path, env: dict[str, str] | None = None,
             ) -> subprocess.CompletedProcess[str]:
    return subprocess.run([str(DRAGONPBX), "simulate", *map(str, args)], check=False,
                          capture_output=True, text=True, timeout=120, cwd=ROOT,
                          env={**os.environ, **(env or {})})


def test_json_output_has_the_path_the_actions_with_parameters_and_the_replies() -> None:
    proc = simulate("registration", "--script", EXAMPLE, "--json")
    assert proc.returncode == 0, proc.stderr
    result = json.loads(proc.stdout)
    assert result["machine"] == "registration" and result["final_state"] == "done"
    assert result["replies"] == [401, 200]
    assert result["path"] == ["check_domain", "authenticating", "check_request", "saving",
                              "done"]
    # the credentials were checked by the digest_auth child the registration spawned
    auth = [i for i in result["instances"] if i["machine"] == "digest_auth"]
    assert auth[-1]["path"] == ["check_credentials", "checking_abuse", "find_client",
                                "verifying_password", "granted"]
    steps = [i for i in result["journal"] if i["kind"] == "step"]
    first = next(s for s in steps if s["to"] == "authenticating")
    assert first["guards"] == [{"guard": "config.domain_known", "result": True}]
    saved = next(s for s in steps if s["to"] == "saving")
    assert {"action": "store.save_binding", "params": {}} in saved["actions"]
    reply = [i for i in result["journal"] if i["kind"] == "reply"][-1]
    assert reply["status"] == 200 and ["Expires", "300"] in reply["headers"]
    assert result["expectations"] == {"met": True, "checked": ["final_state", "replies"],
                                      "failures": []}


def test_the_table_shows_transitions_guards_and_actions_with_parameters(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("steps:\n  - request: {method: REGISTER, uri: 'sip:nowhere.test'}\n")
    proc = simulate("registration", "--script", script)
    assert proc.returncode == 0, proc.stderr
    out = proc.stdout
    assert "registration#1  check_domain → rejected   on start" in out
    assert "guards: config.domain_known=false" in out
    assert ('action sip.reply {"status": 404, "reason": "Not Found", "why": "unknown domain"}'
            in out)
    assert "← 404 Not Found   X-Reason: unknown domain" in out
    assert "final state: rejected (done)" in out


def test_svg_highlights_the_path_taken(tmp_path: Path) -> None:
    require_binary("dot")
    svg = tmp_path / "path.svg"
    proc = simulate("registration", "--script", EXAMPLE, "--svg", svg)
    assert proc.returncode == 0, proc.stderr
    text = svg.read_text()
    assert text.startswith("<?xml") and "<svg" in text
    # visited states are filled, the edges taken drawn dark green (render --trace's style)
    filled = set(re.findall(r'<title>(\w+)</title>\s*<path fill="palegreen"', text))
    assert {"check_domain", "authenticating", "saving", "done"} <= filled
    assert "querying" not in filled and "removing" not in filled
    assert text.count('stroke="darkgreen"') >= 4


def test_unmet_expectations_exit_1_and_say_what_differs(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text(EXAMPLE.read_text().replace("replies: [401, 200]", "replies: [401, 403]"))
    proc = simulate("registration", "--script", script)
    assert proc.returncode == 1
    assert "EXPECTATIONS NOT MET:" in proc.stdout
    assert "replies: wanted [401, 403], got [401, 200]" in proc.stdout
    proc = simulate("registration", "--script", script, "--json")
    assert proc.returncode == 1
    failures = json.loads(proc.stdout)["expectations"]["failures"]
    assert failures == [{"expect": "replies", "wanted": [401, 403], "got": [401, 200]}]


def test_script_errors_exit_2_with_file_line_and_json_path(tmp_path: Path) -> None:
    script = tmp_path / "bad.yaml"
    script.write_text(
        "machine: registration\n"
        "outcomes:\n"
        "  hooks.reghook: [{status: 200, jsn: {}}]\n"
        "steps:\n"
        "  - {advance: 5, event: start}\n"
        "  - request: {method: REGISTER}\n")
    proc = simulate("registration", "--script", script)
    assert proc.returncode == 2 and proc.stdout == ""
    lines = proc.stderr.strip().splitlines()
    assert f"{script}:3:33 E002 $.outcomes[\"hooks.reghook\"][0].jsn: unknown key 'jsn'" \
        in lines[0]
    assert f"{script}:6:5 E002 $.steps[1].request: 'uri' is a required property" in lines[1]
    assert len(lines) == 2  # meaning checks wait until the schema is satisfied
    script.write_text("steps:\n  - {advance: 5, event: start}\n")
    proc = simulate("registration", "--script", script)
    assert proc.returncode == 2
    assert f"{script}:2:5 S003 $.steps[0]: one input per step, not event and advance" \
        in proc.stderr


def test_a_script_for_another_machine_or_an_unknown_machine_is_refused(tmp_path: Path) -> None:
    proc = simulate("inbound_call", "--script", EXAMPLE)
    assert proc.returncode == 2
    assert "S001 $.machine: the script is for 'registration', not 'inbound_call'" in proc.stderr
    script = tmp_path / "s.json"
    script.write_text(json.dumps({"steps": [{"event": "start"}]}))
    proc = simulate("no_such_machine", "--script", script)
    assert proc.returncode == 2 and "no machine named 'no_such_machine'" in proc.stderr


def test_answering_a_challenge_that_was_never_sent_is_a_script_error(tmp_path: Path) -> None:
    script = tmp_path / "s.yaml"
    script.write_text("steps:\n"
                      "  - request:\n"
                      "      method: REGISTER\n"
                      "      uri: sip:pbx.test\n"
                      "      auth: {username: alice, password: secret}\n")
    proc = simulate("registration", "--script", script)
    assert proc.returncode == 2
    assert f"{script}:5:7 S002 $.steps[0].request.auth: no 401/407 challenge" in proc.stderr


def test_machines_path_is_honoured(tmp_path: Path) -> None:
    """An operator edits a copy of the machines; simulate runs the edited one."""
    machines = tmp_path / "machines"
    shutil.copytree(ROOT / "machines", machines)
    reg = machines / "registration.yaml"
    reg.write_text(reg.read_text().replace("why: unknown domain", "why: not served here"))
    script = tmp_path / "s.yaml"
    script.write_text("steps:\n  - request: {method: REGISTER, uri: 'sip:nowhere.test'}\n"
                      "expect: {replies: [404]}\n")
    shipped = simulate("registration", "--script", script)
    edited = simulate("registration", "--script", script, env={"MACHINES_PATH": str(machines)})
    assert shipped.returncode == edited.returncode == 0, edited.stderr
    assert "X-Reason: unknown domain" in shipped.stdout
    assert "X-Reason: not served here" in edited.stdout
    flag = simulate("registration", "--script", script, "--machines", machines)
    assert "X-Reason: not served here" in flag.stdout
