"""After an overload episode the daemon collects the burst's cyclic garbage and returns
free pages once (engine/memory.py), scheduled by the overload monitor."""

from __future__ import annotations

import gc
import logging

import pytest

from engine.memory import reclaim_memory


class _Cycle:
    def __init__(self) -> None:
        self.me = self


def test_reclaim_collects_cycles_and_logs_once(caplog: pytest.LogCaptureFixture) -> None:
    gc.collect()
    for _ in range(100):
        _Cycle()
    with caplog.at_level(logging.INFO, logger="engine.memory"):
        reclaim_memory()
    (record,) = [r for r in caplog.records if r.getMessage() == "memory reclaimed after overload"]
    fields = getattr(record, "fields", {})
    assert fields["collected"] >= 100
    assert fields["trimmed"] in (True, False)
