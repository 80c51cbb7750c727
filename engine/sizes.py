"""Sizes of the tables that grow with every call or transaction, for leak checks.

``SIGUSR1`` makes the daemon log one ``sizes`` line (see ``App.log_sizes``) with these
counts, the process RSS and the garbage collector's counters. With no traffic every
per-call table must come back to its idle size; a count that only ever grows is a leak
(tests/e2e/test_memory.py reads the line). The tables belong to modules that do not
know about each other, so their sizes are read here, in one place, rather than adding
a method to each; a missing attribute reads as -1 (renamed: update this file).
"""

from __future__ import annotations

import asyncio
import gc
import sys
from pathlib import Path
from typing import Any


def _len(obj: Any, *path: str) -> int:
    for name in path:
        obj = getattr(obj, name, None)
        if obj is None:
            return -1
    try:
        return len(obj)
    except TypeError:
        return -1


def sip_sizes(port: Any) -> dict[str, int]:
    """The embedded SIP port: dialogs, requests awaiting answers, transactions, timers."""
    core = getattr(port, "core", None)
    return {
        "sip_dialogs": _len(port, "_dialogs"),
        "sip_unanswered": _len(port, "_unanswered"),
        "sip_invites": _len(port, "_invites"),
        "sip_merge": _len(port, "_merge"),
        "sip_client_users": _len(port, "_clients"),
        "sip_tasks": _len(port, "_tasks"),
        "sip_server_tx": _len(core, "_server"),
        "sip_client_tx": _len(core, "_client"),
        "sip_tx_by_id": _len(core, "_by_id"),
        "sip_tx_timers": _len(core, "_timers"),
        "sip_timer_queue": _len(port, "driver", "_timers"),
        "sip_timer_heap": _len(port, "driver", "_timers", "_heap"),
    }


def runtime_sizes(runtime: Any) -> dict[str, int]:
    return {"instances_live": _len(runtime, "live"),
            "instances_background": _len(runtime, "_background")}


def media_sizes(media: Any) -> dict[str, int]:
    """RTPEngine client: placed calls, commands awaiting a reply, helper tasks."""
    client = getattr(media, "client", None)
    pending = sum(_len(inst, "correlator", "_pending")
                  for inst in getattr(client, "_instances", ()))
    return {"rtpengine_calls": _len(client, "_calls"), "rtpengine_pending": pending,
            "rtpengine_tasks": _len(client, "_tasks")}


def hooks_sizes(client: Any) -> dict[str, int]:
    """Webhook client: keep-alive connections (open, idle) and waiters for one, over its
    per-URL pools and the shared one."""
    pools = list(getattr(client, "_pools", {}).values())
    if getattr(client, "_shared", None) is not None:
        pools.append(client._shared)
    return {"hook_conns_open": sum(sum(getattr(p, "_open", {}).values()) for p in pools),
            "hook_conns_idle": sum(len(q) for p in pools
                                   for q in getattr(p, "_idle", {}).values()),
            "hook_waiters": sum(len(q) for p in pools
                                for q in getattr(p, "_waiters", {}).values())}


def store_sizes(store: Any) -> dict[str, int]:
    return {"redis_pending": _len(store, "_client", "_pending")}


_STATUS = Path("/proc/self/status")


def _rss_kib() -> int:
    try:
        for line in _STATUS.read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1])
    except OSError:
        pass
    return -1


def process_sizes() -> dict[str, Any]:
    """RSS, Python's allocated blocks, asyncio tasks and the collector's counters."""
    try:
        tasks = len(asyncio.all_tasks())
    except RuntimeError:
        tasks = -1
    return {"rss_kib": _rss_kib(), "py_blocks": sys.getallocatedblocks(),
            "asyncio_tasks": tasks, "gc_count": list(gc.get_count()),
            "gc_collections": [s["collections"] for s in gc.get_stats()],
            "gc_uncollectable": len(gc.garbage)}
