"""Loader diagnostics: one invalid fixture per code, each asserting code, line:col and path."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from engine.errors import DefinitionError
from engine.fsm import MachineLibrary, load_file, load_text
from tests.unit.fsm.test_runtime import make_registry

FIXTURES = sorted((Path(__file__).parent / "invalid").glob("*.yaml"))
EXPECT = re.compile(r"^# expect: (?P<code>[EW]\d{3}) (?P<line>\d+):(?P<col>\d+) (?P<path>\S+)$")


def test_every_code_has_a_fixture() -> None:
    codes = {p.name.split("_")[0] for p in FIXTURES}
    assert codes >= {"E001", "E002", "E010", "E011", "E012", "E013", "E014", "E020", "E021", "E022",
                     "E023", "E030", "E031", "E032", "E033", "E040", "E041", "E050", "W042",
                     "W060", "W061"}


@pytest.mark.parametrize("path", FIXTURES, ids=lambda p: p.stem)
def test_fixture_reports_its_code_at_its_line(path: Path) -> None:
    first = path.read_text().splitlines()[0]
    m = EXPECT.match(first)
    assert m, f"{path.name}: first line must be '# expect: CODE line:col path'"
    result = load_file(path, make_registry())
    found = [(d.code, d.line, d.col, d.path) for d in result.diagnostics]
    expected = (m["code"], int(m["line"]), int(m["col"]), m["path"])
    assert expected in found, "\n".join(map(str, result.diagnostics))
    prefix = f"{path}:{m['line']}:{m['col']} {m['code']} {m['path']}: "
    assert any(str(d).startswith(prefix) for d in result.diagnostics)
    if m["code"].startswith("E"):
        assert not result.ok
    else:
        assert result.ok, "a warning must not stop the machine from loading"


def test_all_findings_are_reported_together() -> None:
    text = """
machine: many
inputs: [start]
initial: idle
states:
  idle:
    on: {start: nowhere}
    entry: [t.nope]
  done: {final: true}
"""
    result = load_text(text, "many.yaml", make_registry())
    codes = sorted(d.code for d in result.diagnostics)
    assert {"E010", "E020", "E030"} <= set(codes)


def test_did_you_mean() -> None:
    result = load_file(Path(__file__).parent / "invalid" / "E010_unknown_action.yaml",
                       make_registry())
    assert "did you mean 't.note'" in result.diagnostics[0].message


def test_library_refuses_duplicate_machine_names(tmp_path: Path) -> None:
    body = "machine: same\ninputs: [start]\ninitial: idle\nstates:\n" \
           "  idle: {on: {start: done}}\n  done: {final: true}\n"
    (tmp_path / "a.yaml").write_text(body)
    (tmp_path / "b.yaml").write_text(body)
    lib = MachineLibrary(tmp_path, make_registry())
    with pytest.raises(DefinitionError) as exc:
        lib.load()
    assert exc.value.diagnostics[0].code == "E051"


def test_library_keeps_old_versions_when_a_reload_fails(tmp_path: Path) -> None:
    good = "machine: m\ninputs: [start]\ninitial: idle\nstates:\n" \
           "  idle: {on: {start: done}}\n  done: {final: true}\n"
    f = tmp_path / "m.yaml"
    f.write_text(good)
    lib = MachineLibrary(tmp_path, make_registry())
    lib.load()
    v1 = lib.get("m").version
    f.write_text(good.replace("done}", "nowhere}"))
    with pytest.raises(DefinitionError):
        lib.load()
    assert lib.get("m").version == v1
