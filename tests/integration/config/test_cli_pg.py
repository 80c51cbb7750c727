"""``db migrate``, ``db import`` and ``config check`` against a real PostgreSQL."""

from __future__ import annotations

import argparse
import io
import json
from pathlib import Path

import pytest

from engine.config import cli
from engine.settings import load_settings
from tests.fixtures.postgres import PgParams

pytestmark = pytest.mark.integration

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config.json"


def run(argv: list[str], params: PgParams) -> tuple[int, str, str]:
    root = argparse.ArgumentParser(prog="dragonpbx")
    cli.register(root.add_subparsers(dest="command", required=True))
    args = root.parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    settings = load_settings({"DATA_SOURCE": "pg", **params.env(), "DB_PASSWORD": "db-secret"})
    code = args.func(args, settings, out=out, err=err)
    assert "db-secret" not in out.getvalue() + err.getvalue()
    return code, out.getvalue(), err.getvalue()


def test_migrate_import_check(pg_database: PgParams, tmp_path: Path) -> None:
    # before migrating, import and check refuse with a hint
    code, _, err = run(["db", "import", str(EXAMPLE)], pg_database)
    assert code == 1 and "dragonpbx db migrate" in err
    code, _, err = run(["config", "check"], pg_database)
    assert code == 1 and "dragonpbx db migrate" in err

    code, out, _ = run(["db", "migrate"], pg_database)
    assert code == 0 and "applied 0001_config_tables, 0002_change_notify" in out
    code, out, _ = run(["db", "migrate"], pg_database)
    assert code == 0 and "schema is up to date" in out

    code, out, _ = run(["db", "import", str(EXAMPLE), "--dry-run"], pg_database)
    assert code == 0
    code, out, _ = run(["config", "check"], pg_database)
    assert code == 0 and "0 domains" in out  # the dry run wrote nothing

    code, out, _ = run(["db", "import", str(EXAMPLE)], pg_database)
    assert code == 0 and "imported 1 domain, 2 clients, 3 trunks (replace" in out
    code, out, _ = run(["config", "check"], pg_database)
    assert code == 0
    assert out.startswith(f"OK pg:postgres@127.0.0.1:{pg_database.port}/{pg_database.dbname}: "
                          "1 domain, 2 clients, 3 trunks (1 registering)")
    assert "registers as 441234567890@sip.itsp.example" in out

    extra = tmp_path / "extra.json"
    extra.write_text(json.dumps({"domains": {"b.example": {
        "domain_id": 2, "clients": [{"username": "*", "password": "pw"}]}}}))
    code, out, _ = run(["db", "import", str(extra), "--mode", "merge"], pg_database)
    assert code == 0 and "(merge; 0 domains replaced or removed)" in out
    code, out, _ = run(["config", "check"], pg_database)
    assert "2 domains, 3 clients" in out

    bad = tmp_path / "bad.json"
    bad.write_text(json.dumps({"domains": {"c.example": {"domain_id": 3, "clients": [
        {"username": "1000"}]}}}))
    code, out, err = run(["db", "import", str(bad)], pg_database)
    assert (code, out) == (1, "") and "CONFIG_CLIENT_AUTH" in err
    code, out, _ = run(["config", "check"], pg_database)
    assert "2 domains" in out  # nothing was written
