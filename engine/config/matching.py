"""Pure matching: dialplan/username globs, dialplan precedence, CIDR tables.

Glob semantics follow the original's minimatch/multimatch use (spec §4.2):

* ``?`` one character, ``*`` any run (also empty); neither matches ``/`` nor a
  leading ``.`` (minimatch's ``dot: false``);
* brace alternatives ``{a,b}`` (nestable), ranges ``{1..5}``, ``{01..10}``
  (zero padded like brace-expansion), ``{1..9..2}``, ``{a..e}``;
* classes ``[0-9]``, ``[!0-9]``/``[^0-9]``, POSIX ``[[:digit:]]``;
* ``\\x`` makes ``x`` literal;
* a key starting with ``!`` (a lone negation in multimatch) or ``#`` (a
  minimatch comment) never matches; an empty subject matches nothing;
* extglobs ``+( ) @( ) !( ) ?( ) *( )`` raise ``PatternError`` — configuration
  validation refuses them rather than half-support them.

Braces are compiled in place to regex alternations instead of being expanded
into many patterns, so ``{1000..1999}`` stays one regex. Every pattern is
compiled once (``compile_glob`` is cached) and a ``Dialplan`` pre-sorts its
keys, so a lookup on the SIP hot path is a dict probe plus a short regex scan.

This module is a pure core: no I/O, no asyncio (design.md import rule).
"""

from __future__ import annotations

import copy
import ipaddress
import json
import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Any, Generic, TypeVar

T = TypeVar("T")

PRECEDENCES = ("specific", "legacy")
MAX_RANGE_ITEMS = 10_000  # one brace range; beyond that a key is certainly a mistake

IPAddress = ipaddress.IPv4Address | ipaddress.IPv6Address
IPNetwork = ipaddress.IPv4Network | ipaddress.IPv6Network


class PatternError(ValueError):
    """A glob that cannot be compiled; ``code`` is the diagnostic code."""

    def __init__(self, pattern: str, reason: str, code: str = "CONFIG_PATTERN"):
        self.pattern = pattern
        self.reason = reason
        self.code = code
        super().__init__(f"pattern {pattern!r}: {reason}")


# --------------------------------------------------------------------------- glob AST


@dataclass(frozen=True, slots=True)
class _Lit:
    text: str


@dataclass(frozen=True, slots=True)
class _Star:
    pass


@dataclass(frozen=True, slots=True)
class _One:
    regex: str  # "[^/]" for "?", a class regex for "[...]"


@dataclass(frozen=True, slots=True)
class _Alt:
    branches: tuple[tuple[_Node, ...], ...]


_Node = _Lit | _Star | _One | _Alt
_STAR = _Star()
_ANY_ONE = _One("[^/]")

_NUM_RANGE = re.compile(r"^(-?\d+)\.\.(-?\d+)(?:\.\.(-?\d+))?$")
_ALPHA_RANGE = re.compile(r"^([a-zA-Z])\.\.([a-zA-Z])(?:\.\.(-?\d+))?$")
_PADDED = re.compile(r"^-?0\d")
_POSIX = {
    "alnum": "a-zA-Z0-9", "alpha": "a-zA-Z", "digit": "0-9", "lower": "a-z",
    "upper": "A-Z", "xdigit": "0-9A-Fa-f", "space": " \\t\\r\\n\\v\\f", "blank": " \\t",
    "word": "\\w", "punct": re.escape("!\"#$%&'()*+,-./:;<=>?@[\\]^_`{|}~"),
}


def _check_extglob(pattern: str) -> None:
    i = 0
    while i < len(pattern) - 1:
        c = pattern[i]
        if c == "\\":
            i += 2
            continue
        if c in "+@!?*" and pattern[i + 1] == "(" and _find_unescaped(pattern, ")", i + 2) >= 0:
            raise PatternError(
                pattern,
                f"extglob '{c}(…)' is not supported; use brace alternatives {{a,b}}, a class "
                "[…] or separate keys",
                code="CONFIG_EXTGLOB",
            )
        i += 1


def _find_unescaped(s: str, ch: str, start: int) -> int:
    i = start
    while i < len(s):
        if s[i] == "\\":
            i += 2
            continue
        if s[i] == ch:
            return i
        i += 1
    return -1


