"""A JSON parser that remembers where every value and key starts.

Configuration errors must point at the offending line (``file:line:col``),
which the standard ``json`` module cannot do. This recursive-descent parser
uses ``json``'s own C string scanner and number grammar, so it accepts exactly
standard JSON, and records for each JSON path (a tuple of keys and indices)
the offset of the value and, for object members, of the key. Duplicate keys
are kept like ``JSON.parse`` does (first position, last value) and reported.
"""

from __future__ import annotations

import bisect
import json
import json.decoder
import re
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

JsonPath = tuple[str | int, ...]

_WS = re.compile(r"[ \t\n\r]*")
_NUMBER = re.compile(r"(-?(?:0|[1-9]\d*))(\.\d+)?([eE][-+]?\d+)?")
# The C scanner is public in practice but absent from typeshed's json.decoder stub.
_scanstring: Callable[..., tuple[str, int]] = getattr(json.decoder, "scanstring")  # noqa: B009
MAX_DEPTH = 256


class JsonSyntaxError(ValueError):
    def __init__(self, message: str, line: int, col: int):
        self.msg = message
        self.line = line
        self.col = col
        super().__init__(f"{line}:{col}: {message}")


@dataclass
class LocatedJson:
    """Parsed value plus positions: ``where(path)`` → (line, col), 1-based."""

    value: Any
    text: str
    values: dict[JsonPath, int] = field(default_factory=dict)
    keys: dict[JsonPath, int] = field(default_factory=dict)
    duplicates: list[JsonPath] = field(default_factory=list)
    _lines: list[int] = field(default_factory=list, repr=False)

    def __post_init__(self) -> None:
        if not self._lines:
            self._lines = [0] + [m.end() for m in re.finditer("\n", self.text)]

    def line_col(self, offset: int) -> tuple[int, int]:
        line = bisect.bisect_right(self._lines, offset)
        return line, offset - self._lines[line - 1] + 1

    def where(self, path: JsonPath, *, key: bool = False) -> tuple[int, int]:
        """Position of the value at ``path`` (or of its key); the nearest parent if unknown."""
        table = self.keys if key else self.values
        probe = tuple(path)
        if probe in table:
            return self.line_col(table[probe])
        while probe:
            probe = probe[:-1]
            if probe in self.values:
                return self.line_col(self.values[probe])
        return (1, 1)


def loads_located(text: str) -> LocatedJson:
    """Parse ``text``; raises ``JsonSyntaxError`` with line and column."""
    doc = LocatedJson(None, text)
    parser = _Parser(text, doc)
    end = parser.skip_ws(0)
    if end >= len(text):
        raise parser.error("empty document, expected a JSON value", end)
    doc.value, end = parser.value(end, (), 0)
    end = parser.skip_ws(end)
    if end != len(text):
        raise parser.error("extra data after the JSON value", end)
    return doc


class _Parser:
    def __init__(self, text: str, doc: LocatedJson):
        self.text = text
        self.doc = doc

    def error(self, message: str, offset: int) -> JsonSyntaxError:
        line, col = self.doc.line_col(offset)
        return JsonSyntaxError(message, line, col)

    def skip_ws(self, pos: int) -> int:
        m = _WS.match(self.text, pos)
        assert m is not None  # the pattern also matches the empty string
        return m.end()

    def value(self, pos: int, path: JsonPath, depth: int) -> tuple[Any, int]:
        if depth > MAX_DEPTH:
            raise self.error("nesting too deep", pos)
        text = self.text
        self.doc.values[path] = pos
        if pos >= len(text):
            raise self.error("unexpected end of document, expected a value", pos)
        c = text[pos]
        if c == "{":
            return self.obj(pos + 1, path, depth)
        if c == "[":
            return self.arr(pos + 1, path, depth)
        if c == '"':
            return self.string(pos)
        for word, val in (("true", True), ("false", False), ("null", None)):
            if text.startswith(word, pos):
                return val, pos + len(word)
        m = _NUMBER.match(text, pos)
        if m:
            integer, frac, exp = m.groups()
            if frac or exp:
                return float(integer + (frac or "") + (exp or "")), m.end()
            return int(integer), m.end()
        raise self.error("expected a JSON value (object, array, string, number, true, "
                         "false or null)", pos)

    def string(self, pos: int) -> tuple[str, int]:
        try:
            return _scanstring(self.text, pos + 1, True)
        except json.JSONDecodeError as exc:
            raise self.error(exc.msg, exc.pos) from None

    def obj(self, pos: int, path: JsonPath, depth: int) -> tuple[dict[str, Any], int]:
        out: dict[str, Any] = {}
        pos = self.skip_ws(pos)
        if self.text.startswith("}", pos):
            return out, pos + 1
        while True:
            if not self.text.startswith('"', pos):
                raise self.error("expected a property name in double quotes", pos)
            key_pos = pos
            key, pos = self.string(pos)
            pos = self.skip_ws(pos)
            if not self.text.startswith(":", pos):
                raise self.error("expected ':' after the property name", pos)
            pos = self.skip_ws(pos + 1)
            child = (*path, key)
            if key in out:
                self.doc.duplicates.append(child)
                first_key, first_value = self.doc.keys[child], self.doc.values[child]
                out[key], pos = self.value(pos, child, depth + 1)
                self.doc.keys[child], self.doc.values[child] = first_key, first_value
            else:
                self.doc.keys[child] = key_pos
                out[key], pos = self.value(pos, child, depth + 1)
            pos = self.skip_ws(pos)
            if self.text.startswith(",", pos):
                pos = self.skip_ws(pos + 1)
                continue
            if self.text.startswith("}", pos):
                return out, pos + 1
            raise self.error("expected ',' or '}' after an object member", pos)

    def arr(self, pos: int, path: JsonPath, depth: int) -> tuple[list[Any], int]:
        out: list[Any] = []
        pos = self.skip_ws(pos)
        if self.text.startswith("]", pos):
            return out, pos + 1
        while True:
            item, pos = self.value(pos, (*path, len(out)), depth + 1)
            out.append(item)
            pos = self.skip_ws(pos)
            if self.text.startswith(",", pos):
                pos = self.skip_ws(pos + 1)
                continue
            if self.text.startswith("]", pos):
                return out, pos + 1
            raise self.error("expected ',' or ']' after an array element", pos)


_IDENT = re.compile(r"^[A-Za-z_][A-Za-z0-9_]*$")


def render_path(path: JsonPath) -> str:
    """``("domains", "pbx.example", "trunks", 0)`` → ``$.domains['pbx.example'].trunks[0]``."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.match(part):
            out.append(f".{part}")
        else:
            escaped = part.replace("\\", "\\\\").replace("'", "\\'")
            out.append(f"['{escaped}']")
    return "".join(out)
