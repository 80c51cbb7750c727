"""The typed context every action, guard and delay receives: ``ctx: Ctx[V]``.

The runtime calls each callable with the live ``engine.fsm.runtime.Instance``; ``Ctx`` is the
part of it an action may use, with the two things the interpreter cannot type itself:

* ``ctx.vars`` is ``V``, the instance's variables — the machine's vars dataclass
  (``engine.machine_vars``), or a Protocol naming the few fields a callable shared by
  several machines needs (``HasRequest``…). The loader refuses (E014, ``file:line``) a
  machine that uses a callable whose ``V`` its variables do not satisfy; mypy refuses
  a misspelt variable in the callable's body.
* ``ctx.services`` is ``engine.components.Services``: the ports by their Protocols.

Not an action namespace (the leading underscore keeps it out of the registry).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine
from typing import TYPE_CHECKING, Any, Protocol, TypeVar

if TYPE_CHECKING:  # components imports the actions when it builds the runtime
    from engine.components import Services
    from engine.fsm.compile import CompiledMachine
    from engine.fsm.runtime import Event, Instance, Runtime
    from engine.log import Logger

V_co = TypeVar("V_co", covariant=True)


class Ctx(Protocol[V_co]):
    """What an action sees of its instance (``engine.fsm.runtime.Instance``)."""

    @property
    def vars(self) -> V_co:
        """The instance's variables."""

    @property
    def services(self) -> Services: ...

    @property
    def event(self) -> Event:
        """The event being processed (``.name``, ``.data``, ``.get(key)``)."""

    @property
    def runtime(self) -> Runtime: ...

    @property
    def parent(self) -> Instance | None:
        """The instance that spawned this one: talk to it with ``post``, never through its
        variables (state it shares is passed in at the spawn, results go back as events)."""

    @property
    def machine(self) -> CompiledMachine: ...

    @property
    def id(self) -> str: ...

    @property
    def state(self) -> str: ...

    @property
    def result(self) -> dict[str, Any]:
        """What the instance reports to its parent when it ends."""

    @property
    def done(self) -> bool: ...

    @property
    def created(self) -> float: ...

    @property
    def call_id(self) -> str | None: ...

    @property
    def log(self) -> Logger: ...

    def bind_log(self, **fields: Any) -> None: ...

    def post(self, event: str, data: dict[str, Any] | None = None) -> None: ...

    def emit(self, event: str, **data: Any) -> None: ...

    def start(self, work: Coroutine[Any, Any, Any], *, done: str, error: str,
              scope: str = "state") -> asyncio.Task[Any]: ...

    def spawn_child(self, machine: str, *, vars: dict[str, Any], done: str) -> Instance: ...

    def on_finish(self, callback: Callable[[Instance], None]) -> None: ...


if TYPE_CHECKING:
    def _an_instance_is_a_context(inst: Instance) -> Ctx[Any]:
        """mypy checks here that the runtime's Instance provides what Ctx promises."""
        return inst


__all__ = ["Ctx"]
