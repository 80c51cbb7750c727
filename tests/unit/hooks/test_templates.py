"""file: CallHook templates: path rule and confinement (S-7), Handlebars-compatible
escaping, date fields and time helpers (D-16), typed errors, compile cache (spec §4.4)."""

from __future__ import annotations

import json
import os
import re
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

import pytest

from engine.errors import EngineError
from engine.hooks.callscript import validate_callscript
from engine.hooks.template_helpers import (
    and_,
    date_fields,
    eq,
    gt,
    gte,
    handlebars_escape,
    in_hours,
    is_day,
    js_truthy,
    lt,
    lte,
    ne,
    or_,
)
from engine.hooks.templates import (
    CallTemplateError,
    CallTemplates,
    is_file_callhook,
    template_name,
)
from engine.hooks.verbs import ConnectVerb, ResponseVerb

DOCS = Path(__file__).resolve().parents[3] / "docs" / "callhook-templates.md"


def at(text: str) -> float:
    """Epoch seconds of an ISO-8601 UTC instant."""
    return datetime.fromisoformat(text).replace(tzinfo=UTC).timestamp()


BODY: dict[str, Any] = {
    "domain": "pbx.example.com", "from": "1001", "to": "2000", "callId": "abc@host",
    "sourceAddress": "192.0.2.10", "headers": {"from": "<sip:1001@x>", "X-Tenant": "acme"},
    "source": "client", "refer": False, "count": 0,
}


@pytest.fixture
def base(tmp_path: Path) -> Path:
    """FILE_PATH with files, a sub-folder and symlinks in and out."""
    root = tmp_path / "files"
    (root / "sub").mkdir(parents=True)
    (root / "x.json").write_text('[{"verb": "pause", "duration": 1}]')
    (root / "sub" / "y.json").write_text('[{"verb": "pause", "duration": 2}]')
    (tmp_path / "secret.json").write_text('[{"verb": "pause", "duration": 666}]')
    os.symlink(root / "x.json", root / "inside-link.json")
    os.symlink(tmp_path / "secret.json", root / "outside-link.json")
    os.symlink(tmp_path, root / "up")
    os.symlink(root / "loop-b", root / "loop-a")
    os.symlink(root / "loop-a", root / "loop-b")
    return root


def make(base: Path, now: float = 0.0, **kwargs: Any) -> CallTemplates:
    return CallTemplates(base, now=lambda: now, **kwargs)


def write(base: Path, name: str, text: str) -> str:
    (base / name).write_text(text, encoding="utf-8")
    return f"file:{name}"


def error_of(templates: CallTemplates, callhook: str, body: dict[str, Any] | None = None
             ) -> CallTemplateError:
    with pytest.raises(CallTemplateError) as info:
        templates.render(callhook, BODY if body is None else body)
    return info.value


# --------------------------------------------------------------------------- path rule (S-7)

@pytest.mark.parametrize(("callhook", "duration"), [
    ("file:x.json", 1),
    ("file:/x.json", 1),
    ("file://x.json", 1),  # spec: FILE_PATH + "/" + "//x.json" — the same file
    ("file:///x.json", 1),
    ("FILE:/x.json", 1),
    ("file:./x.json", 1),
    ("file:/sub/y.json", 2),
    ("file:sub//y.json", 2),
    ("file:inside-link.json", 1),  # a symlink that stays inside is fine
])
def test_path_rule_resolves_under_file_path(base: Path, callhook: str, duration: int) -> None:
    assert make(base).render(callhook, BODY) == [{"verb": "pause", "duration": duration}]


@pytest.mark.parametrize(("callhook", "kind"), [
    ("file:../secret.json", "path"),
    ("file:/../secret.json", "path"),
    ("file://../secret.json", "path"),
    ("file:sub/../../secret.json", "path"),
    ("file:sub/../x.json", "path"),  # '..' is refused even when it would stay inside
    ("file:outside-link.json", "path"),  # symlink escape
    ("file:up/secret.json", "path"),  # directory symlink escape
    ("file:loop-a", "path"),  # symlink loop
    ("file:", "path"),
    ("file:///", "path"),
    ("file:x\x00.json", "path"),
    ("http://example.com/hook", "path"),
    ("x.json", "path"),
    ("file:missing.json", "not_found"),
    ("file:/etc/passwd", "not_found"),  # absolute paths are FILE_PATH-relative too
    ("file:sub", "io"),  # a directory
])
def test_path_confinement_table(base: Path, callhook: str, kind: str) -> None:
    err = error_of(make(base), callhook)
    assert err.kind == kind
    assert "666" not in str(err)
    assert str(base.parent) not in str(err)  # X-Reason never shows server paths


