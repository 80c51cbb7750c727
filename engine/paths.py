"""Where the shipped data folders (machines, schemas, media) live.

In a wheel they are copied into ``engine/_shipped/`` (see pyproject.toml); in a
source checkout or an editable install they sit next to the ``engine`` package.
"""

from __future__ import annotations

from functools import cache
from pathlib import Path

_PACKAGE_DIR = Path(__file__).resolve().parent


@cache
def shipped(name: str) -> Path:
    """Absolute path of the shipped folder ``name`` (``machines``, ``schemas``, ``media``)."""
    installed = _PACKAGE_DIR / "_shipped" / name
    if installed.is_dir():
        return installed
    return _PACKAGE_DIR.parent / name


def machines_dir() -> Path:
    return shipped("machines")


def schemas_dir() -> Path:
    return shipped("schemas")


def media_dir() -> Path:
    return shipped("media")


def schema_path(name: str) -> Path:
    """Path of ``schemas/<name>`` (``name`` may omit the ``.schema.json`` suffix)."""
    if not name.endswith(".json"):
        name = f"{name}.schema.json"
    return schemas_dir() / name
