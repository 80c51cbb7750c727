"""What ``file:`` CallHook templates can call and how values print: Handlebars-style
escaping, JavaScript text and truthiness, the comparison helpers (``eq``, ``gte``…) and
the clock helpers (``date``, ``inHours``, ``isDay``, ``dateIn``) — pure functions, used by
``engine.hooks.templates`` to build the sandboxed Jinja2 environment (spec §4.4, D-16).
"""

from __future__ import annotations

import math
import operator
import re
from collections.abc import Callable, Mapping
from datetime import UTC, datetime, tzinfo
from decimal import Decimal
from typing import Any, Final
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from jinja2 import Undefined
from markupsafe import Markup


class HelperError(Exception):
    """Raised by a helper on a bad argument; the renderer reports it as kind ``render``."""


# --------------------------------------------------------------------------- JS text & escaping

_HANDLEBARS_ESCAPES: Final = str.maketrans({
    "&": "&amp;", "<": "&lt;", ">": "&gt;", '"': "&quot;", "'": "&#x27;", "`": "&#x60;",
    "=": "&#x3D;",
})


def handlebars_escape(text: str) -> str:
    """Escape ``text`` exactly as Handlebars 4.7 ``escapeExpression`` does."""
    return text.translate(_HANDLEBARS_ESCAPES)


def _js_number(value: int | float) -> str:
    """JavaScript's ``String(number)`` for the values JSON can carry."""
    if math.isnan(value):
        return "NaN"
    if value in (float("inf"), float("-inf")):
        return "Infinity" if value > 0 else "-Infinity"
    if value == 0:
        return "0"  # also -0, as in JavaScript
    if isinstance(value, int) and abs(value) >= 10**21:
        value = float(value)  # JavaScript holds every number as a double
    number = Decimal(repr(value))
    if Decimal("1e-6") <= abs(number) < Decimal("1e21"):
        text = format(number, "f")
        return text.rstrip("0").rstrip(".") if "." in text else text
    # exponent form with the shortest digits, written "1e+21" / "1.5e-7" as JavaScript does
    sign, digits, exponent = number.normalize().as_tuple()
    assert isinstance(exponent, int)
    mantissa = "".join(map(str, digits))
    exp = exponent + len(mantissa) - 1
    head = mantissa[0] + ("." + mantissa[1:] if len(mantissa) > 1 else "")
    return ("-" if sign else "") + head + ("e+" if exp >= 0 else "e-") + str(abs(exp))


def js_string(value: Any) -> str:
    """The text JavaScript (and so Handlebars) prints for a JSON-like value.

    ``undefined``/``null`` → empty, booleans lower-case, numbers as JS writes
    them, arrays joined with ``,`` (null members empty), objects
    ``[object Object]`` — use ``tojson`` to embed structured values.
    """
    if value is None or isinstance(value, Undefined):
        return ""
    if isinstance(value, str):
        return str(value)
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return _js_number(value)
    if isinstance(value, list | tuple):
        return ",".join(js_string(v) for v in value)
    if isinstance(value, Mapping):
        return "[object Object]"
    return str(value)


def finalize(value: Any) -> str:
    # Runs on every {{ … }} result: Markup (from |raw or |tojson) is already
    # final, everything else is converted like JS and escaped like Handlebars.
    if isinstance(value, Markup):
        return str(value)
    return handlebars_escape(js_string(value))


def raw_filter(value: Any) -> Markup:
    """``{{ x | raw }}``: the value's text without escaping (Handlebars ``{{{x}}}``)."""
    return Markup(js_string(value))


def json_default(value: Any) -> Any:
    if isinstance(value, Undefined):
        return None
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


# --------------------------------------------------------------------------- date & helpers

WEEKDAYS: Final = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
_WEEKDAY_LOOKUP: Final = {name.lower(): name for name in WEEKDAYS}


def date_fields(instant: float, tz: tzinfo = UTC) -> dict[str, str]:
    """The ``date`` context object at ``instant`` (epoch seconds) in ``tz``.

    Every member is a string, as in the original (moment ``format`` output);
    ``time`` is 24-hour ``HH:mm`` (D-16 fix; the original printed 12-hour).
    """
    dt = datetime.fromtimestamp(instant, tz)
    return {
        "day": f"{dt.day:02d}",
        "month": f"{dt.month:02d}",
        "year": f"{dt.year:04d}",
        "dayname": WEEKDAYS[dt.weekday()],
        "dayofweek": str((dt.weekday() + 1) % 7),  # 0 = Sunday, as moment's "d"
        "hour": str(dt.hour),
        "minute": f"{dt.minute:02d}",
        "seconds": f"{dt.second:02d}",
        "time": f"{dt.hour:02d}:{dt.minute:02d}",
    }


def zone(name: Any) -> ZoneInfo:
    """The IANA zone ``name``; a bad name is a helper error (kind ``render``)."""
    if isinstance(name, Undefined) or not isinstance(name, str) or not name:
        raise HelperError(f"time zone must be an IANA name such as 'Europe/London', "
                           f"got {js_string(name)!r}")
    try:
        return ZoneInfo(name)
    except (ZoneInfoNotFoundError, ValueError, OSError):
        raise HelperError(f"unknown time zone {name[:60]!r}") from None


