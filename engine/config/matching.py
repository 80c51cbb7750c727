"""Pure matching: dialplan precedence and CIDR tables (globs live in ``globs``).

* ``Dialplan`` compiles a dialplan once (per snapshot, or per distinct JSON
  text for RegHook grants via ``dialplan_from_json``) and answers
  ``match(user) -> DialplanMatch | None`` with either precedence of
  ``DIALPLAN_PRECEDENCE``;
* ``NetworkTable`` finds the first trunk whose inbound CIDRs contain an
  address with one dict probe per distinct prefix length.

The glob names are re-exported here so callers need one import. This module
is a pure core: no I/O, no asyncio (design.md import rule).
"""

from __future__ import annotations

import copy
import ipaddress
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

from engine.config.globs import (
    MAX_RANGE_ITEMS,
    FirstMatch,
    Glob,
    PatternError,
    compile_glob,
    glob_match,
)

T = TypeVar("T")

PRECEDENCES = ("specific", "legacy")

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


# --------------------------------------------------------------------------- dialplans


@dataclass(frozen=True, slots=True)
class DialplanMatch:
    """The winning dialplan entry: which key, which CallHook (and its fallback), which
    StatusHook."""

    pattern: str
    call_hook: str
    status_hook: str | None = None
    call_hook_fallback: str | None = None  # asked when call_hook fails (issue 10, defect 9)

    @property
    def is_file(self) -> bool:
        """``file:`` CallHooks are templates, everything else is an HTTP POST (§4.3)."""
        return self.call_hook.startswith("file:")


class DialplanError(ValueError):
    """Dialplan keys or values that cannot be used: ``problems`` = [(key, code, message)]."""

    def __init__(self, problems: list[tuple[str, str, str]]):
        self.problems = problems
        super().__init__("; ".join(f"{k!r}: {m}" for k, _, m in problems))


def is_array_index(key: str) -> bool:
    """JavaScript canonical array index ("0", "999", not "0123", not "-1")."""
    return (key.isascii() and key.isdigit() and (key == "0" or key[0] != "0")
            and int(key) <= 2**32 - 2)


def js_key_order(keys: Iterable[str]) -> list[str]:
    """Object key order in JavaScript: array indices ascending, then insertion order."""
    keys = list(keys)
    return sorted((k for k in keys if is_array_index(k)), key=int) + [
        k for k in keys if not is_array_index(k)]


def parse_dialplan_value(key: str, value: Any) -> DialplanMatch | None:
    """Dialplan value → match (None = empty value, which blocks: a 404). Raises ValueError."""
    if value is None or value == "":
        return None
    if isinstance(value, str):
        return DialplanMatch(key, value, None)
    if isinstance(value, Mapping):
        hook = value.get("callHook")
        if not isinstance(hook, str) or not hook:
            raise ValueError("an object value needs a non-empty string callHook")
        status = value.get("statusHook")
        if status in (None, False, ""):
            status = None
        elif not isinstance(status, str):
            raise ValueError("statusHook must be a URL string, false or absent")
        fallback = value.get("callHookFallback")
        if fallback in (None, False, ""):
            fallback = None
        elif not isinstance(fallback, str):
            raise ValueError("callHookFallback must be a CallHook string, false or absent")
        elif fallback == hook:
            # asking the same URL again would send a request twice (issue 10)
            raise ValueError("callHookFallback must differ from callHook")
        return DialplanMatch(key, hook, status, fallback)
    raise ValueError("a dialplan value must be a CallHook string or "
                     "{callHook, callHookFallback, statusHook}")


@dataclass(frozen=True, slots=True)
class _Entry:
    glob: Glob
    result: DialplanMatch | None
    index: int


class Dialplan:
    """A compiled dialplan: ``match(user)`` → ``DialplanMatch`` or None.

    ``precedence="specific"`` (default, D-33): an exact key wins, then fewest
    ``*``, then fewest ``?``/classes, then most literal characters, then
    document order. ``"legacy"``: the original's last match in JavaScript key
    order (spec §4.2). In both modes an empty winning value means "no match"
    (the original's falsy check), which lets a specific key block numbers that
    a broader key would route.

    ``strict=True`` raises ``DialplanError`` listing every bad key/value;
    ``strict=False`` (dialplans from RegHooks) skips them and keeps ``errors``.
    """

    __slots__ = ("_exact", "_json", "_ordered", "_raw", "errors", "precedence")

    def __init__(self, raw: Mapping[str, Any], precedence: str = "specific", *,
                 strict: bool = True):
        if precedence not in PRECEDENCES:
            raise ValueError(f"precedence must be one of {PRECEDENCES}")
        self.precedence = precedence
        self._raw: tuple[tuple[str, Any], ...] = tuple((str(k), v) for k, v in raw.items())
        self._json: str | None = None
        problems: list[tuple[str, str, str]] = []
        entries: list[_Entry] = []
        for index, (key, value) in enumerate(self._raw):
            try:
                glob = compile_glob(key)
            except PatternError as exc:
                problems.append((key, exc.code, exc.reason))
                continue
            try:
                result = parse_dialplan_value(key, value)
            except ValueError as exc:
                problems.append((key, "CONFIG_DIALPLAN_VALUE", str(exc)))
                continue
            if not glob.inert:
                entries.append(_Entry(glob, result, index))
        if problems and strict:
            raise DialplanError(problems)
        self.errors: tuple[tuple[str, str, str], ...] = tuple(problems)
        self._exact: dict[str, _Entry] = {}
        if precedence == "legacy":
            rank = {k: i for i, k in enumerate(js_key_order(k for k, _ in self._raw))}
            self._ordered = sorted(entries, key=lambda e: rank[e.glob.pattern], reverse=True)
        else:
            wild: list[_Entry] = []
            for e in entries:
                if e.glob.literal is not None:
                    self._exact.setdefault(e.glob.literal, e)
                else:
                    wild.append(e)
            self._ordered = sorted(wild, key=lambda e: (*e.glob.specificity, e.index))

    def match(self, user: str | None) -> DialplanMatch | None:
        if not user:
            return None
        exact = self._exact.get(user)
        if exact is not None:
            return exact.result
        for entry in self._ordered:
            if entry.glob.match(user):
                return entry.result
        return None

    def keys(self) -> list[str]:
        return [k for k, _ in self._raw]

    def as_dict(self) -> dict[str, Any]:
        """A fresh, JSON-serialisable copy (e.g. for a registration grant)."""
        return {k: copy.deepcopy(v) for k, v in self._raw}

    def to_json(self) -> str:
        if self._json is None:
            self._json = json.dumps(self.as_dict(), separators=(",", ":"), ensure_ascii=False)
        return self._json

    def __len__(self) -> int:
        return len(self._raw)

    def __eq__(self, other: object) -> bool:
        return (isinstance(other, Dialplan) and self._raw == other._raw
                and self.precedence == other.precedence)

    def __hash__(self) -> int:
        return hash(self.to_json())

    def __repr__(self) -> str:
        return f"Dialplan({len(self._raw)} keys, {self.precedence})"


