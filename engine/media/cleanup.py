"""Retrying RTPEngine ``delete`` commands that could not reach the daemon (issue 10).

A ``delete`` that times out (a frozen daemon) or finds its instance down must not
leave the session on RTPEngine until the daemon's own ``--timeout``: it is
retried in the background with growing pauses for a bounded time
(``RTPENGINE_DELETE_RETRY_SECS``), and sooner when the instance is seen up
again. ``delete`` is idempotent on RTPEngine (a second delete of a gone call
answers "Call-ID not found" — success for us), so a retry is safe even when the
first attempt did reach the daemon. The call's teardown never waits for this.
When the time is up, one warning tells the operator which call may linger.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Awaitable, Callable

from engine.log import get_logger
from engine.rtpengine.errors import MediaError, NgUnknownCall

log = get_logger("engine.media.cleanup")

#: First pause between attempts, and the longest one (seconds).
FIRST_PAUSE, LONGEST_PAUSE = 1.0, 30.0


def retry_pauses(total: float, first: float = FIRST_PAUSE,
                 longest: float = LONGEST_PAUSE) -> list[float]:
    """Pauses before each retry: doubling from ``first``, capped at ``longest``, adding
    up to ``total`` (the last one shortened to fit). ``total <= 0`` means no retry."""
    pauses: list[float] = []
    spent, pause = 0.0, first
    while spent < total - 1e-9:
        step = min(pause, longest, total - spent)
        pauses.append(step)
        spent += step
        pause *= 2
    return pauses


class DeleteRetrier:
    """Background retries of failed deletes, one task per call, all cancelled on close."""

    def __init__(self, send: Callable[[str], Awaitable[None]], total_secs: float,
                 on_give_up: Callable[[str], None] | None = None):
        self._send = send  # one delete attempt for a call-id; raises MediaError on failure
        self._on_give_up = on_give_up  # e.g. forget the call's placement
        self.pauses = retry_pauses(total_secs)
        self._tasks: dict[str, asyncio.Task[None]] = {}
        self._wake = asyncio.Event()
        self.given_up = 0
        self.recovered = 0

    def __len__(self) -> int:
        return len(self._tasks)

    def pending(self) -> list[str]:
        return list(self._tasks)

    def wake(self) -> None:
        """An instance came back: let every waiting retry try now."""
        self._wake.set()

    def schedule(self, call_id: str, first_error: MediaError) -> None:
        if call_id in self._tasks:
            return
        if not self.pauses:
            self._give_up(call_id, first_error, 1)
            return
        log.info("rtpengine delete failed; retrying in the background", call_id=call_id,
                 error=str(first_error), retry_for=sum(self.pauses))
        task = asyncio.get_running_loop().create_task(self._retry(call_id, first_error),
                                                      name=f"rtpengine delete {call_id}")
        self._tasks[call_id] = task
        task.add_done_callback(lambda _t: self._tasks.pop(call_id, None))

    async def _retry(self, call_id: str, error: MediaError) -> None:
        attempts = 1
        for pause in self.pauses:
            await self._pause(pause)
            attempts += 1
            try:
                await self._send(call_id)
            except NgUnknownCall:
                pass  # already gone on RTPEngine: what we wanted
            except MediaError as exc:
                error = exc
                continue
            except Exception as exc:  # a bug must not end the retries silently (a leak)
                log.exception("rtpengine delete retry failed unexpectedly", call_id=call_id)
                error = MediaError(f"{type(exc).__name__}: {exc}")
                continue
            self.recovered += 1
            log.info("rtpengine session deleted after retrying", call_id=call_id,
                     attempts=attempts)
            return
        self._give_up(call_id, error, attempts)

    async def _pause(self, seconds: float) -> None:
        """Sleep ``seconds``, or less when an instance comes back up meanwhile."""
        self._wake.clear()
        with contextlib.suppress(TimeoutError):
            async with asyncio.timeout(seconds):  # not wait_for: a cancel must not be lost
                await self._wake.wait()

    def _give_up(self, call_id: str, error: MediaError, attempts: int) -> None:
        self.given_up += 1
        if self._on_give_up is not None:
            self._on_give_up(call_id)
        log.warning("rtpengine session could not be deleted; it stays until RTPEngine's "
                    "own timeout", call_id=call_id, attempts=attempts, error=str(error))

    async def close(self) -> None:
        tasks = list(self._tasks.values())
        if tasks:
            log.warning("rtpengine deletes still being retried at shutdown; those sessions "
                        "stay until RTPEngine's own timeout", calls=sorted(self._tasks))
        for task in tasks:
            task.cancel()
        await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["DeleteRetrier", "retry_pauses"]
