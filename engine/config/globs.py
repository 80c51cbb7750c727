"""Glob patterns for dialplan keys and client usernames, compiled once to regexes.

Semantics follow the original's minimatch/multimatch use (spec §4.2):

* ``?`` one character, ``*`` any run (also empty); neither matches ``/`` nor a
  leading ``.`` (minimatch's ``dot: false``); ``**`` is ``*``;
* brace alternatives ``{a,b}`` (nestable), ranges ``{1..5}``, ``{01..10}``
  (zero padded like brace-expansion), ``{1..9..2}``, ``{a..e}``;
* classes ``[0-9]``, ``[!0-9]``/``[^0-9]``, POSIX ``[[:digit:]]``;
* ``\\x`` makes ``x`` literal;
* a pattern starting with ``!`` (a lone negation in multimatch) or ``#`` (a
  minimatch comment) never matches; an empty subject matches nothing;
* extglobs ``+( ) @( ) !( ) ?( ) *( )`` raise ``PatternError`` — configuration
  validation refuses them rather than half-support them.

Braces are compiled in place to regex alternations instead of being expanded
into many patterns, so ``{1000..1999}`` stays one regex. ``compile_glob`` is
cached, so a pattern shared by many snapshots or dialplans compiles once.
Pure: no I/O.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from functools import lru_cache
from typing import Generic, TypeVar

T = TypeVar("T")

MAX_RANGE_ITEMS = 10_000  # one brace range; beyond that a key is certainly a mistake


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
        text = "".join(n.text for n in nodes if isinstance(n, _Lit))
        return Glob(pattern, text, None, 0, 0, literals)
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


__all__ = ["MAX_RANGE_ITEMS", "FirstMatch", "Glob", "PatternError", "compile_glob", "glob_match"]
