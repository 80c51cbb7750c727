"""``timer.*``: named timers that outlive a state (``after:`` timers die with theirs).

``timer.start {name: no_answer, seconds: 30}`` posts ``timer.no_answer`` after
30 s unless ``timer.cancel {name: no_answer}`` ran first. Use them for limits
that span several states, such as a ring timeout across ringing/early media.
"""

from __future__ import annotations

import weakref
from dataclasses import dataclass

from engine.actions._context import Ctx
from engine.fsm import action
from engine.ports import TimerHandle


@dataclass(frozen=True)
class StartParams:
    name: str
    seconds: float


@dataclass(frozen=True)
class CancelParams:
    name: str


# An instance's running named timers. Kept here, not in its variables: any machine may
# use timer.*, whatever its vars dataclass; an ended instance's entry goes with it.
_TIMERS: weakref.WeakKeyDictionary[object, dict[str, TimerHandle]] = \
    weakref.WeakKeyDictionary()


def _timers(ctx: Ctx[object]) -> dict[str, TimerHandle]:
    timers = _TIMERS.get(ctx)
    if timers is None:
        timers = _TIMERS[ctx] = {}

        def cancel_all(_inst: object) -> None:
            for handle in timers.values():
                handle.cancel()

        ctx.on_finish(cancel_all)
    return timers


@action(params=StartParams, emits=lambda p: [f"timer.{p.name}"] if p else [])
async def start(ctx: Ctx[object], p: StartParams) -> None:
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
async def cancel(ctx: Ctx[object], p: CancelParams) -> None:
    """Cancel the named timer if it is running."""
    handle = _timers(ctx).pop(p.name, None)
    if handle is not None:
        handle.cancel()