def test_absolute_path_never_reads_the_absolute_file(base: Path) -> None:
    (base / "etc").mkdir()
    (base / "etc" / "passwd").write_text('[{"verb": "pause", "duration": 7}]')
    assert make(base).render("file:/etc/passwd", BODY) == [{"verb": "pause", "duration": 7}]


def test_file_path_itself_may_be_a_symlink(tmp_path: Path, base: Path) -> None:
    link = tmp_path / "link-to-files"
    os.symlink(base, link)
    assert make(link).render("file:x.json", BODY) == [{"verb": "pause", "duration": 1}]


@pytest.mark.parametrize(("value", "expected"), [
    ("file:x", True), ("FILE:x", True), ("File://x", True), ("file", False),
    ("http://h/x", False), ("", False), (" file:x", False),
])
def test_is_file_callhook(value: str, expected: bool) -> None:
    assert is_file_callhook(value) is expected


def test_template_name_strips_leading_slashes_only() -> None:
    assert template_name("file:///a/b.json") == "a/b.json"
    assert template_name("file:a/./b.json") == "a/./b.json"


def test_oversized_and_non_utf8_files_are_io_errors(base: Path) -> None:
    (base / "big.json").write_text("[" + " " * 2000 + "]")
    assert error_of(make(base, max_template_bytes=1000), "file:big.json").kind == "io"
    (base / "latin1.json").write_bytes(b'["caf\xe9"]')
    err = error_of(make(base), "file:latin1.json")
    assert (err.kind, err.file) == ("io", "latin1.json")


def test_utf8_bom_is_accepted(base: Path) -> None:
    (base / "bom.json").write_bytes(b'\xef\xbb\xbf[{"verb": "pause", "duration": 3}]')
    assert make(base).render("file:bom.json", BODY) == [{"verb": "pause", "duration": 3}]


# --------------------------------------------------------------------------- escaping

# Expected strings are Handlebars 4.7.8 escapeExpression() output, byte for byte.
ESCAPES = [
    ("plain", "plain"),
    ("&", "&amp;"),
    ("<", "&lt;"),
    (">", "&gt;"),
    ('"', "&quot;"),
    ("'", "&#x27;"),
    ("`", "&#x60;"),
    ("=", "&#x3D;"),
    ("a=1&b<2>'`\"", "a&#x3D;1&amp;b&lt;2&gt;&#x27;&#x60;&quot;"),
    ("&amp;", "&amp;amp;"),  # no double-escape detection, as in Handlebars
    ("\\ / : ; \n", "\\ / : ; \n"),  # not escaped by Handlebars either
    ("café ☎ 電話", "café ☎ 電話"),
    ("", ""),
]


@pytest.mark.parametrize(("text", "expected"), ESCAPES)
def test_handlebars_escape_table(text: str, expected: str) -> None:
    assert handlebars_escape(text) == expected


@pytest.mark.parametrize(("text", "expected"), ESCAPES)
def test_mustache_output_escapes_like_handlebars(base: Path, text: str, expected: str) -> None:
    callhook = write(base, "esc.txt", "<{{ value }}>")
    assert make(base).render_text(callhook, {"value": text}) == f"<{expected}>"


@pytest.mark.parametrize(("value", "expected"), [
    (None, ""), (True, "true"), (False, "false"), (0, "0"), (-0.0, "0"), (42, "42"),
    (1.5, "1.5"), (2.0, "2"), (-3.25, "-3.25"), (0.000001, "0.000001"), (1e-7, "1e-7"),
    (1.5e-7, "1.5e-7"), (1e21, "1e+21"), (123456789012.5, "123456789012.5"),
    (10**21, "1e+21"), (float("nan"), "NaN"), (float("inf"), "Infinity"),
    ([1, None, "a&b", [2, 3]], "1,,a&amp;b,2,3"), ({"a": 1}, "[object Object]"),
    ([], ""),
])
def test_values_print_like_javascript(base: Path, value: Any, expected: str) -> None:
    callhook = write(base, "val.txt", "{{ value }}")
    assert make(base).render_text(callhook, {"value": value}) == expected