def _cls_esc(ch: str) -> str:
    return "\\" + ch if ch in "\\]^-[" else ch


def _parse_class(s: str, start: int, pattern: str) -> tuple[_One, int] | None:
    """``[...]`` at ``start`` → (node, index after ``]``), or None if unclosed."""
    j = start + 1
    n = len(s)
    negate = j < n and s[j] in "!^"
    if negate:
        j += 1
    items: list[str] = []
    first = True
    while j < n:
        c = s[j]
        if c == "]" and not first:
            content = "".join(items)
            regex = f"[^{content}/]" if negate else f"(?!/)[{content}]"
            try:
                re.compile(regex)
            except re.error as exc:
                raise PatternError(pattern, f"bad character class: {exc.msg}") from None
            return _One(regex), j + 1
        first = False
        if c == "[" and s.startswith("[:", j):
            end = s.find(":]", j + 2)
            if end > 0:
                name = s[j + 2 : end]
                if name not in _POSIX:
                    raise PatternError(pattern, f"unknown character class [:{name}:]")
                items.append(_POSIX[name])
                j = end + 2
                continue
        if c == "\\" and j + 1 < n:
            lo, j = s[j + 1], j + 2
        else:
            lo, j = c, j + 1
        if j + 1 < n and s[j] == "-" and s[j + 1] != "]":
            if s[j + 1] == "\\" and j + 2 < n:
                hi, j = s[j + 2], j + 3
            else:
                hi, j = s[j + 1], j + 2
            if lo > hi:
                raise PatternError(pattern, f"bad character range {lo}-{hi}")
            items.append(f"{_cls_esc(lo)}-{_cls_esc(hi)}")
        else:
            items.append(_cls_esc(lo))
    return None


