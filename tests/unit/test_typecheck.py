"""The engine type-checks with ``mypy`` (the settings in pyproject.toml's ``[tool.mypy]``:
every function in ``engine`` annotated, third-party modules without types named one
by one).

A test rather than a separate CI step, like ``test_lint``: the one test command — the
README's, which CI runs — also refuses code whose types do not agree, so a typo in a
variable of an action's context fails here, not on a live call.
"""

from __future__ import annotations

import importlib.util
import subprocess
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def test_mypy_reports_nothing() -> None:
    assert importlib.util.find_spec("mypy") is not None, (
        "mypy is not installed in this environment: it is in the `test` extra "
        "(pip install -e '.[test]', which scripts/setup.sh runs)")
    run = subprocess.run([sys.executable, "-m", "mypy", "--no-incremental", "engine"],
                         check=False, cwd=ROOT, capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stdout + run.stderr
