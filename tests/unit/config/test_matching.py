"""Glob, dialplan precedence and CIDR tables (engine/config/matching.py)."""

from __future__ import annotations

import ipaddress

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.matching import (
    Dialplan,
    DialplanError,
    DialplanMatch,
    FirstMatch,
    NetworkTable,
    PatternError,
    compile_glob,
    dialplan_from_json,
    glob_match,
    is_array_index,
    js_key_order,
    parse_address,
    parse_network,
)

GLOBS = [
    # literal
    ("1000", "1000", True), ("1000", "10000", False), ("abc", "ABC", False),
    # ? and *
    ("1???", "1234", True), ("1???", "123", False), ("1???", "12345", False),
    ("*", "anything", True), ("*", "", False), ("a*b", "ab", True), ("a*b", "axxb", True),
    ("1*", "1", True), ("**", "12", True),
    # neither crosses "/" nor matches a leading "."
    ("a*b", "a/b", False), ("*", "a/b", False), ("a/*", "a/b", True), ("a/*", "a/.b", False),
    ("*", ".hidden", False), ("?abc", ".abc", False), (".*", ".x", True), ("*.txt", ".txt", False),
    ("[.]x", ".x", False),
    # brace alternatives
    ("{999,112}", "999", True), ("{999,112}", "112", True), ("{999,112}", "911", False),
    ("{1{0,1},2}", "11", True), ("{1{0,1},2}", "12", False), ("{1{0,1},2}", "2", True),
    ("0{,0}44*", "0044123", True), ("0{,0}44*", "044123", True),
    ("{a}", "{a}", True), ("{a}", "a", False), ("{}", "{}", True), ("x{", "x{", True),
    # numeric and alphabetic ranges
    ("{1..5}", "3", True), ("{1..5}", "6", False), ("{5..1}", "2", True),
    ("{01..10}", "01", True), ("{01..10}", "1", False), ("{01..10}", "10", True),
    ("{1..10..3}", "7", True), ("{1..10..3}", "8", False), ("{-2..2}", "-1", True),
    ("{a..c}", "b", True), ("{a..c}", "d", False), ("2{000..199}", "2150", True),
    ("2{000..199}", "2200", False),
    # classes
    ("[0-9]", "5", True), ("[0-9]", "a", False), ("[!0-9]", "a", True), ("[!0-9]", "5", False),
    ("[^0-9]", "5", False), ("[^0-9]", "x", True), ("[]]", "]", True), ("[a-]", "-", True),
    ("[[:digit:]]*", "5x", True), ("[[:alpha:]]", "5", False), ("[0-9][0-9]", "42", True),
    ("[", "[", True), ("[0-9", "[0-9", True), ("[!/]", "/", False),
    # escapes
    ("\\*", "*", True), ("\\*", "x", False), ("\\?", "?", True), ("a\\{1,2\\}", "a{1,2}", True),
    ("\\[0-9]", "[0-9]", True), ("trail\\", "trail\\", True), ("\\!x", "!x", True),
    # characters that only start an extglob when followed by "(…)"
    ("+44*", "+441234", True), ("@home", "@home", True), ("12*(", "123(", True),
    # "!" (lone negation) and "#" (comment) keys never match
    ("!1000", "1000", False), ("!*", "x", False), ("#1000", "1000", False), ("#*", "#1", False),
]


@pytest.mark.parametrize(("pattern", "subject", "expected"), GLOBS)
def test_glob(pattern: str, subject: str, expected: bool) -> None:
    assert glob_match(pattern, subject) is expected


def test_missing_subject_matches_nothing() -> None:
    assert not compile_glob("*").match(None)
    assert not compile_glob("").match("")


@pytest.mark.parametrize("pattern", ["+(1|2)", "@(a|b)", "!(5)", "?(1)", "*(1)", "1+(2)",
                                     "12@(3|4)*", "{a,+(b)}"])