def _split_top(content: str) -> list[str]:
    parts: list[str] = []
    depth = 0
    cur = 0
    i = 0
    while i < len(content):
        c = content[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
        elif c == "," and depth == 0:
            parts.append(content[cur:i])
            cur = i + 1
        i += 1
    parts.append(content[cur:])
    return parts


def _pad(value: int, width: int) -> str:
    text = str(value)
    need = width - len(text)
    if need <= 0:
        return text
    return "-" + "0" * need + text[1:] if value < 0 else "0" * need + text


def _expand_range(content: str, pattern: str) -> list[str] | None:
    m = _NUM_RANGE.match(content)
    if m:
        x, y = int(m.group(1)), int(m.group(2))
        step = max(abs(int(m.group(3) or 1)), 1)
        padded = bool(_PADDED.match(m.group(1)) or _PADDED.match(m.group(2)))
        width = max(len(m.group(1)), len(m.group(2))) if padded else 0
        if abs(y - x) // step + 1 > MAX_RANGE_ITEMS:
            raise PatternError(pattern, f"range {{{content}}} has more than "
                                        f"{MAX_RANGE_ITEMS} values")
        seq = range(x, y + 1, step) if x <= y else range(x, y - 1, -step)
        return [_pad(v, width) for v in seq]
    m = _ALPHA_RANGE.match(content)
    if m:
        x, y = ord(m.group(1)), ord(m.group(2))
        step = max(abs(int(m.group(3) or 1)), 1)
        seq = range(x, y + 1, step) if x <= y else range(x, y - 1, -step)
        return [chr(v) for v in seq if chr(v) != "\\"]
    return None


def _parse_brace(s: str, start: int, pattern: str) -> tuple[_Alt, int] | None:
    depth = 0
    i = start
    while i < len(s):
        c = s[i]
        if c == "\\":
            i += 2
            continue
        if c == "{":
            depth += 1
        elif c == "}":
            depth -= 1
            if depth == 0:
                break
        i += 1
    else:
        return None
    content = s[start + 1 : i]
    parts = _split_top(content)
    if len(parts) >= 2:
        return _Alt(tuple(tuple(_parse(p, pattern)) for p in parts)), i + 1
    values = _expand_range(content, pattern)
    if values is None:
        return None  # "{a}" / "{}" stay literal, as in brace-expansion
    return _Alt(tuple((_Lit(v),) if v else () for v in values)), i + 1


def _parse(s: str, pattern: str) -> list[_Node]:
    out: list[_Node] = []
    buf: list[str] = []

    def flush() -> None:
        if buf:
            out.append(_Lit("".join(buf)))
            buf.clear()

    i, n = 0, len(s)
    while i < n:
        c = s[i]
        if c == "\\":
            buf.append(s[i + 1] if i + 1 < n else "\\")
            i += 2
            continue
        if c == "*":
            flush()
            while i < n and s[i] == "*":
                i += 1  # "**" is "*": a SIP user part has no path segments
            out.append(_STAR)
            continue
        if c == "?":
            flush()
            out.append(_ANY_ONE)
            i += 1
            continue
        if c == "[":
            parsed = _parse_class(s, i, pattern)
            if parsed is not None:
                flush()
                out.append(parsed[0])
                i = parsed[1]
                continue
        elif c == "{":
            alt = _parse_brace(s, i, pattern)
            if alt is not None:
                flush()
                out.append(alt[0])
                i = alt[1]
                continue
        buf.append(c)
        i += 1
    flush()
    return out


def _can_be_empty(nodes: Sequence[_Node]) -> bool:
    for node in nodes:
        if isinstance(node, _Lit | _One):
            return False
        if isinstance(node, _Alt) and not any(_can_be_empty(b) for b in node.branches):
            return False
    return True


def _emit(nodes: Sequence[_Node], at_start: bool) -> tuple[str, bool]:
    """Regex for ``nodes``; ``at_start`` = a leading ``.`` must not be wildcarded here."""
    parts: list[str] = []
    for node in nodes:
        if isinstance(node, _Lit):
            parts.append(re.escape(node.text))
            at_start = node.text.endswith("/")
        elif isinstance(node, _Alt):
            emitted = [_emit(b, at_start) for b in node.branches]
            parts.append("(?:" + "|".join(r for r, _ in emitted) + ")")
            at_start = any(after for _, after in emitted) or (
                at_start and any(_can_be_empty(b) for b in node.branches))
        else:
            if at_start:
                parts.append(r"(?!\.)")
            parts.append("[^/]*" if isinstance(node, _Star) else node.regex)
            at_start = False
    return "".join(parts), at_start


def _measure(nodes: Sequence[_Node]) -> tuple[int, int, int]:
    """(stars, single-character wildcards, literal characters) — worst branch of braces."""
    stars = singles = literals = 0
    for node in nodes:
        if isinstance(node, _Lit):
            literals += len(node.text)
        elif isinstance(node, _Star):
            stars += 1
        elif isinstance(node, _One):
            singles += 1
        else:
            measured = [_measure(b) for b in node.branches] or [(0, 0, 0)]
            stars += max(m[0] for m in measured)
            singles += max(m[1] for m in measured)
            literals += min(m[2] for m in measured)
    return stars, singles, literals


@dataclass(frozen=True, slots=True)
class Glob:
    """A compiled glob. ``literal`` is set when the pattern is one plain string."""

    pattern: str
    literal: str | None
    regex: re.Pattern[str] | None
    stars: int = 0
    singles: int = 0
    literals: int = 0
    inert: bool = False  # "!…" / "#…": never matches

    def match(self, text: str | None) -> bool:
        if self.inert or not text:
            return False
        if self.literal is not None:
            return text == self.literal
        assert self.regex is not None
        return self.regex.fullmatch(text) is not None

    @property
    def specificity(self) -> tuple[int, int, int]:
        """Sort key, smaller = more specific: fewer ``*``, fewer ``?``/classes, longer literal."""
        return (self.stars, self.singles, -self.literals)


@lru_cache(maxsize=65536)
def compile_glob(pattern: str) -> Glob:
    """Compile ``pattern`` (cached). Raises ``PatternError``."""
    if not isinstance(pattern, str):
        raise PatternError(str(pattern), "a pattern must be a string")
    if pattern.startswith("#"):  # a minimatch comment
        return Glob(pattern, None, None, inert=True)
    _check_extglob(pattern)  # also "!(…)": refused rather than silently inert
    if pattern.startswith("!"):  # multimatch: a lone negation removes from nothing
        return Glob(pattern, None, None, inert=True)
    nodes = _parse(pattern, pattern)
    stars, singles, literals = _measure(nodes)
    if all(isinstance(n, _Lit) for n in nodes):
        return Glob(pattern, "".join(n.text for n in nodes), None, 0, 0, literals)
    body, _ = _emit(nodes, True)
    try:
        regex = re.compile(body, re.DOTALL)
    except re.error as exc:  # pragma: no cover - _parse only emits escaped text
        raise PatternError(pattern, exc.msg) from None
    return Glob(pattern, None, regex, stars, singles, literals)


def glob_match(pattern: str, text: str | None) -> bool:
    """One-off match (compiles through the cache)."""
    return compile_glob(pattern).match(text)


class FirstMatch(Generic[T]):
    """First item, in the given order, whose glob matches (clients, spec §2.4).

    Plain-string globs go into a dict so thousands of literal usernames cost
    one probe; wildcard globs are scanned only while they precede that hit.
    """

    __slots__ = ("_literal", "_wild")

    def __init__(self, items: Iterable[tuple[Glob, T]]):
        self._literal: dict[str, tuple[int, T]] = {}
        self._wild: list[tuple[int, Glob, T]] = []
        for idx, (glob, item) in enumerate(items):
            if glob.inert:
                continue
            if glob.literal is not None:
                self._literal.setdefault(glob.literal, (idx, item))
            else:
                self._wild.append((idx, glob, item))

    def find(self, text: str | None) -> T | None:
        if not text:
            return None
        hit = self._literal.get(text)
        limit = hit[0] if hit else None
        for idx, glob, item in self._wild:
            if limit is not None and idx > limit:
                break
            if glob.match(text):
                return item
        return hit[1] if hit else None


# --------------------------------------------------------------------------- dialplans


@dataclass(frozen=True, slots=True)
class DialplanMatch:
    """The winning dialplan entry: which key, which CallHook, which StatusHook."""

    pattern: str
    call_hook: str
    status_hook: str | None = None

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
            return DialplanMatch(key, hook, None)
        if not isinstance(status, str):
            raise ValueError("statusHook must be a URL string, false or absent")
        return DialplanMatch(key, hook, status)
    raise ValueError("a dialplan value must be a CallHook string or {callHook, statusHook}")


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
    if isinstance(text, ipaddress.IPv4Address | ipaddress.IPv6Address):
        addr: IPAddress = text
    else:
        cleaned = text.strip().strip("[]").split("%", 1)[0]
        try:
            addr = ipaddress.ip_address(cleaned)
        except ValueError:
            return None
    if isinstance(addr, ipaddress.IPv6Address) and addr.ipv4_mapped is not None:
        return addr.ipv4_mapped
    return addr


class NetworkTable(Generic[T]):
    """First item, in the given order, with a network containing an address.

    Networks are reduced to (network int, mask int) once, so a lookup is a
    loop of integer ANDs instead of ipaddress object comparisons.
    """

    __slots__ = ("_v4", "_v6")

    def __init__(self, items: Iterable[tuple[Iterable[IPNetwork], T]]):
        self._v4: list[tuple[int, int, T]] = []
        self._v6: list[tuple[int, int, T]] = []
        for networks, item in items:
            for net in networks:
                table = self._v4 if net.version == 4 else self._v6
                table.append((int(net.network_address), int(net.netmask), item))

    def find(self, address: str | IPAddress | None) -> T | None:
        if address is None:
            return None
        addr = parse_address(address)
        if addr is None:
            return None
        value = int(addr)
        for net, mask, item in self._v4 if addr.version == 4 else self._v6:
            if value & mask == net:
                return item
        return None

    def __len__(self) -> int:
        return len(self._v4) + len(self._v6)


__all__ = [
    "PRECEDENCES", "Dialplan", "DialplanError", "DialplanMatch", "FirstMatch", "Glob",
    "NetworkTable", "PatternError", "compile_glob", "dialplan_from_json", "glob_match",
    "is_array_index", "js_key_order", "parse_address", "parse_dialplan_value",
    "parse_network",
]
