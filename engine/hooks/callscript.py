"""CallScript validation: CallHook JSON → typed, immutable verbs (spec §6a, §7.1, D-13).

The original never checked a CallScript: an object instead of an array, an
unknown destination type or a bad response code crashed the process, and an
unknown verb was silently skipped. Here a script is checked by the rules of
``schemas/callscript.schema.json`` (the published contract) and turned into
frozen dataclasses with the defaults applied, or refused with a
``CallScriptError`` whose message is one short line naming the JSON path of
the first problems — the call flow answers 500 with it as ``X-Reason``.

The shape is the original's (COMPAT): ``[{"verb": "connect", "dest": …,
"callerId": …}, …]`` — the verb's parameters sit next to ``verb``.

Strictness, decided here and documented in docs/callhook-templates.md:
unknown members are refused with the member named (a misspelt ``durration``
would otherwise be dropped silently and change the call's behaviour), and so
are destination members that belong to another destination type (``proxy``
on a trunk: the original ignored it, so the script did not do what it said).
Secrets never appear in messages: values under password-like keys are
described by type only, and pattern failures never echo the value.
"""

from __future__ import annotations

import difflib
import json
import math
import re
from collections.abc import Callable, Iterable, Mapping, Sequence
from functools import cache
from typing import Any, Final

from engine.errors import EngineError
from engine.hooks.payloads import UNSET
from engine.hooks.verbs import (
    DEFAULT_TIMEOUT,
    AnnounceVerb,
    CallScript,
    ConnectVerb,
    Destination,
    FrozenDict,
    Headers,
    PauseVerb,
    ResponseVerb,
    Verb,
)
from engine.paths import schema_path

MAX_REASON_CHARS: Final = 200
MAX_LABEL_DEPTH: Final = 32
VERBS: Final = ("announce", "connect", "response", "pause")
DEST_TYPES: Final = ("client", "sip", "trunk")

PathPart = int | str
JsonPath = tuple[PathPart, ...]


# --------------------------------------------------------------------------- errors


class CallScriptError(EngineError):
    """The CallHook's JSON is not a valid CallScript (the call answers 500).

    ``errors`` holds every problem found as ``(json_path, message)`` in
    document order; ``str()`` (also ``reason``) is one line of at most 200
    characters with the first of them, fit for ``X-Reason``.
    """

    kind: Final = "schema"

    def __init__(self, errors: Sequence[tuple[str, str]]) -> None:
        self.errors = tuple(errors) or (("$", "invalid CallScript"),)
        self.reason = _summarise(self.errors)
        super().__init__(self.reason)


def _summarise(errors: Sequence[tuple[str, str]]) -> str:
    parts = [f"{path}: {message}" for path, message in errors]
    text = parts[0]
    shown = 1
    for part in parts[1:]:
        tail = f" (+{len(parts) - shown - 1} more)" if shown + 1 < len(parts) else ""
        if len(text) + 2 + len(part) + len(tail) > MAX_REASON_CHARS:
            break
        text += "; " + part
        shown += 1
    if shown < len(parts):
        text += f" (+{len(parts) - shown} more)"
    text = re.sub(r"[\x00-\x1f\x7f]+", " ", text)
    return text if len(text) <= MAX_REASON_CHARS else text[: MAX_REASON_CHARS - 1] + "…"


# --------------------------------------------------------------------------- the rules
#
# These mirror schemas/callscript.schema.json one for one (the schema is the
# published contract; tests check the two agree on generated scripts and that
# the patterns below are the schema's). Hand-written because jsonschema took
# ~0.8 ms per typical script on this once-per-call path, and because the
# messages can then say what an operator needs to read in an X-Reason.

CONTROL: Final = r"[\x00-\x1f\x7f]"
HEADER_VALUE_CONTROL: Final = r"[\x00-\x08\x0a-\x1f\x7f]"  # tab allowed
NO_SPACE: Final = r"^\S+$"
CALLER_ID: Final = r'^[^\s<>"@]*$'
MEDIA_URL: Final = r"^(?:[Ff][Ii][Ll][Ee]:/*[^/]|[Hh][Tt][Tt][Pp][Ss]?://\S+$)"
HEADER_NAME: Final = r"^[A-Za-z0-9!#$%&'*+.^_`|~-]+$"
CODEC: Final = r"^[A-Za-z0-9][A-Za-z0-9._/+-]*$"

MAX_VERBS: Final = 100
MAX_DESTS: Final = 50
MAX_HEADERS: Final = 32
MAX_CODECS: Final = 32
MAX_SECONDS: Final = 3600  # pause duration and ring timeout

