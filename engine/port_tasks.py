"""How both SIP backends run application code: request handlers and dialog listeners as
tasks the port owns (cancelled on close, failures logged, never lost), callbacks that may
return a coroutine, and a 500 for a request whose handler failed before answering."""

from __future__ import annotations

import asyncio
import inspect
from collections.abc import Awaitable, Callable, Coroutine
from typing import Any

from engine.log import get_logger
from engine.received import ReceivedRequest

log = get_logger("engine.sip")


class TaskOwner:
    """Mixin of ``EmbeddedSipPort`` and ``DrachtioSipPort``. The port provides ``loop``,
    an empty ``_tasks`` set and ``_answer_500(req)`` (how it sends a 500 on ``req``)."""

    _tasks: set[asyncio.Task[Any]]

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        raise NotImplementedError

    def _answer_500(self, req: Any) -> None:
        raise NotImplementedError

    def spawn(self, coro: Coroutine[Any, Any, Any], what: str) -> asyncio.Task[Any]:
        """Run ``coro`` as a task owned by the port (cancelled on close; an exception
        is logged, never lost)."""
        task = self.loop.create_task(coro)
        self._tasks.add(task)
        task.add_done_callback(self._task_done)
        task.what = what  # type: ignore[attr-defined]  # read back in _task_done
        return task

    def _task_done(self, task: asyncio.Task[Any]) -> None:
        self._tasks.discard(task)
        if not task.cancelled():
            exc = task.exception()
            if exc is not None:
                log.error("SIP task failed", what=getattr(task, "what", "?"),
                          error=f"{type(exc).__name__}: {exc}")

    def safe_call(self, callback: Callable[..., Any], what: str, *args: Any) -> None:
        """Call an application callback; a returned coroutine becomes a task, an
        exception is logged (never propagated into the stack)."""
        try:
            result = callback(*args)
        except Exception:
            log.exception("SIP callback failed", what=what)
            return
        if inspect.isawaitable(result):
            self.spawn(_await(result), what)

    def fire(self, callback: Callable[[Any], Any], req: ReceivedRequest, what: str) -> None:
        """Call a listener with a request it must answer; if it raises before a final
        response went out, answer 500."""
        try:
            result = callback(req)
        except Exception:
            log.exception("SIP listener failed", what=what, call_id=req.call_id)
            if not req.final_sent:
                self._answer_500(req)
            return
        if inspect.isawaitable(result):
            self.spawn(self._guard(result, req, what), what)

    def run_handler(self, handler: Callable[[Any], Any], req: ReceivedRequest) -> None:
        """Run the application's handler of a new request as a task."""
        self.spawn(self._guard(_call(handler, req), req, req.method), req.method)

    async def _guard(self, awaitable: Awaitable[Any], req: ReceivedRequest,
                     what: str) -> None:
        try:
            await awaitable
        except asyncio.CancelledError:
            raise
        except Exception:
            log.exception("SIP request handler failed", what=what, method=req.method,
                          call_id=req.call_id)
            if not req.final_sent:
                self._answer_500(req)


async def _await(awaitable: Awaitable[Any]) -> Any:
    return await awaitable


async def _call(handler: Callable[[Any], Any], req: ReceivedRequest) -> None:
    result = handler(req)
    if inspect.isawaitable(result):
        await result