_CLOCK_TIME = re.compile(r"([01]?\d|2[0-4]):([0-5]\d)")


def _minute_of_day(text: Any, helper: str, *, end: bool) -> int:
    match = _CLOCK_TIME.fullmatch(text) if isinstance(text, str) else None
    if match is None:
        raise HelperError(f"{helper}: expected a 24-hour time 'HH:MM', got "
                           f"{js_string(text)[:20]!r}")
    hours, minutes = int(match[1]), int(match[2])
    if hours == 24 and (minutes or not end):
        raise HelperError(f"{helper}: 24:00 is only valid as the end of a range")
    return hours * 60 + minutes


def in_hours(instant: float, tz: Any, start: Any, end: Any) -> bool:
    """Wall-clock time at ``instant`` in ``tz`` lies in ``[start, end)``.

    Start is inclusive, end exclusive; ``start > end`` is a range crossing
    midnight (22:00–06:00); ``start == end`` is empty; ``24:00`` may end a
    range (00:00–24:00 is the whole day).
    """
    first = _minute_of_day(start, "inHours", end=False)
    last = _minute_of_day(end, "inHours", end=True)
    local = datetime.fromtimestamp(instant, zone(tz))
    now = local.hour * 60 + local.minute  # whole minutes: the bounds are whole minutes too
    if first <= last:
        return first <= now < last
    return now >= first or now < last


def is_day(instant: float, tz: Any, *names: Any) -> bool:
    """The English weekday at ``instant`` in ``tz`` is one of ``names`` (any case).

    A name that is not an English weekday is an error rather than a silent
    false, so a typo ("Satruday") shows up on the first call, not as wrong routing.
    """
    flat = [n for arg in names for n in (arg if isinstance(arg, list | tuple) else (arg,))]
    wanted: set[str] = set()
    for name in flat:
        canonical = _WEEKDAY_LOOKUP.get(name.lower()) if isinstance(name, str) else None
        if canonical is None:
            raise HelperError(f"isDay: {js_string(name)[:20]!r} is not an English weekday")
        wanted.add(canonical)
    return WEEKDAYS[datetime.fromtimestamp(instant, zone(tz)).weekday()] in wanted


_MISSING: Final = object()  # JS ``undefined`` inside the helpers (distinct from ``null``)


def _js_value(value: Any) -> Any:
    return _MISSING if isinstance(value, Undefined) else value


def _is_number(value: Any) -> bool:
    return isinstance(value, int | float) and not isinstance(value, bool)


def js_truthy(value: Any) -> bool:
    """JavaScript truthiness: only undefined, null, false, 0, NaN and "" are false."""
    value = _js_value(value)
    if value is _MISSING or value is None or value is False:
        return False
    if _is_number(value):
        return not math.isnan(value) and value != 0
    if isinstance(value, str):
        return value != ""
    return True


def eq(a: Any, b: Any) -> bool:
    """JavaScript ``===``: same type and value (no ``1 == "1"``, no ``true == 1``)."""
    a, b = _js_value(a), _js_value(b)
    if _is_number(a) and _is_number(b):
        return bool(a == b)
    if isinstance(a, str) and isinstance(b, str):
        return a == b
    if isinstance(a, bool) and isinstance(b, bool):
        return a is b
    # null, undefined, and objects/arrays (compared by identity, as in JavaScript)
    return a is b


def ne(a: Any, b: Any) -> bool:
    return not eq(a, b)


def _ordered(a: Any, b: Any) -> tuple[Any, Any] | None:
    # Numbers compare with numbers, strings with strings; anything else is
    # "not comparable" and every ordering helper answers false (no JS coercion).
    a, b = _js_value(a), _js_value(b)
    if (_is_number(a) and _is_number(b)) or (isinstance(a, str) and isinstance(b, str)):
        return a, b
    return None


def _ordering(name: str, op: Callable[[Any, Any], Any]) -> Callable[[Any, Any], bool]:
    def helper(a: Any, b: Any) -> bool:
        pair = _ordered(a, b)
        return pair is not None and bool(op(*pair))

    helper.__name__ = helper.__qualname__ = name
    return helper


lt = _ordering("lt", operator.lt)
gt = _ordering("gt", operator.gt)
lte = _ordering("lte", operator.le)
gte = _ordering("gte", operator.ge)


def and_(*values: Any) -> bool:
    """Handlebars ``and``: every argument JS-truthy (``and`` is a Jinja keyword)."""
    return all(js_truthy(v) for v in values)


def or_(*values: Any) -> bool:
    """Handlebars ``or``: any argument JS-truthy (``or`` is a Jinja keyword)."""
    return any(js_truthy(v) for v in values)


COMPARISONS: Final[dict[str, Callable[[Any, Any], bool]]] = {
    "eq": eq, "ne": ne, "lt": lt, "gt": gt, "lte": lte, "gte": gte,
}


__all__ = [
    "COMPARISONS", "WEEKDAYS", "HelperError", "and_", "date_fields", "eq", "finalize", "gt",
    "gte", "handlebars_escape", "in_hours", "is_day", "js_string", "js_truthy", "json_default",
    "lt", "lte", "ne", "or_", "raw_filter", "zone",
]