_CONTROL_RE = re.compile(CONTROL)
_HEADER_VALUE_CONTROL_RE = re.compile(HEADER_VALUE_CONTROL)
_NO_SPACE_RE = re.compile(NO_SPACE)
_CALLER_ID_RE = re.compile(CALLER_ID)
_MEDIA_URL_RE = re.compile(MEDIA_URL)
_HEADER_NAME_RE = re.compile(HEADER_NAME)
_CODEC_RE = re.compile(CODEC)


@cache
def callscript_schema() -> dict[str, Any]:
    """The published JSON Schema (for tools, docs and the agreement tests)."""
    return json.loads(schema_path("callscript").read_text(encoding="utf-8"))


# --------------------------------------------------------------------------- messages

_IDENT = re.compile(r"[A-Za-z_][A-Za-z0-9_]*")
_SECRET = re.compile(r"(pass(word)?|secret|token)$", re.IGNORECASE)
_TYPE_WORDS: Final = {"object": "an object", "array": "an array", "string": "a string",
                      "integer": "an integer", "number": "a number", "boolean": "true or false",
                      "null": "null"}


def format_path(path: JsonPath) -> str:
    """``$[1].dest[0].type``; odd keys as ``['X-Foo']`` (control characters escaped)."""
    out = ["$"]
    for part in path:
        if isinstance(part, int):
            out.append(f"[{part}]")
        elif _IDENT.fullmatch(part):
            out.append(f".{part}")
        else:
            out.append(f"[{_quote(part)}]")
    return "".join(out)


def _quote(text: str) -> str:
    return repr(text if len(text) <= 40 else text[:39] + "…")


_KINDS: Final = (("boolean", bool), ("integer", int), ("number", float), ("string", str),
                 ("array", list | tuple))


def _json_type(value: Any) -> str:
    if value is None:
        return "null"
    return next((name for name, kind in _KINDS if isinstance(value, kind)), "object")


def _got(value: Any, path: JsonPath) -> str:
    """What was found: short non-secret scalars shown, anything else by type."""
    if any(_SECRET.search(p) for p in path if isinstance(p, str)):
        return _TYPE_WORDS[_json_type(value)]
    if value is None or isinstance(value, bool):
        return json.dumps(value)
    if isinstance(value, int | float):
        return repr(value) if math.isfinite(value) else "a non-finite number"
    if isinstance(value, str) and len(value) <= 40:
        return _quote(value)
    return _TYPE_WORDS[_json_type(value)]


def _did_you_mean(key: str, known: Iterable[str]) -> str:
    close = difflib.get_close_matches(key, list(known), n=1, cutoff=0.7)
    return f" (did you mean {close[0]!r}?)" if close else ""


# --------------------------------------------------------------------------- checking


class _Bad:
    """Marker for "this value was reported invalid"."""


_BAD: Final = _Bad()


class _Check:
    """Collects ``(path, message)`` problems in document order."""

    __slots__ = ("errors",)

    def __init__(self) -> None:
        self.errors: list[tuple[JsonPath, str]] = []

    def bad(self, path: JsonPath, message: str) -> _Bad:
        self.errors.append((path, message))
        return _BAD


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def _is_integer(value: Any) -> bool:
    # JSON Schema's "integer" admits 486.0 (a number with a zero fraction)
    return _is_number(value) and (isinstance(value, int) or value.is_integer())


def _text(c: _Check, value: Any, path: JsonPath, *, max_len: int, min_len: int = 0,
          pattern: re.Pattern[str] | None = None, pattern_msg: str = "",
          control: re.Pattern[str] = _CONTROL_RE,
          control_msg: str = "must not contain control characters",
          or_integer: bool = False) -> str | _Bad:
    """A string (or, with ``or_integer``, an integer ≥ 0 used as its decimal text)."""
    if or_integer and _is_integer(value):
        if value < 0:
            return c.bad(path, f"expected a number ≥ 0, got {_got(value, path)}")
        return str(int(value))
    if not isinstance(value, str):
        kind = "a string or an integer" if or_integer else "a string"
        return c.bad(path, f"expected {kind}, got {_got(value, path)}")
    if len(value) < min_len:
        return c.bad(path, "expected a non-empty string")
    if len(value) > max_len:
        return c.bad(path, f"longer than {max_len} characters")
    if control.search(value):
        return c.bad(path, control_msg)
    if pattern is not None and not pattern.search(value):
        return c.bad(path, pattern_msg)
    return value