def test_missing_values_print_empty(base: Path) -> None:
    callhook = write(base, "missing.txt", "[{{ nothere }}|{{ headers.nope }}|{{ headers.a.b.c }}]")
    assert make(base).render_text(callhook, BODY) == "[||]"


def test_raw_filter_is_unescaped(base: Path) -> None:
    callhook = write(base, "raw.txt", "{{ value|raw }}|{{ flag|raw }}|{{ value }}")
    out = make(base).render_text(callhook, {"value": "a<b>&\"'`=", "flag": True})
    assert out == "a<b>&\"'`=|true|a&lt;b&gt;&amp;&quot;&#x27;&#x60;&#x3D;"


def test_raw_must_be_the_last_step(base: Path) -> None:
    # As documented: concatenation yields plain text again, which is escaped.
    callhook = write(base, "rawcat.txt", "{{ (a ~ b)|raw }}|{{ a ~ b|raw }}|{{ b|raw ~ a }}")
    out = make(base).render_text(callhook, {"a": "<a>", "b": "<b>"})
    assert out == "<a><b>|&lt;a&gt;&lt;b&gt;|&lt;b&gt;&lt;a&gt;"


@pytest.mark.parametrize("value", [
    'quote " and \\ backslash', "line\nbreak\ttab", "</script><!--", "it's & <ok>",
    "café ☎", "", None, 12, [1, "two", {"three": 3}], {"z": 1, "a": 2},
])
def test_tojson_embeds_any_value_safely(base: Path, value: Any) -> None:
    callhook = write(base, "tojson.json", '{"v": {{ value|tojson }}}')
    templates = make(base)
    assert templates.render(callhook, {"value": value}) == {"v": value}
    text = templates.render_text(callhook, {"value": value})
    assert "<" not in text and "&" not in text and "'" not in text


def test_tojson_keeps_member_order_and_maps_missing_to_null(base: Path) -> None:
    callhook = write(base, "order.json", "[{{ value|tojson }}, {{ nothere|tojson }}]")
    text = make(base).render_text(callhook, {"value": {"z": 1, "a": 2}})
    assert text == '[{"z": 1, "a": 2}, null]'


def test_unescaped_backslash_breaks_json_but_tojson_does_not(base: Path) -> None:
    # Why the docs recommend tojson for caller-controlled values.
    quoted = write(base, "quoted.json", '["{{ from }}"]')
    safe = write(base, "safe.json", "[{{ from|tojson }}]")
    body = {**BODY, "from": "evil\\"}
    assert error_of(make(base), quoted, body).kind == "json"
    assert make(base).render(safe, body) == ["evil\\"]


# --------------------------------------------------------------------------- date fields

@pytest.mark.parametrize(("instant", "expected"), [
    ("2026-03-07T14:05:09", {"day": "07", "month": "03", "year": "2026", "dayname": "Saturday",
                             "dayofweek": "6", "hour": "14", "minute": "05", "seconds": "09",
                             "time": "14:05"}),
    ("2026-03-08T00:00:00", {"day": "08", "month": "03", "year": "2026", "dayname": "Sunday",
                             "dayofweek": "0", "hour": "0", "minute": "00", "seconds": "00",
                             "time": "00:00"}),
    ("2025-12-31T23:59:59", {"day": "31", "month": "12", "year": "2025",
                             "dayname": "Wednesday", "dayofweek": "3", "hour": "23",
                             "minute": "59", "seconds": "59", "time": "23:59"}),
    ("2026-01-05T12:30:00", {"day": "05", "month": "01", "year": "2026", "dayname": "Monday",
                             "dayofweek": "1", "hour": "12", "minute": "30", "seconds": "00",
                             "time": "12:30"}),
])
def test_date_fields_at_frozen_instant(instant: str, expected: dict[str, str]) -> None:
    assert date_fields(at(instant)) == expected


def test_date_in_template_is_utc_and_24_hour(base: Path) -> None:
    callhook = write(base, "date.json", "{{ date|tojson }}")
    out = make(base, at("2026-03-07T14:05:09")).render(callhook, BODY)
    assert out["time"] == "14:05"  # D-16: the original printed "02:05"
    assert out == date_fields(at("2026-03-07T14:05:09"))


def test_date_in_helper_uses_the_zone(base: Path) -> None:
    callhook = write(base, "datein.json", '{{ dateIn("Asia/Tokyo")|tojson }}')
    out = make(base, at("2026-03-07T20:30:00")).render(callhook, BODY)
    assert (out["dayname"], out["day"], out["time"], out["hour"]) == (
        "Sunday", "08", "05:30", "5")


