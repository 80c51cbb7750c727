"""The code base is ``ruff`` clean (the rules in pyproject.toml's ``[tool.ruff]``).

A test rather than a separate CI step, so the one test command — the README's,
which CI runs — also refuses code that does not lint.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_ruff_reports_nothing() -> None:
    run = subprocess.run([sys.executable, "-m", "ruff", "check", "--no-cache",
                          "engine", "tests", "bench", "tools"],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert run.returncode == 0, run.stdout + run.stderr