def _number(c: _Check, value: Any, path: JsonPath, *, low: float, high: float,
            low_open: bool = False) -> float | _Bad:
    if not _is_number(value):
        return c.bad(path, f"expected a number, got {_got(value, path)}")
    if not math.isfinite(value):  # NaN slips through JSON Schema bounds; JSON has no NaN
        return c.bad(path, "expected a finite number")
    if value < low or (low_open and value == low):
        return c.bad(path, f"expected a number {'>' if low_open else '≥'} {low:g}, "
                           f"got {_got(value, path)}")
    if value > high:
        return c.bad(path, f"expected a number ≤ {high:g}, got {_got(value, path)}")
    return value


def _media_url(c: _Check, value: Any, path: JsonPath) -> str | _Bad:
    return _text(c, value, path, max_len=2048, pattern=_MEDIA_URL_RE,
                 pattern_msg="expected a file:<path> or http(s):// URL")


def _headers(c: _Check, value: Any, path: JsonPath) -> Headers | _Bad:
    if not isinstance(value, Mapping):
        return c.bad(path, f"expected an object, got {_got(value, path)}")
    if len(value) > MAX_HEADERS:
        return c.bad(path, f"at most {MAX_HEADERS} headers allowed")
    before = len(c.errors)
    out: list[tuple[str, str]] = []
    for name, text in value.items():
        where = (*path, str(name))
        if not (isinstance(name, str) and len(name) <= 64 and _HEADER_NAME_RE.search(name)
                and not _CONTROL_RE.search(name)):
            c.bad(where, "not a valid SIP header name")
            continue
        checked = _text(c, text, where, max_len=1024, control=_HEADER_VALUE_CONTROL_RE,
                        control_msg="must not contain line breaks or control characters")
        if isinstance(checked, str):
            out.append((name, checked))
    return _BAD if len(c.errors) > before else tuple(out)


def _codecs(c: _Check, value: Any, path: JsonPath) -> tuple[str, ...] | _Bad:
    if not isinstance(value, list):
        return c.bad(path, f"expected an array, got {_got(value, path)}")
    if not value:
        return c.bad(path, "expected at least one codec")
    if len(value) > MAX_CODECS:
        return c.bad(path, f"at most {MAX_CODECS} codecs allowed")
    names = [_text(c, v, (*path, i), max_len=64, pattern=_CODEC_RE,
                   pattern_msg="not a codec name") for i, v in enumerate(value)]
    return tuple(n for n in names if isinstance(n, str)) if _BAD not in names else _BAD


def _boolean(c: _Check, value: Any, path: JsonPath) -> bool | _Bad:
    if not isinstance(value, bool):
        return c.bad(path, f"expected true or false, got {_got(value, path)}")
    return value


def _freeze(c: _Check, value: Any, path: JsonPath, depth: int = 0) -> Any:
    """An immutable copy of a JSON value (statusLabel); refuses what JSON cannot carry."""
    if depth > MAX_LABEL_DEPTH:
        return c.bad(path, f"nested deeper than {MAX_LABEL_DEPTH} levels")
    if isinstance(value, float) and not math.isfinite(value):
        return c.bad(path, "expected a finite number")
    if isinstance(value, list | tuple):
        return tuple(_freeze(c, v, (*path, i), depth + 1) for i, v in enumerate(value))
    if isinstance(value, Mapping):
        return FrozenDict({str(k): _freeze(c, v, (*path, str(k)), depth + 1)
                           for k, v in value.items()})
    return value


Checker = Callable[[_Check, Any, JsonPath], Any]


def _string_rule(max_len: int, *, min_len: int = 0, pattern: re.Pattern[str] | None = None,
                 pattern_msg: str = "", or_integer: bool = False) -> Checker:
    def check(c: _Check, value: Any, path: JsonPath) -> Any:
        return _text(c, value, path, max_len=max_len, min_len=min_len, pattern=pattern,
                     pattern_msg=pattern_msg, or_integer=or_integer)
    return check


def _timeout(c: _Check, value: Any, path: JsonPath) -> float | _Bad:
    checked = _number(c, value, path, low=0, high=MAX_SECONDS, low_open=True)
    return checked if isinstance(checked, _Bad) else float(checked)


def _trunk_id(c: _Check, value: Any, path: JsonPath) -> int | str | _Bad:
    # kept as given: the trunk lookup compares ids loosely (5 matches "5")
    checked = _text(c, value, path, max_len=64, min_len=1, or_integer=True)
    return int(value) if _is_integer(value) and checked is not _BAD else checked