@lru_cache(maxsize=4096)
def dialplan_from_json(text: str | None, precedence: str = "specific") -> Dialplan | None:
    """Dialplan stored as JSON (a registration's grant in Redis), compiled once per text.

    Returns None for ``null``/missing/non-object values (the caller answers 404).
    Bad keys are skipped (``strict=False``): a RegHook's grant is outside input.
    """
    if not text:
        return None
    try:
        raw = json.loads(text)
    except ValueError:
        return None
    if not isinstance(raw, dict):
        return None
    return Dialplan(raw, precedence, strict=False)


# --------------------------------------------------------------------------- CIDR


def parse_network(text: str) -> IPNetwork:
    """``"10.0.0.0/8"``, ``"2001:db8::/32"``, bare ``"1.2.3.4"`` (/32) or ``"::1"`` (/128).

    Host bits are masked (``10.1.2.3/24`` = ``10.1.2.0/24``), as cidr-matcher did.
    Raises ValueError with a readable message.
    """
    if not isinstance(text, str):
        raise ValueError("a CIDR must be a string")
    cleaned = text.strip()
    if cleaned.startswith("["):
        end = cleaned.find("]")
        cleaned = cleaned[1:end] + cleaned[end + 1 :] if end > 0 else cleaned
    try:
        return ipaddress.ip_network(cleaned, strict=False)
    except ValueError:
        raise ValueError(f"{text!r} is not an IPv4/IPv6 address or CIDR "
                         "(e.g. 203.0.113.0/24, 2001:db8::/32)") from None


def parse_address(text: str | IPAddress) -> IPAddress | None:
    """A packet source address; IPv4-mapped IPv6 becomes IPv4; None if unparsable."""
    if isinstance(text, str):
        return _parse_address_text(text)
    if isinstance(text, ipaddress.IPv6Address) and text.ipv4_mapped is not None:
        return text.ipv4_mapped
    return text


@lru_cache(maxsize=4096)
def _parse_address_text(text: str) -> IPAddress | None:
    # Remembered: every request's source is looked up (trunks, exempt sources) and
    # ipaddress parsing is ~3 µs; a flood of new sources only cycles the bounded cache.
    cleaned = text.strip().strip("[]").split("%", 1)[0]
    try:
        addr: IPAddress = ipaddress.ip_address(cleaned)
    except ValueError:
        return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class NetworkTable(Generic[T]):
    """First item, in the given order, with a network containing an address.

    Networks are grouped by prefix length: a lookup masks the address once
    per distinct prefix length and probes a dict, so hundreds of trunks cost
    a handful of probes; the lowest item index among the hits wins.
    """

    __slots__ = ("_count", "_v4", "_v6")

    def __init__(self, items: Iterable[tuple[Iterable[IPNetwork], T]]):
        tables: dict[int, dict[int, dict[int, tuple[int, T]]]] = {4: {}, 6: {}}
        self._count = 0
        for order, (networks, item) in enumerate(items):
            for net in networks:
                by_mask = tables[net.version].setdefault(int(net.netmask), {})
                by_mask.setdefault(int(net.network_address), (order, item))
                self._count += 1
        self._v4 = list(tables[4].items())
        self._v6 = list(tables[6].items())

    def find(self, address: str | IPAddress | None) -> T | None:
        if address is None:
            return None
        addr = parse_address(address)
        if addr is None:
            return None
        value = int(addr)
        best: tuple[int, T] | None = None
        for mask, nets in self._v4 if addr.version == 4 else self._v6:
            hit = nets.get(value & mask)
            if hit is not None and (best is None or hit[0] < best[0]):
                best = hit
        return best[1] if best is not None else None

    def __len__(self) -> int:
        return self._count


__all__ = [
    "MAX_RANGE_ITEMS", "PRECEDENCES", "Dialplan", "DialplanError", "DialplanMatch",
    "FirstMatch", "Glob", "NetworkTable", "PatternError", "compile_glob", "dialplan_from_json",
    "glob_match", "is_array_index", "js_key_order", "parse_address", "parse_dialplan_value",
    "parse_network",
]