def test_one_instant_per_render(base: Path) -> None:
    # A clock that moves on every read: date and helpers must still agree.
    ticks = iter([at("2026-03-07T14:59:59"), at("2026-03-07T15:00:00")])
    templates = CallTemplates(base, now=lambda: next(ticks))
    callhook = write(base, "same.json",
                     '[{{ date.time|tojson }}, {{ inHours("UTC", "15:00", "16:00")|tojson }}]')
    assert templates.render(callhook, BODY) == ["14:59", False]


# --------------------------------------------------------------------------- inHours / isDay

IN_HOURS = [
    # (UTC instant, tz, start, end, expected)
    ("2026-03-09T09:00:00", "Europe/London", "09:00", "17:00", True),   # inclusive start (GMT)
    ("2026-03-09T08:59:59", "Europe/London", "09:00", "17:00", False),
    ("2026-03-09T14:30:00", "Europe/London", "09:00", "17:00", True),   # afternoon (D-16)
    ("2026-03-09T16:59:59", "Europe/London", "09:00", "17:00", True),
    ("2026-03-09T17:00:00", "Europe/London", "09:00", "17:00", False),  # exclusive end
    ("2026-03-09T02:30:00", "Europe/London", "09:00", "17:00", False),  # 02:30 ≠ 14:30
    ("2026-07-01T08:30:00", "Europe/London", "09:00", "17:00", True),   # 09:30 BST
    ("2026-07-01T08:30:00", "UTC", "09:00", "17:00", False),
    ("2026-07-01T02:00:00", "America/New_York", "21:00", "23:00", True),  # 22:00 EDT, day before
    ("2026-03-09T03:30:00", "Asia/Kolkata", "09:00", "17:00", True),    # 09:00 IST (+05:30)
    ("2026-03-09T03:29:00", "Asia/Kolkata", "09:00", "17:00", False),
    ("2026-03-09T23:30:00", "UTC", "22:00", "06:00", True),             # crosses midnight
    ("2026-03-09T22:00:00", "UTC", "22:00", "06:00", True),
    ("2026-03-10T05:59:00", "UTC", "22:00", "06:00", True),
    ("2026-03-10T06:00:00", "UTC", "22:00", "06:00", False),
    ("2026-03-10T12:00:00", "UTC", "22:00", "06:00", False),
    ("2026-03-10T13:00:00", "Australia/Sydney", "22:00", "06:00", True),  # 00:00 AEDT
    ("2026-03-10T12:00:00", "UTC", "12:00", "12:00", False),            # empty range
    ("2026-03-10T00:00:00", "UTC", "00:00", "24:00", True),             # whole day
    ("2026-03-10T23:59:59", "UTC", "00:00", "24:00", True),
    ("2026-03-10T13:05:00", "UTC", "1:00", "13:06", True),              # one-digit hour
]


@pytest.mark.parametrize(("instant", "tz", "start", "end", "expected"), IN_HOURS)
def test_in_hours_table(instant: str, tz: str, start: str, end: str, expected: bool) -> None:
    assert in_hours(at(instant), tz, start, end) is expected


@pytest.mark.parametrize(("instant", "tz", "start", "end", "expected"), IN_HOURS[:8])
def test_in_hours_in_template(base: Path, instant: str, tz: str, start: str, end: str,
                              expected: bool) -> None:
    callhook = write(base, "hours.json",
                     '{% if inHours(tz, start, end) %}"in"{% else %}"out"{% endif %}')
    ctx = {**BODY, "tz": tz, "start": start, "end": end}
    assert make(base, at(instant)).render(callhook, ctx) == ("in" if expected else "out")


IS_DAY = [
    ("2026-03-07T14:00:00", "UTC", ("Saturday",), True),
    ("2026-03-07T14:00:00", "UTC", ("saturday",), True),
    ("2026-03-07T14:00:00", "UTC", ("SATURDAY", "sunday"), True),
    ("2026-03-07T14:00:00", "UTC", ("Sunday", "Monday"), False),
    ("2026-03-07T14:00:00", "Pacific/Auckland", ("Sunday",), True),      # 03:00 NZDT Sunday
    ("2026-03-07T05:00:00", "America/Los_Angeles", ("Friday",), True),   # 21:00 PST Friday
    ("2026-03-07T05:00:00", "America/Los_Angeles", ("Saturday",), False),
    ("2026-03-07T14:00:00", "UTC", (["Saturday", "Sunday"],), True),     # a list works too
    ("2026-03-07T14:00:00", "UTC", (), False),
]


