"""``timer.*``: named timers that outlive a state (``after:`` timers die with theirs).

``timer.start {name: no_answer, seconds: 30}`` posts ``timer.no_answer`` after
30 s unless ``timer.cancel {name: no_answer}`` ran first. Use them for limits
that span several states, such as a ring timeout across ringing/early media.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from engine.fsm import action


@dataclass(frozen=True)
class StartParams:
    name: str
    seconds: float


@dataclass(frozen=True)
class CancelParams:
    name: str


def _timers(ctx: Any) -> dict[str, Any]:
    timers = getattr(ctx.vars, "_named_timers", None)
    if timers is None:
        timers = ctx.vars._named_timers = {}
        ctx.on_finish(lambda inst: [h.cancel() for h in timers.values()])
    return timers


@action(params=StartParams, emits=lambda p: [f"timer.{p.name}"] if p else [])
async def start(ctx: Any, p: StartParams) -> None:
    """(Re)start the named timer; it posts ``timer.<name>`` when it expires."""
    timers = _timers(ctx)
    old = timers.pop(p.name, None)
    if old is not None:
        old.cancel()
    event = f"timer.{p.name}"

    def fire() -> None:
        timers.pop(p.name, None)
        ctx.post(event)

    timers[p.name] = ctx.runtime.clock.call_later(p.seconds, fire)


@action(params=CancelParams)
async def cancel(ctx: Any, p: CancelParams) -> None:
    """Cancel the named timer if it is running."""
    handle = _timers(ctx).pop(p.name, None)
    if handle is not None:
        handle.cancel()