def test_extglob_is_refused(pattern: str) -> None:
    with pytest.raises(PatternError) as info:
        compile_glob(pattern)
    assert info.value.code == "CONFIG_EXTGLOB"
    assert "not supported" in info.value.reason


@pytest.mark.parametrize(("pattern", "fragment"), [
    ("[9-0]", "bad character range"),
    ("[[:foo:]]", "unknown character class"),
    ("{1..100000}", "more than"),
])
def test_invalid_patterns(pattern: str, fragment: str) -> None:
    with pytest.raises(PatternError) as info:
        compile_glob(pattern)
    assert info.value.code == "CONFIG_PATTERN"
    assert fragment in info.value.reason


def test_compiled_once() -> None:
    assert compile_glob("1???x") is compile_glob("1???x")


def test_literal_patterns_skip_regex() -> None:
    glob = compile_glob("10\\*0")
    assert glob.literal == "10*0" and glob.regex is None


@pytest.mark.parametrize(("key", "expected"), [
    ("0", True), ("999", True), ("1000", True), ("0123", False), ("-1", False),
    ("4294967294", True), ("4294967295", False), ("1e3", False), ("١", False), ("", False),
    ("1.5", False), ("*", False),
])
def test_is_array_index(key: str, expected: bool) -> None:
    assert is_array_index(key) is expected


def test_js_key_order() -> None:
    keys = ["*", "1000", "0123", "2", "1???", "0"]
    assert js_key_order(keys) == ["0", "2", "1000", "*", "0123", "1???"]


# --------------------------------------------------------------------------- precedence


def winner(plan: Dialplan, subject: str) -> str | None:
    match = plan.match(subject)
    return match.pattern if match is not None else None


A, B, C, D, E = (f"http://hooks.example/{x}" for x in "abcde")
PLAN = {"*": A, "1???": B, "1000": C, "10*": D, "{999,112}": E, "#comment": "http://x/c",
        "!1000": "http://x/neg"}

PRECEDENCE_TABLE = [
    # subject, specific winner, legacy winner
    ("1000", ("1000", C), ("10*", D)),  # exact wins / an exact number loses to wildcards
    ("1001", ("1???", B), ("10*", D)),  # fewest "*" / last in document order
    ("1002x", ("10*", D), ("10*", D)),  # longer literal beats bare "*"
    ("1999", ("1???", B), ("1???", B)),
    ("999", ("{999,112}", E), ("{999,112}", E)),
    ("5", ("*", A), ("*", A)),
    ("#comment", ("*", A), ("*", A)),
]


@pytest.mark.parametrize(("subject", "specific", "legacy"), PRECEDENCE_TABLE)
def test_precedence(subject: str, specific: tuple[str, str], legacy: tuple[str, str]) -> None:
    for mode, (pattern, hook) in (("specific", specific), ("legacy", legacy)):
        match = Dialplan(PLAN, mode).match(subject)
        assert match == DialplanMatch(pattern, hook, None), mode


def test_legacy_exact_number_loses_to_later_star() -> None:
    plan = {"*": A, "1000": B}
    assert winner(Dialplan(plan, "legacy"), "1000") == "*"
    assert winner(Dialplan(plan, "specific"), "1000") == "1000"


def test_legacy_array_index_keys_come_first_numerically() -> None:
    plan = {"10": A, "2": B, "0123": C}
    # JS order: "2", "10", then "0123"; "0123" only matches itself
    assert winner(Dialplan(plan, "legacy"), "10") == "10"
    plan = {"1*": A, "10": B}
    # JS order: "10", "1*" → the wildcard is later and wins
    assert winner(Dialplan(plan, "legacy"), "10") == "1*"
    assert winner(Dialplan(plan, "specific"), "10") == "10"