@pytest.mark.parametrize(("instant", "tz", "names", "expected"), IS_DAY)
def test_is_day_table(instant: str, tz: str, names: tuple[Any, ...], expected: bool) -> None:
    assert is_day(at(instant), tz, *names) is expected


def test_is_day_in_template(base: Path) -> None:
    callhook = write(base, "day.json", '{{ isDay("Europe/London", "Saturday", "Sunday")|tojson }}')
    assert make(base, at("2026-03-07T10:00:00")).render(callhook, BODY) is True
    assert make(base, at("2026-03-09T10:00:00")).render(callhook, BODY) is False


@pytest.mark.parametrize(("expression", "fragment"), [
    ('inHours("Mars/Olympus", "09:00", "17:00")', "unknown time zone 'Mars/Olympus'"),
    ('inHours("../../etc/passwd", "09:00", "17:00")', "unknown time zone"),
    ('inHours("", "09:00", "17:00")', "time zone must be an IANA name"),
    ('inHours(nothere, "09:00", "17:00")', "time zone must be an IANA name"),
    ('inHours("UTC", "9am", "17:00")', "expected a 24-hour time 'HH:MM', got '9am'"),
    ('inHours("UTC", "25:00", "17:00")', "expected a 24-hour time"),
    ('inHours("UTC", "09:60", "17:00")', "expected a 24-hour time"),
    ('inHours("UTC", "24:00", "17:00")', "24:00 is only valid as the end"),
    ('inHours("UTC", "09:00", "24:30")', "24:00 is only valid as the end"),
    ('inHours("UTC", 9, 17)', "expected a 24-hour time"),
    ('isDay("UTC", "Satruday")', "'Satruday' is not an English weekday"),
    ('isDay("Nowhere/City", "Monday")', "unknown time zone"),
    ('dateIn("Nowhere/City")', "unknown time zone"),
])
def test_helper_argument_errors_are_render_errors(base: Path, expression: str,
                                                  fragment: str) -> None:
    callhook = write(base, "bad.json", "[\n{{ " + expression + " }}\n]")
    err = error_of(make(base), callhook)
    assert err.kind == "render"
    assert fragment in str(err)
    assert err.line == 2
    assert str(err).startswith("template 'bad.json' line 2: ")


# --------------------------------------------------------------------------- comparison helpers

@pytest.mark.parametrize(("a", "b", "expected"), [
    (1, 1, True), (1, 1.0, True), (1, "1", False), (True, 1, False), (True, True, True),
    (False, 0, False), ("a", "a", True), ("a", "A", False), (None, None, True),
    ([], [], False),  # objects compare by identity, as JavaScript ===
])
def test_eq_is_strict(a: Any, b: Any, expected: bool) -> None:
    assert eq(a, b) is expected
    assert ne(a, b) is (not expected)


@pytest.mark.parametrize(("a", "b", "lt_", "gt_", "lte_", "gte_"), [
    (1, 2, True, False, True, False),
    (2, 2, False, False, True, True),
    (2.5, 2, False, True, False, True),
    ("0900", "1000", True, False, True, False),
    ("b", "a", False, True, False, True),
    (1, "2", False, False, False, False),  # mixed types: false, no coercion
    (None, 0, False, False, False, False),
    (True, 0, False, False, False, False),
    (float("nan"), 1, False, False, False, False),
])
def test_ordering_helpers(a: Any, b: Any, lt_: bool, gt_: bool, lte_: bool,
                          gte_: bool) -> None:
    assert (lt(a, b), gt(a, b), lte(a, b), gte(a, b)) == (lt_, gt_, lte_, gte_)


@pytest.mark.parametrize(("value", "truthy"), [
    (None, False), (False, False), (0, False), (0.0, False), (float("nan"), False),
    ("", False), (True, True), (1, True), ("0", True), ("false", True), ([], True),
    ({}, True),
])
def test_js_truthiness(value: Any, truthy: bool) -> None:
    assert js_truthy(value) is truthy
    assert and_(True, value) is truthy
    assert or_(False, value) is truthy


def test_and_or_edge_cases() -> None:
    assert and_() is True
    assert or_() is False
    assert and_(1, "x", []) is True
    assert or_(0, "", None) is False


