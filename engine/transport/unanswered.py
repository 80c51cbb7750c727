"""The watchdog for non-INVITE requests the application never answers.

A non-INVITE server transaction lives until its final response; if a handler forgets
to answer (or hangs), the client gives up after 64*T1 and the transaction would stay
in memory forever. Every ``interval`` seconds the watchdog answers 408 to requests
older than the transaction timeout, oldest first.
"""

from __future__ import annotations

import asyncio
from typing import TYPE_CHECKING

from engine.log import get_logger
from engine.ports import Clock

if TYPE_CHECKING:
    from engine.transport.requests import EmbeddedIncomingRequest

log = get_logger("engine.transport.port")


class UnansweredRequests:
    """Non-INVITE requests awaiting their final response, in arrival order."""

    def __init__(self, clock: Clock, timeout: float, interval: float = 5.0) -> None:
        self._clock = clock
        self._timeout = timeout
        self._interval = interval
        self._waiting: dict[int, tuple[float, EmbeddedIncomingRequest]] = {}
        self._timer: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def add(self, tx: int, req: EmbeddedIncomingRequest) -> None:
        self._waiting[tx] = (self._clock.monotonic(), req)

    def discard(self, tx: int) -> None:
        self._waiting.pop(tx, None)

    def start(self, loop: asyncio.AbstractEventLoop) -> None:
        self._loop = loop
        self._timer = loop.call_later(self._interval, self._sweep)

    def stop(self) -> None:
        self._loop = None
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None

    def _sweep(self) -> None:
        try:
            limit = self._clock.monotonic() - self._timeout
            stale: list[tuple[int, EmbeddedIncomingRequest]] = []
            for tx, (started, req) in self._waiting.items():
                if started > limit:
                    break  # insertion order = arrival order
                stale.append((tx, req))
            for tx, req in stale:
                log.warning("request left unanswered by the application: 408", method=req.method,
                            call_id=req.call_id)
                req.send_response(408)
                self._waiting.pop(tx, None)
        except Exception:
            log.exception("SIP sweep failed")
        finally:
            if self._loop is not None:
                self._timer = self._loop.call_later(self._interval, self._sweep)
