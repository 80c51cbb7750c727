"""Every third-party module the engine imports is a declared runtime dependency.

The packaging test installs with ``--no-deps`` (it checks data files, not
dependencies), and the development venv also holds the test extras, so a
module the daemon imports but ``pyproject.toml`` lists only under ``test``
would pass every other test and fail on a production install.
"""

from __future__ import annotations

import ast
import re
import sys
import tomllib
from importlib.metadata import packages_distributions
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]


def _engine_imports() -> set[str]:
    names: set[str] = set()
    for path in (ROOT / "engine").rglob("*.py"):
        for node in ast.walk(ast.parse(path.read_text(encoding="utf-8"))):
            if isinstance(node, ast.Import):
                names.update(alias.name.split(".")[0] for alias in node.names)
            elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
                names.add(node.module.split(".")[0])
    return names - set(sys.stdlib_module_names) - {"engine", "__future__"}


def _declared() -> set[str]:
    project = tomllib.loads((ROOT / "pyproject.toml").read_text(encoding="utf-8"))["project"]
    return {re.split(r"[\s\[<>=!~;]", req, maxsplit=1)[0].lower().replace("_", "-")
            for req in project["dependencies"]}


def test_engine_imports_only_declared_runtime_dependencies() -> None:
    dists = packages_distributions()
    declared = _declared()
    missing = {}
    for module in sorted(_engine_imports()):
        owners = {d.lower().replace("_", "-") for d in dists.get(module, [module])}
        if not owners & declared:
            missing[module] = sorted(owners)
    assert not missing, f"imported by engine/ but not in [project.dependencies]: {missing}"
