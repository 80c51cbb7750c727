"""WORKERS and WORKER_INDEX parsing (README "Several engines and workers")."""

from __future__ import annotations

import os

import pytest

from engine.errors import ConfigError
from engine.settings import load_settings


def test_workers_default_auto_and_bounds() -> None:
    assert load_settings({}).workers == 1
    assert load_settings({}).worker_index is None
    assert load_settings({"WORKERS": "auto"}).workers == max(1, os.cpu_count() or 1)
    assert load_settings({"WORKERS": "4", "WORKER_INDEX": "3"}).worker_index == 3
    for bad in ("0", "-1", "two", "257"):
        with pytest.raises(ConfigError, match=r"WORKERS='.*' is invalid: expected an integer"):
            load_settings({"WORKERS": bad})
