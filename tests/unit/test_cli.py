"""CLI: validate and render on machine files."""

from __future__ import annotations

from pathlib import Path

import pytest

from engine.cli import main

INVALID = Path(__file__).parent / "fsm" / "invalid"

GOOD = """
machine: example
version: 1
inputs: []
initial: idle
states:
  idle:
    after: [{delay: 1, target: done, actions: [{action: log.info, params: {message: hi}}]}]
  done: {final: true}
"""


def test_validate_reports_findings_and_exits_1(capsys: pytest.CaptureFixture[str]) -> None:
    rc = main(["validate", str(INVALID / "E020_unknown_target.yaml")])
    out = capsys.readouterr().out
    assert rc == 1
    assert "E020 $.states.idle.on.start: target state 'donee' is not defined" in out


def test_validate_good_file_exits_0(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    f = tmp_path / "example.yaml"
    f.write_text(GOOD)
    assert main(["validate", "-v", str(f)]) == 0
    assert "ok " in capsys.readouterr().out


@pytest.mark.parametrize("fmt", ["dot", "svg", "png"])
def test_render_formats(tmp_path: Path, fmt: str) -> None:
    f = tmp_path / "example.yaml"
    f.write_text(GOOD)
    out = tmp_path / f"x.{fmt}"
    assert main(["render", str(f), "-o", str(out)]) == 0
    data = out.read_bytes()
    if fmt == "dot":
        assert b"digraph example" in data and b"after 1s / log.info" in data
    elif fmt == "svg":
        assert b"<svg" in data
    else:
        assert data.startswith(b"\x89PNG")


def test_render_highlights_a_trace(tmp_path: Path) -> None:
    f = tmp_path / "example.yaml"
    f.write_text(GOOD)
    trace = tmp_path / "trace.json"
    trace.write_text('[{"from": "idle", "to": "done", "event": "after.idle.0"}]')
    out = tmp_path / "x.dot"
    assert main(["render", str(f), "-o", str(out), "--trace", str(trace)]) == 0
    assert "palegreen" in out.read_text()


def test_settings_markdown(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["settings", "--markdown"]) == 0
    assert "`SIP_BACKEND`" in capsys.readouterr().out


def test_actions_lists_registry(capsys: pytest.CaptureFixture[str]) -> None:
    assert main(["actions"]) == 0
    assert "timer.start" in capsys.readouterr().out