def test_helpers_in_template_with_missing_values(base: Path) -> None:
    # count is absent on REFER fetches: the helpers treat it as undefined.
    callhook = write(base, "cmp.json", "[{{ gte(count, 1)|tojson }},"
                     " {{ eq(count, nothere)|tojson }}, {{ eq(count, none)|tojson }},"
                     " {{ (count is gte 1)|tojson }},"
                     " {{ and_(refer, from)|tojson }}, {{ or_(count, from)|tojson }},"
                     " {{ (to is eq \"2000\")|tojson }}, {{ (3 is le 3)|tojson }}]")
    body = {k: v for k, v in BODY.items() if k != "count"}
    assert make(base).render(callhook, body) == [False, True, False, False, False, True, True,
                                                 True]


def test_jinja_native_comparison_with_missing_value_is_undefined_error(base: Path) -> None:
    callhook = write(base, "native.json", "{% if count >= 1 %}1{% else %}0{% endif %}")
    err = error_of(make(base), callhook, {k: v for k, v in BODY.items() if k != "count"})
    assert (err.kind, err.line) == ("undefined", 1)
    assert "'count' is undefined" in str(err)


# --------------------------------------------------------------------------- context

def test_every_body_field_is_available(base: Path) -> None:
    callhook = write(base, "ctx.json", """{
  "domain": {{ domain|tojson }}, "from": {{ from|tojson }}, "to": {{ to|tojson }},
  "callId": {{ callId|tojson }}, "sourceAddress": {{ sourceAddress|tojson }},
  "tenant": {{ headers["X-Tenant"]|tojson }}, "fromHeader": {{ headers.from|tojson }},
  "source": {{ source|tojson }}, "refer": {{ refer|tojson }}, "count": {{ count|tojson }}
}""")
    body = {**BODY, "source": {"id": 3, "name": "carrier"}}
    assert make(base).render(callhook, body) == {
        "domain": "pbx.example.com", "from": "1001", "to": "2000", "callId": "abc@host",
        "sourceAddress": "192.0.2.10", "tenant": "acme", "fromHeader": "<sip:1001@x>",
        "source": {"id": 3, "name": "carrier"}, "refer": False, "count": 0}


def test_sandbox_refuses_mutation_and_internals(base: Path) -> None:
    body = {**BODY, "headers": {"a": "1"}}
    mutate = write(base, "mutate.json", '{{ headers.update({"b": "2"}) }}[]')
    err = error_of(make(base), mutate, body)
    assert err.kind == "render"
    assert "not allowed" in str(err)
    assert body["headers"] == {"a": "1"}
    internals = write(base, "internals.json",
                      "[{{ ''.__class__.__mro__|tojson }}, {{ callId.__class__|tojson }}]")
    assert make(base).render(internals, BODY) == [None, None]  # unsafe attributes are undefined


def test_include_is_not_supported(base: Path) -> None:
    callhook = write(base, "inc.json", '{% include "x.json" %}')
    err = error_of(make(base), callhook)
    assert err.kind == "render"
    assert "include/import/extends are not supported" in str(err)


def test_output_size_is_bounded(base: Path) -> None:
    callhook = write(base, "loop.json", "[{% for i in range(10000) %}1,{% endfor %}1]")
    assert len(make(base).render(callhook, BODY)) == 10001
    err = error_of(make(base, max_output_bytes=1000), callhook)
    assert err.kind == "render"
    assert "output larger than 1000" in str(err)


# --------------------------------------------------------------------------- typed errors

@pytest.mark.parametrize(("source", "kind", "line", "fragment"), [
    ('[\n{"verb": "pause"},\n{% if %}\n]', "syntax", 3, "Expected an expression"),
    ("[\n{% for x in y %}\n]", "syntax", 2, "Unexpected end of template"),
    ("[\n{{ nothere() }}\n]", "undefined", 2, "'nothere' is undefined"),
    ("[\n\n{{ 1 / 0 }}\n]", "render", 3, "ZeroDivisionError"),
    ('[{"verb": "pause",}]', "json", None, "output is not JSON"),
    ("[1,\n 2,\n 3", "json", None, "(output line 3 column 3)"),
    ("", "json", None, "output is not JSON"),
    ("[NaN]", "json", None, "NaN is not valid JSON"),
    ("[Infinity]", "json", None, "Infinity is not valid JSON"),
    ("{{ 'a' }} {{ 'b' }}", "json", None, "output is not JSON"),
])
def test_errors_are_typed_with_file_and_line(base: Path, source: str, kind: str,
                                             line: int | None, fragment: str) -> None:
    callhook = write(base, "broken.json", source)
    err = error_of(make(base), callhook)
    assert (err.kind, err.line, err.file) == (kind, line, "broken.json")
    assert fragment in str(err)
    text = str(err)
    assert text.startswith("template 'broken.json'" + (f" line {line}" if line else "") + ": ")
    assert "\n" not in text and "\r" not in text and len(text) <= 200
    assert isinstance(err, EngineError)