_DEST_COMMON: Final[dict[str, Checker]] = {
    "address": _string_rule(256, min_len=1, pattern=_NO_SPACE_RE, or_integer=True,
                            pattern_msg="must not contain spaces"),
    "timeout": _timeout,
    "headers": _headers,
}
_DEST_BY_TYPE: Final[dict[str, dict[str, Checker]]] = {
    "client": {},
    "sip": {
        "proxy": _string_rule(256, min_len=1, pattern=_NO_SPACE_RE,
                              pattern_msg="must be a host or SIP URI without spaces"),
        "username": _string_rule(128, min_len=1),
        "password": _string_rule(256),
        "codecs": _codecs,
    },
    "trunk": {
        "trunk_id": _trunk_id,
        "trunk_name": _string_rule(128, min_len=1),
    },
}
DEST_FIELDS: Final = {kind: frozenset(_DEST_COMMON) | {"type"} | frozenset(extra)
                      for kind, extra in _DEST_BY_TYPE.items()}


def _destination(c: _Check, d: Any, path: JsonPath) -> Destination | _Bad:
    if not isinstance(d, Mapping):
        return c.bad(path, f"expected a destination object, got {_got(d, path)}")
    before = len(c.errors)
    kind = d.get("type")
    if "type" not in d:
        c.bad(path, "missing 'type'")
    elif not (isinstance(kind, str) and kind in DEST_TYPES):
        c.bad((*path, "type"), f"{_got(kind, (*path, 'type'))} is not one of "
                               f"{', '.join(DEST_TYPES)}")
        kind = None
    if "address" not in d:
        c.bad(path, "missing 'address'")
    if kind == "trunk" and "trunk_id" not in d and "trunk_name" not in d:
        c.bad(path, "a trunk destination needs trunk_id or trunk_name")
    if kind == "sip" and "password" in d and "username" not in d:
        c.bad((*path, "password"), "requires 'username'")
    fields: dict[str, Any] = {}
    for key, value in d.items():
        if key == "type":
            continue
        where = (*path, str(key))
        check = _DEST_COMMON.get(key) or (_DEST_BY_TYPE[kind].get(key) if kind else None)
        if check is not None:
            fields[key] = check(c, value, where)
            continue
        owners = [t for t in DEST_TYPES if key in _DEST_BY_TYPE[t]]
        if owners and kind:
            c.bad(where, f"not allowed for type {kind} (only {', '.join(owners)})")
        elif not owners:
            every = set().union(*DEST_FIELDS.values())
            c.bad(where, f"unknown destination field{_did_you_mean(str(key), every)}")
        # else: the type itself is missing or wrong, already reported
    if len(c.errors) > before or not isinstance(kind, str):
        return _BAD
    return Destination(type=kind, address=fields["address"], **{
        k: v for k, v in fields.items() if k != "address"})


def _dest(c: _Check, value: Any, path: JsonPath) -> tuple[Destination, ...] | _Bad:
    if isinstance(value, list):
        if not value:
            return c.bad(path, "expected at least one destination")
        if len(value) > MAX_DESTS:
            return c.bad(path, f"at most {MAX_DESTS} destinations allowed")
        dests = [_destination(c, d, (*path, i)) for i, d in enumerate(value)]
        return _BAD if _BAD in dests else tuple(dests)  # type: ignore[arg-type]
    if isinstance(value, Mapping):
        one = _destination(c, value, path)
        return _BAD if one is _BAD else (one,)  # type: ignore[return-value]
    return c.bad(path, "expected a destination object or a non-empty array of them, "
                       f"got {_got(value, path)}")


def _code(c: _Check, value: Any, path: JsonPath) -> int | _Bad:
    if not _is_integer(value):
        return c.bad(path, f"expected an integer, got {_got(value, path)}")
    if not 300 <= value <= 699:
        return c.bad(path, f"expected a final non-2xx SIP code 300–699, got {_got(value, path)}")
    return int(value)


def _duration(c: _Check, value: Any, path: JsonPath) -> float | _Bad:
    checked = _number(c, value, path, low=0, high=MAX_SECONDS)
    if isinstance(checked, float) and checked.is_integer():
        return int(checked)  # as given for StatusHook events: 5.0 reads as 5
    return checked


