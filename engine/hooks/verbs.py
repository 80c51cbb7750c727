"""A validated CallScript as typed, immutable values: the verbs and their destinations
(spec §7.1). Built only by ``engine.hooks.callscript.validate_callscript``; the call
machines' actions read them."""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass, field
from typing import Any, ClassVar, Final

from engine.hooks.payloads import UNSET

DEFAULT_TIMEOUT: Final = 30.0  # seconds a connect destination rings (spec §7.1)


class FrozenDict(dict[str, Any]):
    """A read-only, hashable ``dict`` (still serialised by ``json`` as an object)."""

    __slots__ = ()

    def _readonly(self, *args: Any, **kwargs: Any) -> Any:
        raise TypeError("CallScript values are immutable")

    __setitem__ = __delitem__ = _readonly
    clear = pop = popitem = setdefault = update = _readonly
    __ior__ = _readonly

    def __hash__(self) -> int:  # type: ignore[override]
        return hash(frozenset(self.items()))

    def __reduce__(self) -> tuple[Any, ...]:
        # copy/pickle would otherwise refill the new object through __setitem__
        return (FrozenDict, (dict(self),))


Headers = tuple[tuple[str, str], ...]


@dataclass(frozen=True, slots=True)
class Destination:
    """One leg of a ``connect`` (spec §7.1); fields not used by ``type`` are None.

    ``password`` is left out of ``repr`` so a logged destination never shows it.
    """

    type: str  # "client" | "sip" | "trunk"
    address: str
    timeout: float = DEFAULT_TIMEOUT
    headers: Headers = ()
    trunk_id: int | str | None = None
    trunk_name: str | None = None
    proxy: str | None = None
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    codecs: tuple[str, ...] | None = None

    @property
    def auth(self) -> tuple[str, str] | None:
        """Digest credentials of a ``sip`` destination: present when ``username`` is."""
        if self.username is None:
            return None
        return self.username, self.password or ""


@dataclass(frozen=True, slots=True)
class AnnounceVerb:
    name: ClassVar[str] = "announce"
    url: str
    status_label: Any = UNSET


@dataclass(frozen=True, slots=True)
class ConnectVerb:
    """``dests`` is always a tuple (a single ``dest`` object becomes a 1-tuple).
    ``caller_id``/``caller_name``/``ringtone`` None = the defaults of spec §7.1."""

    name: ClassVar[str] = "connect"
    dests: tuple[Destination, ...]
    reconnect: bool = False
    caller_id: str | None = None
    caller_name: str | None = None
    ringtone: str | None = None
    status_label: Any = UNSET


@dataclass(frozen=True, slots=True)
class ResponseVerb:
    name: ClassVar[str] = "response"
    code: int
    reason: str | None = None
    headers: Headers = ()
    status_label: Any = UNSET


@dataclass(frozen=True, slots=True)
class PauseVerb:
    """``duration`` in seconds, as given (an int stays an int for StatusHook events)."""

    name: ClassVar[str] = "pause"
    duration: float
    status_label: Any = UNSET


Verb = AnnounceVerb | ConnectVerb | ResponseVerb | PauseVerb


@dataclass(frozen=True, slots=True)
class CallScript:
    """A validated CallScript: the verbs in order (never empty)."""

    verbs: tuple[Verb, ...]

    def __iter__(self) -> Iterator[Verb]:
        return iter(self.verbs)

    def __len__(self) -> int:
        return len(self.verbs)

    def __getitem__(self, index: int) -> Verb:
        return self.verbs[index]

    @property
    def is_single_response(self) -> bool:
        """Exactly one ``response`` verb: answered without any media (spec §6.2)."""
        return len(self.verbs) == 1 and isinstance(self.verbs[0], ResponseVerb)