@pytest.mark.parametrize(("plan", "expected"), [
    ({"1*": A, "*1": B}, "1*"),  # same shape: document order
    ({"*1": B, "1*": A}, "*1"),
    ({"1?": A, "1[0-9]": B}, "1?"),  # "?" and a class weigh the same
    ({"*": A, "1?1": B}, "1?1"),  # any number of "?" beats a "*"
    ({"1*1": A, "11*": B}, "1*1"),
])
def test_specific_tie_breaks(plan: dict[str, str], expected: str) -> None:
    assert winner(Dialplan(plan), "11" if expected != "1?1" else "101") == expected


@pytest.mark.parametrize("mode", ["specific", "legacy"])
def test_empty_value_blocks(mode: str) -> None:
    plan = Dialplan({"*": A, "09*": ""}, mode)
    assert plan.match("0900") is None
    assert plan.match("0100") == DialplanMatch("*", A)


def test_dialplan_values() -> None:
    plan = Dialplan({
        "1": A,
        "2": {"callHook": B, "statusHook": C},
        "3": {"callHook": B, "statusHook": False},
        "4": {"callHook": "file:route.hbs"},
    })
    assert plan.match("1") == DialplanMatch("1", A, None)
    assert plan.match("2") == DialplanMatch("2", B, C)
    assert plan.match("3") == DialplanMatch("3", B, None)
    hit = plan.match("4")
    assert hit is not None and hit.is_file
    assert not DialplanMatch("1", A).is_file
    assert plan.match("") is None and plan.match(None) is None


def test_strict_dialplan_lists_every_problem() -> None:
    with pytest.raises(DialplanError) as info:
        Dialplan({"+(1)": A, "2": 5, "3": {"statusHook": A}, "4": B})
    problems = {k: code for k, code, _ in info.value.problems}
    assert problems == {"+(1)": "CONFIG_EXTGLOB", "2": "CONFIG_DIALPLAN_VALUE",
                        "3": "CONFIG_DIALPLAN_VALUE"}


def test_lenient_dialplan_skips_bad_keys() -> None:
    plan = Dialplan({"+(1)": A, "4": B}, strict=False)
    assert [k for k, _, _ in plan.errors] == ["+(1)"]
    assert plan.match("4") == DialplanMatch("4", B)


def test_dialplan_round_trip_and_cache() -> None:
    raw = {"*": A, "1000": {"callHook": B, "statusHook": C}}
    plan = Dialplan(raw)
    copy = plan.as_dict()
    assert copy == raw and list(copy) == ["*", "1000"]
    copy["1000"]["callHook"] = "mutated"
    assert plan.match("1000") == DialplanMatch("1000", B, C)
    text = plan.to_json()
    assert dialplan_from_json(text) is dialplan_from_json(text)
    assert dialplan_from_json(text) == plan
    legacy = dialplan_from_json(text, "legacy")
    assert legacy is not None and winner(legacy, "1000") == "*"
    for bad in (None, "", "null", "[]", "{not json"):
        assert dialplan_from_json(bad) is None


def test_unknown_precedence_is_refused() -> None:
    with pytest.raises(ValueError):
        Dialplan({}, "newest")


# --------------------------------------------------------------------------- client globs


def test_first_match_in_array_order() -> None:
    items = [(compile_glob("1*"), "wild"), (compile_glob("1000"), "exact"),
             (compile_glob("*"), "any")]
    table = FirstMatch(items)
    assert table.find("1000") == "wild"
    assert table.find("2") == "any"
    table = FirstMatch([(compile_glob("1000"), "exact"), (compile_glob("1*"), "wild"),
                        (compile_glob("!2"), "never")])
    assert table.find("1000") == "exact"
    assert table.find("1001") == "wild"
    assert table.find("2") is None
    assert table.find("") is None and table.find(None) is None


# --------------------------------------------------------------------------- CIDR