_LABEL: Final = "statusLabel"
_VERB_RULES: Final[dict[str, dict[str, Checker]]] = {
    "announce": {"url": _media_url},
    "connect": {
        "dest": _dest, "reconnect": _boolean,
        "callerId": _string_rule(64, pattern=_CALLER_ID_RE, or_integer=True,
                                 pattern_msg='must be a URI user part (no spaces, <, >, " or @)'),
        "callerName": _string_rule(128), "ringtone": _media_url,
    },
    "response": {"code": _code, "reason": _string_rule(128), "headers": _headers},
    "pause": {"duration": _duration},
}
_REQUIRED: Final = {"announce": ("url",), "connect": ("dest",), "response": ("code",),
                    "pause": ("duration",)}


def _verb(c: _Check, item: Any, path: JsonPath) -> Verb | _Bad:
    if not isinstance(item, Mapping):
        return c.bad(path, f"expected a verb object, got {_got(item, path)}")
    if "verb" not in item:
        return c.bad(path, "missing 'verb'")
    verb = item["verb"]
    if not (isinstance(verb, str) and verb in _VERB_RULES):
        return c.bad((*path, "verb"), f"{_got(verb, (*path, 'verb'))} is not one of "
                                      f"{', '.join(VERBS)}")
    rules = _VERB_RULES[verb]
    before = len(c.errors)
    for name in _REQUIRED[verb]:
        if name not in item:
            c.bad(path, f"missing {name!r}")
    p: dict[str, Any] = {}
    for key, value in item.items():
        if key == "verb":
            continue
        where = (*path, str(key))
        if key == _LABEL:
            p[key] = _freeze(c, value, where)
        elif key in rules:
            p[key] = rules[key](c, value, where)
        else:
            known = (*rules, _LABEL)
            c.bad(where, f"unknown parameter of {verb}{_did_you_mean(str(key), known)}")
    if len(c.errors) > before:
        return _BAD
    label = p.get(_LABEL, UNSET)
    if verb == "announce":
        return AnnounceVerb(url=p["url"], status_label=label)
    if verb == "connect":
        return ConnectVerb(dests=p["dest"], reconnect=p.get("reconnect", False),
                           caller_id=p.get("callerId") or None,
                           caller_name=p.get("callerName") or None,
                           ringtone=p.get("ringtone"), status_label=label)
    if verb == "response":
        return ResponseVerb(code=p["code"], reason=p.get("reason") or None,
                            headers=p.get("headers", ()), status_label=label)
    return PauseVerb(duration=p["duration"], status_label=label)


def validate_callscript(value: Any) -> CallScript:
    """Check a CallHook's JSON value and return the typed CallScript.

    Raises ``CallScriptError`` (never anything else, whatever JSON ``value``
    is): the call flow answers 500 with ``str(error)`` as ``X-Reason`` and
    reports ``error.errors`` in its log/StatusHook event.
    """
    c = _Check()
    if not isinstance(value, list):
        c.bad((), "a CallScript must be a JSON array of verb objects, got "
                  f"{_TYPE_WORDS[_json_type(value)]}")
    elif not value:
        c.bad((), "a CallScript needs at least one verb")
    elif len(value) > MAX_VERBS:
        c.bad((), f"at most {MAX_VERBS} verbs allowed")
    else:
        verbs = [_verb(c, item, (i,)) for i, item in enumerate(value)]
        if not c.errors:
            return CallScript(tuple(verbs))  # type: ignore[arg-type]
    raise CallScriptError([(format_path(path), message) for path, message in c.errors])


def callscript_summary(script: CallScript) -> str:
    """One log-friendly line: verbs, destination types, codes — never addresses,
    URLs or credentials (``announce(file), connect[client,trunk], pause(5s)``)."""
    parts: list[str] = []
    for verb in script:
        if isinstance(verb, AnnounceVerb):
            parts.append("announce(file)" if verb.url[:5].lower() == "file:"
                         else "announce(http)")
        elif isinstance(verb, ConnectVerb):
            flag = "+reconnect" if verb.reconnect else ""
            parts.append(f"connect[{','.join(d.type for d in verb.dests)}]{flag}")
        elif isinstance(verb, ResponseVerb):
            parts.append(f"response({verb.code})")
        else:
            parts.append(f"pause({verb.duration}s)")
    return ", ".join(parts)


__all__ = [
    "DEFAULT_TIMEOUT", "DEST_TYPES", "VERBS", "AnnounceVerb", "CallScript",
    "CallScriptError", "ConnectVerb", "Destination", "FrozenDict", "PauseVerb",
    "ResponseVerb", "Verb", "callscript_schema", "callscript_summary",
    "format_path", "validate_callscript",
]
