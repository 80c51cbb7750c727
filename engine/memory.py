"""Giving memory back after a burst.

A burst leaves two kinds of memory behind once its transactions have expired: garbage
in reference cycles that was promoted to the oldest generation during the burst (the
collector only looks there after many more allocations, so on a quiet node it waits
indefinitely), and freed memory the allocator keeps. ``reclaim_memory`` runs one full
collection and asks glibc to return free pages (``malloc_trim``); it is called once,
after an overload episode's transactions have expired, never per request.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import gc
import time
from functools import cache
from typing import Any

from engine.log import get_logger

log = get_logger(__name__)


@cache
def _libc() -> Any:
    name = ctypes.util.find_library("c")
    if name is None:
        return None
    libc = ctypes.CDLL(name)
    return libc if hasattr(libc, "malloc_trim") else None  # glibc only


def reclaim_memory() -> None:
    started = time.perf_counter()
    collected = gc.collect()
    libc = _libc()
    trimmed = bool(libc.malloc_trim(0)) if libc is not None else False
    log.info("memory reclaimed after overload", collected=collected, trimmed=trimmed,
             ms=round((time.perf_counter() - started) * 1000, 1))
