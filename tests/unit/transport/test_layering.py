"""The embedded stack's parts talk to the port through ``engine.transport.tu`` only:
no part imports ``engine.transport.port`` (not even for types) and none reaches the
port's core or driver — so imports run one way (port → parts → interface)."""

from __future__ import annotations

import ast
from pathlib import Path

import pytest

TRANSPORT = Path(__file__).resolve().parents[3] / "engine" / "transport"
PARTS = ("client", "dialogs", "legs", "requests", "uac", "unanswered")


def _tree(name: str) -> ast.Module:
    return ast.parse((TRANSPORT / f"{name}.py").read_text(encoding="utf-8"))


@pytest.mark.parametrize("part", PARTS)
def test_part_does_not_import_the_port(part: str) -> None:
    imported = {node.module for node in ast.walk(_tree(part))
                if isinstance(node, ast.ImportFrom) and node.module}
    assert "engine.transport.port" not in imported


@pytest.mark.parametrize("part", PARTS)
def test_part_does_not_reach_the_core_or_driver(part: str) -> None:
    reached = [f"{part}.py:{node.lineno}" for node in ast.walk(_tree(part))
               if isinstance(node, ast.Attribute) and node.attr in ("core", "driver")]
    assert not reached, reached