def test_error_message_is_one_bounded_line(base: Path) -> None:
    callhook = write(base, "long.json", '{{ isDay("UTC", "' + "x" * 500 + '\\n\\r") }}')
    text = str(error_of(make(base), callhook))
    assert len(text) <= 200 and "\n" not in text and "\r" not in text


def test_unknown_kind_is_a_programming_error() -> None:
    with pytest.raises(ValueError, match="unknown CallTemplateError kind"):
        CallTemplateError("oops", "f", "detail")


# --------------------------------------------------------------------------- cache

class CompileCounter:
    def __init__(self, templates: CallTemplates, monkeypatch: pytest.MonkeyPatch) -> None:
        self.count = 0
        env = templates._env
        original = env.compile

        def counting(*args: Any, **kwargs: Any) -> Any:
            self.count += 1
            return original(*args, **kwargs)

        monkeypatch.setattr(env, "compile", counting)


def test_compiled_once_and_not_reread(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    templates = make(base)
    counter = CompileCounter(templates, monkeypatch)
    reads = []
    original_open = Path.open

    def counting_open(self: Path, *args: Any, **kwargs: Any) -> Any:
        reads.append(self.name)
        return original_open(self, *args, **kwargs)

    monkeypatch.setattr(Path, "open", counting_open)
    for _ in range(5):
        assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 1}]
    assert counter.count == 1
    assert reads == ["x.json"]
    # leading-slash spellings name the same file and share the entry
    templates.render("file:///x.json", BODY)
    assert counter.count == 1


def test_cache_invalidated_on_rewrite_with_new_size(base: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    templates = make(base)
    counter = CompileCounter(templates, monkeypatch)
    assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 1}]
    (base / "x.json").write_text('[{"verb": "pause", "duration": 10}]')
    assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 10}]
    assert counter.count == 2


def test_cache_invalidated_on_same_size_rewrite(base: Path) -> None:
    templates = make(base)
    path = base / "x.json"
    assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 1}]
    before = path.stat()
    path.write_text('[{"verb": "pause", "duration": 9}]')
    # force a different mtime even on a coarse-grained file system
    os.utime(path, ns=(before.st_atime_ns, before.st_mtime_ns + 1_000_000_000))
    assert path.stat().st_size == before.st_size
    assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 9}]


def test_cache_invalidated_on_atomic_replace(base: Path) -> None:
    templates = make(base)
    assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 1}]
    tmp = base / "x.json.tmp"
    tmp.write_text('[{"verb": "pause", "duration": 4}]')
    st = (base / "x.json").stat()
    os.utime(tmp, ns=(st.st_atime_ns, st.st_mtime_ns))  # same mtime and size: new inode
    os.replace(tmp, base / "x.json")
    assert templates.render("file:x.json", BODY) == [{"verb": "pause", "duration": 4}]


