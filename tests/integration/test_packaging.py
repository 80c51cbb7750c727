"""A non-editable install carries its machines, schemas, media and migrations.

The wheel is built from this checkout and installed into an empty directory; the
installed package then validates and renders the shipped machines from an
unrelated working directory (so nothing can come from the source tree).
"""

from __future__ import annotations

import os
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def installed(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, Path]:
    dist = tmp_path_factory.mktemp("dist")
    subprocess.run([sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(dist),
                    str(ROOT)], check=True, capture_output=True, timeout=300)
    wheel = next(dist.glob("dragonpbx-*.whl"))
    target = tmp_path_factory.mktemp("site")
    subprocess.run([sys.executable, "-m", "pip", "install", "--no-deps", "-q", "--target",
                    str(target), str(wheel)], check=True, capture_output=True, timeout=300)
    return wheel, target


def test_wheel_ships_data(installed: tuple[Path, Path]) -> None:
    wheel, _ = installed
    names = set(zipfile.ZipFile(wheel).namelist())
    for needed in ("engine/_shipped/machines/registration.yaml",
                   "engine/_shipped/machines/verbs/connect.yaml",
                   "engine/_shipped/schemas/machine.schema.json",
                   "engine/_shipped/schemas/config.schema.json",
                   "engine/_shipped/media/uk.wav", "engine/_shipped/media/us.wav",
                   "engine/_shipped/media/eu.wav",
                   "engine/config/migrations/0001_config_tables.sql",
                   # the live page at / (engine/api/page.py serves these files)
                   "engine/api/static/index.html", "engine/api/static/app.js",
                   "engine/api/static/style.css", "engine/api/static/favicon.svg"):
        assert needed in names, needed


def run_installed(target: Path, tmp_path: Path, *args: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(target)}
    code = ("import sys, engine; assert engine.__file__.startswith(sys.argv[1]), engine.__file__;"
            "from engine.cli import main; sys.exit(main(sys.argv[2:]))")
    return subprocess.run([sys.executable, "-c", code, str(target), *args], cwd=tmp_path,
                          env=env, capture_output=True, text=True, timeout=120, check=False)


def test_installed_package_validates_and_renders(installed: tuple[Path, Path],
                                                 tmp_path: Path) -> None:
    _, target = installed
    result = run_installed(target, tmp_path, "validate")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "0 error(s)" in result.stderr
    result = run_installed(target, tmp_path, "render", "registration", "-o", "x.svg")
    assert result.returncode == 0, result.stdout + result.stderr
    assert (tmp_path / "x.svg").read_bytes().startswith(b"<?xml")
