"""``config check`` and the parsers ``register`` adds (called as functions)."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from engine.config import cli
from engine.settings import load_settings

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config.json"


def parser() -> argparse.ArgumentParser:
    root = argparse.ArgumentParser(prog="dragonpbx")
    cli.register(root.add_subparsers(dest="command", required=True))
    return root


def run(argv: list[str], env: dict[str, str]) -> tuple[int, str, str]:
    args = parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    code = args.func(args, load_settings(env), out=out, err=err)
    return code, out.getvalue(), err.getvalue()


def test_parsers_route_to_the_commands() -> None:
    p = parser()
    assert p.parse_args(["config", "check"]).func is cli.cmd_config_check
    assert p.parse_args(["db", "migrate"]).func is cli.cmd_db_migrate
    args = p.parse_args(["db", "import", "cfg.json", "--mode", "merge", "--dry-run"])
    assert (args.func, args.file, args.mode, args.dry_run) == (cli.cmd_db_import,
                                                               Path("cfg.json"), "merge", True)
    with pytest.raises(SystemExit):
        p.parse_args(["db", "import", "cfg.json", "--mode", "upsert"])


@pytest.mark.parametrize(("argv", "fragment"), [
    (["config", "check", "--help"], "file:line:col CODE $.json.path: message"),
    (["db", "import", "--help"], "--mode merge"),
    (["db", "migrate", "--help"], "schema_migrations"),
])
def test_help(argv: list[str], fragment: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as info:
        parser().parse_args(argv)
    assert info.value.code == 0
    assert fragment in capsys.readouterr().out


def test_config_check_summary() -> None:
    code, out, err = run(["config", "check"], {"DATA_SOURCE": "json",
                                               "CONFIG_FILE": str(EXAMPLE)})
    assert (code, err) == (0, "")
    assert out.startswith(f"OK json:{EXAMPLE}: 1 domain, 2 clients, 3 trunks (1 registering)")
    assert "pbx.example (domain_id 1): 2 clients, 3 trunks" in out
    assert "client 2*" in out and "reghook http://127.0.0.1:1880/reghook" in out
    assert "digest auth as branch" in out
    assert "registers as 441234567890@sip.itsp.example" in out
    assert "inbound 203.0.113.0/24, 198.51.100.7/32, 2001:db8:10::/48" in out
    assert "change-me" not in out  # passwords are never printed


def test_config_check_reports_diagnostics(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"domains": {"pbx.example": {
        "domain_id": 1, "clients": [{"username": "1000"}],
        "trunks": [{"id": 1, "inbound": ["300.1.1.1"]}]}}}, indent=2))
    code, out, err = run(["config", "check", "--file", str(bad)], {"DATA_SOURCE": "api"})
    assert (code, out) == (1, "")
    assert f"{bad}:6:9 CONFIG_CLIENT_AUTH $.domains['pbx.example'].clients[0]" in err
    assert f"{bad}:14:13 CONFIG_CIDR $.domains['pbx.example'].trunks[0].inbound[0]" in err


def test_config_check_warnings_and_quiet(tmp_path: Path) -> None:
    cfg = tmp_path / "cfg.json"
    cfg.write_text('{"domains": {"a.example": {"domain_id": 1, "trunkz": []}}}')
    code, out, err = run(["config", "check", "-q"], {"DATA_SOURCE": "json",
                                                     "CONFIG_FILE": str(cfg)})
    assert (code, out) == (0, "")
    assert "warning:" in err and "did you mean 'trunks'" in err


def test_config_check_unreachable_api() -> None:
    code, _, err = run(["config", "check"], {"DATA_SOURCE": "api", "HTTP_TIMEOUT": "1",
                                             "CONFIG_URL": "http://127.0.0.1:9/cfg"})
    assert code == 1 and "request failed" in err
    assert "dev-admin-token-123" not in err


def test_db_import_dry_run_and_invalid_file(tmp_path: Path) -> None:
    code, out, _ = run(["db", "import", str(EXAMPLE), "--dry-run"], {"DATA_SOURCE": "pg"})
    assert code == 0 and out.startswith("dry run, nothing written (replace):")
    bad = tmp_path / "bad.json"
    bad.write_text("{")
    code, out, err = run(["db", "import", str(bad)], {"DATA_SOURCE": "pg"})
    assert (code, out) == (1, "") and "CONFIG_SYNTAX" in err