def test_syntax_error_cached_until_fixed(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    callhook = write(base, "fix.json", "[{% if %}]")
    templates = make(base)
    counter = CompileCounter(templates, monkeypatch)
    for _ in range(3):
        assert error_of(templates, callhook).kind == "syntax"
    assert counter.count == 1
    write(base, "fix.json", '[{"verb": "pause", "duration": 5}]')
    assert templates.render(callhook, BODY) == [{"verb": "pause", "duration": 5}]


def test_deleted_file_is_not_served_from_cache(base: Path) -> None:
    templates = make(base)
    templates.render("file:x.json", BODY)
    (base / "x.json").unlink()
    assert error_of(templates, "file:x.json").kind == "not_found"


def test_symlink_retargeted_outside_is_refused_despite_cache(base: Path, tmp_path: Path) -> None:
    templates = make(base)
    assert templates.render("file:inside-link.json", BODY) == [{"verb": "pause", "duration": 1}]
    (base / "inside-link.json").unlink()
    os.symlink(tmp_path / "secret.json", base / "inside-link.json")
    assert error_of(templates, "file:inside-link.json").kind == "path"


def test_cache_is_bounded(base: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    for name in ("a", "b", "c"):
        write(base, f"{name}.json", "[]")
    templates = make(base, cache_size=2)
    counter = CompileCounter(templates, monkeypatch)
    for name in ("a", "b", "c", "c", "a"):
        templates.render(f"file:{name}.json", BODY)
    assert counter.count == 4  # a was evicted by c and compiled again


# --------------------------------------------------------------------------- docs examples

def doc_examples() -> dict[str, str]:
    text = DOCS.read_text(encoding="utf-8")
    found = re.findall(r"<!-- example: ([\w-]+) -->\n```jinja\n(.*?)```", text, re.S)
    return dict(found)


def render_example(base: Path, name: str, instant: str, **body: Any) -> Any:
    (base / f"{name}.json").write_text(doc_examples()[name], encoding="utf-8")
    value = make(base, at(instant)).render(f"file:/{name}.json", {**BODY, **body})
    return validate_callscript(value)


def test_docs_have_the_four_examples() -> None:
    assert set(doc_examples()) == {"business-hours", "weekend", "from-to", "retry"}


@pytest.mark.parametrize(("instant", "open_"), [
    ("2026-03-09T14:30:00", True),    # Monday afternoon GMT
    ("2026-03-09T17:29:00", True),
    ("2026-03-09T17:30:00", False),   # exclusive end
    ("2026-07-06T16:45:00", False),   # Monday 17:45 BST
    ("2026-03-07T12:00:00", False),   # Saturday
])
def test_doc_business_hours(base: Path, instant: str, open_: bool) -> None:
    script = render_example(base, "business-hours", instant)
    first = script[0]
    if open_:
        assert isinstance(first, ConnectVerb)
        assert [d.address for d in first.dests] == ["reception", "reception-mobile"]
    else:
        assert isinstance(script[1], ResponseVerb)
        assert script[1].code == 480


@pytest.mark.parametrize(("instant", "route"), [
    ("2026-03-07T15:00:00", "on-call"),   # Saturday 10:00 EST
    ("2026-03-09T15:00:00", "office"),    # Monday 11:00 EST
    ("2026-03-10T03:30:00", "on-call"),   # Monday 23:30 EDT... night shift
])
def test_doc_weekend(base: Path, instant: str, route: str) -> None:
    verb = render_example(base, "weekend", instant)[0]
    assert isinstance(verb, ConnectVerb)
    assert verb.status_label["route"] == route
    assert verb.dests[0].type == ("sip" if route == "on-call" else "trunk")


@pytest.mark.parametrize(("from_", "to", "dest_type", "timeout"), [
    ("1001", "2000", "client", 60.0),
    ("1003", "0044123", "trunk", 30.0),
    ("1003", "+1555", "trunk", 30.0),
    ("1003", "2000", "client", 30.0),
    ('we"ird\\', 'odd"to\\', "client", 30.0),  # caller-controlled text stays valid JSON
])
def test_doc_from_to(base: Path, from_: str, to: str, dest_type: str, timeout: float) -> None:
    verb = render_example(base, "from-to", "2026-03-09T10:00:00", **{"from": from_, "to": to})[0]
    assert isinstance(verb, ConnectVerb)
    assert (verb.dests[0].type, verb.dests[0].address, verb.dests[0].timeout) == (
        dest_type, to, timeout)


@pytest.mark.parametrize(("count", "first_verb", "length"), [
    (0, "connect", 1), (1, "announce", 2), (2, "announce", 2), (None, "connect", 1),
])
def test_doc_retry(base: Path, count: int | None, first_verb: str, length: int) -> None:
    body = {"count": count} if count is not None else {"refer": True}
    template = doc_examples()["retry"]
    (base / "retry.json").write_text(template, encoding="utf-8")
    ctx = {**BODY, **body}
    if count is None:
        ctx.pop("count")
    script = validate_callscript(make(base).render("file:retry.json", ctx))
    assert (script[0].name, len(script)) == (first_verb, length)
    if count == 2:
        assert script[1].status_label == {"attempts": 2}


def test_from_settings_uses_file_path(tmp_path: Path, base: Path) -> None:
    class Settings:
        file_path = base

    templates = CallTemplates.from_settings(Settings(), now=lambda: 0.0)
    assert templates.root == base.resolve()
    assert json.loads(json.dumps(templates.render("file:x.json", BODY))) == [
        {"verb": "pause", "duration": 1}]
