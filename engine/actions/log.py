"""``log.*``: write a structured log line from a machine (with its state and event)."""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any

from engine.fsm import action


@dataclass(frozen=True)
class LogParams:
    message: str
    fields: dict[str, Any] = field(default_factory=dict)


def _fields(ctx: Any, p: LogParams) -> dict[str, Any]:
    return {"machine": ctx.machine.label, "state": ctx.state, "event": ctx.event.name,
            **dict(p.fields)}


@action(params=LogParams)
async def info(ctx: Any, p: LogParams) -> None:
    """Log ``message`` at info level."""
    ctx.log.info(p.message, **_fields(ctx, p))


@action(params=LogParams)
async def warn(ctx: Any, p: LogParams) -> None:
    """Log ``message`` at warning level."""
    ctx.log.warning(p.message, **_fields(ctx, p))


@action(params=LogParams)
async def error(ctx: Any, p: LogParams) -> None:
    """Log ``message`` at error level, with the error of the current event if any."""
    err = ctx.event.get("error")
    extra = {"error": repr(err)} if err is not None else {}
    ctx.log.error(p.message, **_fields(ctx, p), **extra)