@pytest.mark.parametrize(("text", "expected"), [
    ("10.0.0.0/8", "10.0.0.0/8"), ("1.2.3.4", "1.2.3.4/32"), ("::1", "::1/128"),
    ("10.1.2.3/24", "10.1.2.0/24"), (" 2001:db8::/32 ", "2001:db8::/32"),
    ("[2001:db8::1]", "2001:db8::1/128"),
])
def test_parse_network(text: str, expected: str) -> None:
    assert parse_network(text) == ipaddress.ip_network(expected)


@pytest.mark.parametrize("text", ["10.0.0.300", "abc", "10.0.0.0/33", "", "1.2.3.4/-1"])
def test_parse_network_errors(text: str) -> None:
    with pytest.raises(ValueError, match="not an IPv4/IPv6 address or CIDR"):
        parse_network(text)


def test_parse_address() -> None:
    assert parse_address("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
    assert parse_address("[2001:db8::5]") == ipaddress.ip_address("2001:db8::5")
    assert parse_address("fe80::1%eth0") == ipaddress.ip_address("fe80::1")
    assert parse_address("nope") is None


def test_parse_address_remembered_answers_stay_right() -> None:
    """The cached parse gives the same answers twice, for text and address objects."""
    for _ in range(2):
        assert parse_address("::ffff:192.0.2.1") == ipaddress.ip_address("192.0.2.1")
        assert parse_address(" 192.0.2.9 ") == ipaddress.ip_address("192.0.2.9")
        assert parse_address("not-an-ip") is None
        assert parse_address(ipaddress.ip_address("::ffff:10.0.0.1")) == \
            ipaddress.ip_address("10.0.0.1")
        assert parse_address(ipaddress.ip_address("2001:db8::1")) == \
            ipaddress.ip_address("2001:db8::1")


def test_network_table_first_item_wins() -> None:
    nets = [
        ([parse_network("10.0.0.0/8")], "a"),
        ([parse_network("10.1.0.0/16"), parse_network("2001:db8::/32")], "b"),
        ([parse_network("192.0.2.1"), parse_network("fe80::/10")], "c"),
    ]
    table = NetworkTable(nets)
    assert len(table) == 5
    cases = {"10.1.2.3": "a", "2001:db8::1": "b", "[2001:db8::5]": "b", "192.0.2.1": "c",
             "::ffff:192.0.2.1": "c", "fe80::1%eth0": "c", "192.0.2.2": None,
             "garbage": None, "2001:db9::1": None}
    for address, expected in cases.items():
        assert table.find(address) == expected, address
    assert table.find(ipaddress.ip_address("10.9.9.9")) == "a"
    assert table.find(None) is None
    # order decides, not the longest prefix; duplicates keep the first item
    table = NetworkTable([([parse_network("10.1.0.0/16")], "b"),
                          ([parse_network("10.0.0.0/8")], "a"),
                          ([parse_network("10.1.0.0/16")], "c")])
    assert (table.find("10.1.2.3"), table.find("10.2.0.1")) == ("b", "a")


# --------------------------------------------------------------------------- properties

PATTERN_CHARS = st.text(alphabet="01239*?[]{},.!^-\\/+@()#:ab", max_size=16)


@given(PATTERN_CHARS, st.text(alphabet="0123ab./", max_size=8))
def test_any_pattern_compiles_or_is_refused_cleanly(pattern: str, subject: str) -> None:
    try:
        glob = compile_glob(pattern)
    except PatternError as exc:
        assert exc.code in ("CONFIG_PATTERN", "CONFIG_EXTGLOB")
        return
    assert glob.match(subject) in (True, False)


@given(st.text(alphabet="0123456789abcXYZ+@#_-", min_size=1, max_size=12),
       st.text(alphabet="0123456789abc", max_size=12))
def test_plain_patterns_match_only_themselves(pattern: str, other: str) -> None:
    glob = compile_glob(pattern)
    if pattern.startswith("#"):
        assert not glob.match(pattern)
    else:
        assert glob.literal == pattern and glob.match(pattern)
        assert glob.match(other) is (other == pattern)
