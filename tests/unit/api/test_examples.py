"""The service packaging examples stay usable: the environment file parses with the
daemon's own settings loader, and the unit is a notify service that reloads with HUP."""

from __future__ import annotations

from pathlib import Path

from engine.settings import VARIABLES, load_settings

EXAMPLES = Path(__file__).resolve().parents[3] / "examples"


def _env_file() -> dict[str, str]:
    out = {}
    for raw in (EXAMPLES / "dragonpbx.env").read_text().splitlines():
        line = raw.strip()
        if line and not line.startswith("#"):
            key, _, value = line.partition("=")
            out[key] = value
    return out


def test_environment_file_names_real_settings_that_parse() -> None:
    env = _env_file()
    known = {v.env for v in VARIABLES}
    assert set(env) <= known, set(env) - known
    settings = load_settings(env)
    assert settings.webhost == "127.0.0.1" and settings.loglevel == "info"


def test_unit_is_type_notify_with_reload_and_many_files() -> None:
    unit = (EXAMPLES / "dragonpbx.service").read_text().splitlines()
    assert "Type=notify" in unit
    assert "ExecReload=/bin/kill -HUP $MAINPID" in unit
    assert "EnvironmentFile=/etc/dragonpbx/dragonpbx.env" in unit
    nofile = next(line for line in unit if line.startswith("LimitNOFILE="))
    assert int(nofile.split("=")[1]) >= 65536
