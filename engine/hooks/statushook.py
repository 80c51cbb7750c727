"""StatusHook sender: fire-and-forget call events (spec §8), never in the caller's way.

``send()`` is synchronous and O(1): it builds the body (a snapshot of the event
as it happened), puts it on a bounded queue and returns. Background workers
POST the events, each bounded by ``STATUSHOOK_TIMEOUT``, signed like every
hook; failures and non-2xx replies are only logged (the original did not retry
either). When the queue is full the event is dropped and counted, and a log
line says so (at most one per second) — a slow or dead receiver must never
delay SIP handling or grow memory without bound.

Events are sharded over the workers by Call-ID, so the events of one call are
delivered in the order they happened while a slow hook of one call does not
hold up the events of others (unless every worker is stuck on it).
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

from engine.errors import HookError
from engine.hooks.client import safe_url
from engine.hooks.payloads import UNSET, statushook_body
from engine.log import get_logger
from engine.ports import HookCaller

if TYPE_CHECKING:
    from engine.settings import Settings

log = get_logger(__name__)

_Item = tuple[str, str, Mapping[str, Any]]  # url, call-id, body


class StatusHook:
    """Queue-backed StatusHook sender. Construct once; ``close()`` on shutdown."""

    def __init__(self, caller: HookCaller, *, timeout: float, legacy_names: bool = False,
                 queue_size: int = 4096, workers: int = 4) -> None:
        if workers < 1 or queue_size < workers:
            raise ValueError("need workers ≥ 1 and queue_size ≥ workers")
        self._caller = caller
        self._timeout = timeout
        self._legacy = legacy_names
        self._workers = workers
        self._per_queue = queue_size // workers
        self._queues: list[asyncio.Queue[_Item]] = []
        self._tasks: list[asyncio.Task[None]] = []
        self._closing = False
        self.sent = 0
        self.failed = 0
        self.dropped = 0
        self._drops_unlogged = 0
        self._last_drop_log = -1e9

    @classmethod
    def from_settings(cls, caller: HookCaller, settings: Settings) -> StatusHook:
        return cls(caller, timeout=settings.statushook_timeout,
                   legacy_names=settings.statushook_legacy_names)

    @property
    def pending(self) -> int:
        """Events queued and not yet delivered (or being delivered)."""
        return sum(q.qsize() for q in self._queues)

    def _start(self) -> None:
        loop = asyncio.get_running_loop()  # send() must be called on the engine's loop
        self._queues = [asyncio.Queue(self._per_queue) for _ in range(self._workers)]
        self._tasks = [loop.create_task(self._run(q), name=f"statushook-{i}")
                       for i, q in enumerate(self._queues)]

    def send(self, url: str | None, call_id: str, event: str, *, label: Any = UNSET,
             **extra: Any) -> bool:
        """Queue one event; True if queued. Never blocks, never raises for delivery problems.

        ``label`` is the verb's ``statusLabel`` (``False`` suppresses the event);
        ``extra`` are the builder's fields (``dest``, ``index``, ``error``,
        ``duration``, ``endedby``, ``req``). No URL (no statusHook in the
        dialplan) means nothing to send.
        """
        if not url:
            return False
        body = statushook_body(call_id, event, label=label, legacy_names=self._legacy, **extra)
        if body is None:
            return False
        return self.send_body(url, call_id, body)

    def send_body(self, url: str, call_id: str, body: Mapping[str, Any]) -> bool:
        """Queue an already built body (see ``payloads.statushook_body``)."""
        if self._closing:
            self._drop(url, body, "closing")
            return False
        if not self._tasks:
            self._start()
        queue = self._queues[hash(call_id) % self._workers]
        try:
            queue.put_nowait((url, call_id, body))
        except asyncio.QueueFull:
            self._drop(url, body, "queue full")
            return False
        return True

    def _drop(self, url: str, body: Mapping[str, Any], why: str) -> None:
        self.dropped += 1
        self._drops_unlogged += 1
        now = time.monotonic()
        if now - self._last_drop_log >= 1.0:
            log.warning("statushook event dropped", why=why, url=safe_url(url),
                        event=body.get("event"), call_id=body.get("callId"),
                        dropped=self._drops_unlogged, dropped_total=self.dropped)
            self._last_drop_log = now
            self._drops_unlogged = 0

    async def _run(self, queue: asyncio.Queue[_Item]) -> None:
        while True:
            url, call_id, body = await queue.get()
            try:
                await self._deliver(url, call_id, body)
            finally:
                queue.task_done()

    async def _deliver(self, url: str, call_id: str, body: Mapping[str, Any]) -> None:
        try:
            reply = await self._caller.post(url, body, timeout=self._timeout)
        except HookError as exc:
            self.failed += 1
            log.warning("statushook failed", url=safe_url(url), call_id=call_id,
                        event=body.get("event"), kind=exc.kind, error=str(exc))
            return
        except Exception:  # a bug must not kill the worker; CancelledError passes through
            self.failed += 1
            log.exception("statushook sender error", url=safe_url(url), call_id=call_id)
            return
        if 200 <= reply.status < 300:
            self.sent += 1
        else:
            self.failed += 1
            log.warning("statushook rejected", url=safe_url(url), call_id=call_id,
                        event=body.get("event"), status=reply.status)

    async def close(self, *, grace: float = 2.0) -> None:
        """Stop accepting events, deliver what is queued for up to ``grace`` seconds,
        then cancel the workers (abandoned events are logged as a count).

        If ``close`` itself is cancelled the workers are still stopped, then the
        cancellation propagates.
        """
        self._closing = True
        if not self._tasks:
            return
        try:
            async with asyncio.timeout(grace):
                await asyncio.gather(*(q.join() for q in self._queues))
        except TimeoutError:
            log.warning("statushook events abandoned at shutdown", count=self.pending)
        finally:
            tasks, self._tasks = self._tasks, []
            for task in tasks:
                task.cancel()
            # Workers end with CancelledError, expected here; gather(return_exceptions)
            # collects it without hiding a cancellation of close() itself.
            await asyncio.gather(*tasks, return_exceptions=True)


__all__ = ["StatusHook"]
