"""Configuration validation: diagnostics with file:line:col and JSON path."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

import pytest
from hypothesis import given
from hypothesis import strategies as st

from engine.config.json_source import read_config_file
from engine.config.jsonpos import JsonSyntaxError, loads_located, render_path
from engine.config.model import PasswordClient, RegHookClient
from engine.config.validate import snapshot_from_api_text, snapshot_from_json_text
from engine.errors import ConfigError, Diagnostic

EXAMPLE = Path(__file__).resolve().parents[3] / "examples" / "config.json"
DIAG = re.compile(r"^\S+:\d+:\d+ [A-Z_]+ \$.*: .+$")


def where(text: str, needle: str, nth: int = 0) -> tuple[int, int]:
    """1-based (line, col) of the nth occurrence of ``needle`` in ``text``."""
    pos = -1
    for _ in range(nth + 1):
        pos = text.index(needle, pos + 1)
    line = text.count("\n", 0, pos) + 1
    return line, pos - (text.rfind("\n", 0, pos) + 1) + 1


def base(**domain: Any) -> dict[str, Any]:
    dom = {"domain_id": 1, "clients": [], "trunks": []}
    dom.update(domain)
    return {"domains": {"pbx.example": dom}}


def refused(text: str, file: str = "cfg.json") -> list[Diagnostic]:
    with pytest.raises(ConfigError) as info:
        snapshot_from_json_text(text, file=file)
    for d in info.value.diagnostics:
        assert DIAG.match(str(d)), str(d)
    return info.value.diagnostics


def only_error(diags: list[Diagnostic]) -> Diagnostic:
    errors = [d for d in diags if d.severity == "error"]
    assert len(errors) == 1, [str(d) for d in diags]
    return errors[0]


def dump(data: Any) -> str:
    return json.dumps(data, indent=2)


def test_example_config_validates() -> None:
    snap = read_config_file(EXAMPLE)
    assert snap.warnings == ()
    assert snap.counts() == {"domains": 1, "clients": 2, "trunks": 3, "reg_trunks": 1}
    assert isinstance(snap.get_reg_hook("pbx.example", "1000"), PasswordClient)
    assert isinstance(snap.get_reg_hook("pbx.example", "2001"), RegHookClient)
    assert snap.get_trunk_by_ip("pbx.example", "203.0.113.20").name == "carrier"  # type: ignore[union-attr]
    assert [t.id for t in snap.get_auth_trunks("pbx.example")] == [2]
    assert [t.id for t in snap.get_reg_trunks("pbx.example")] == [3]


def test_syntax_error_points_at_the_character() -> None:
    text = '{\n  "domains": {\n    "a": 1,\n  }\n}'
    d = only_error(refused(text))
    assert (d.code, d.line, d.col, d.path) == ("CONFIG_SYNTAX", 4, 3, "$")
    assert str(d).startswith("cfg.json:4:3 CONFIG_SYNTAX $: ")


def test_missing_file() -> None:
    with pytest.raises(ConfigError) as info:
        read_config_file(Path("/nonexistent/dragonpbx.json"))
    assert info.value.diagnostics[0].code == "CONFIG_IO"


def test_missing_required_points_at_the_object() -> None:
    text = dump({"domains": {"pbx.example": {"clients": []}}})
    d = only_error(refused(text))
    assert d.code == "CONFIG_SCHEMA"
    assert d.path == "$.domains['pbx.example']"
    assert "missing required property 'domain_id'" in d.message
    assert (d.line, d.col) == (where(text, '{\n      "clients"')[0], where(text, '{\n      "cl')[1])


def test_wrong_type_names_path_and_line_without_echoing_secrets() -> None:
    text = dump(base(clients=[{"username": "1000", "password": 987654}]))
    d = only_error(refused(text))
    assert d.path == "$.domains['pbx.example'].clients[0].password"
    assert (d.line, d.col) == where(text, "987654")
    assert "987654" not in str(d)
    assert "expected a string or null, got integer" in d.message


def test_bad_callhook_url() -> None:
    text = dump(base(trunks=[{"id": 1, "dialplan": {"*": "htp://typo"}}]))
    d = only_error(refused(text))
    assert d.path == "$.domains['pbx.example'].trunks[0].dialplan['*']"
    assert (d.line, d.col) == where(text, '"htp://typo"')
    assert "http(s):// URL or file:" in d.message


def test_bad_domain_name_points_at_the_key() -> None:
    text = dump({"domains": {"pbx example": {"domain_id": 1}}})
    d = only_error(refused(text))
    assert d.path == "$.domains['pbx example']"
    assert (d.line, d.col) == where(text, '"pbx example"')


def test_several_errors_are_reported_together() -> None:
    text = dump({"domains": {
        "a.example": {"domain_id": 1, "clients": [{"username": "1000"}],
                      "trunks": [{"id": 1, "inbound": ["nope"]}]},
        "b.example": {"domain_id": 0, "clients": [{"username": "2000"}]},
    }})
    codes = sorted(d.code for d in refused(text))
    # b.example's schema error does not hide a.example's semantic errors (b.example's own
    # semantic checks wait until its schema error is fixed)
    assert codes == ["CONFIG_CIDR", "CONFIG_CLIENT_AUTH", "CONFIG_SCHEMA"]


def test_bad_cidr() -> None:
    text = dump(base(trunks=[{"id": 1, "inbound": ["10.0.0.0/8", "10.0.0.300/24"]}]))
    d = only_error(refused(text))
    assert (d.code, d.path) == ("CONFIG_CIDR", "$.domains['pbx.example'].trunks[0].inbound[1]")
    assert (d.line, d.col) == where(text, '"10.0.0.300/24"')


def test_extglob_key_is_refused_at_the_key() -> None:
    text = dump(base(trunks=[{"id": 1, "dialplan": {"*": "http://h/a",
                                                    "+(1|2)": "http://h/b"}}]))
    d = only_error(refused(text))
    assert (d.code, d.path) == ("CONFIG_EXTGLOB", "$.domains['pbx.example'].trunks[0].dialplan"
                                                  "['+(1|2)']")
    assert (d.line, d.col) == where(text, '"+(1|2)"')
    assert "not supported" in d.message


def test_extglob_client_username() -> None:
    text = dump(base(clients=[{"username": "@(1|2)", "password": "pw"}]))
    d = only_error(refused(text))
    assert (d.code, d.path) == ("CONFIG_EXTGLOB", "$.domains['pbx.example'].clients[0].username")


@pytest.mark.parametrize("client", [
    {"username": "1000"},
    {"username": "1000", "password": ""},
    {"username": "1000", "reghook": None, "password": None},
    {"username": "1000", "authType": "reghook", "password": "pw"},
    {"username": "1000", "authType": "standard", "reghook": "http://h/reg"},
])
def test_client_without_credentials_is_an_error(client: dict[str, Any]) -> None:
    text = dump(base(clients=[client]))
    d = only_error(refused(text))
    assert (d.code, d.path) == ("CONFIG_CLIENT_AUTH", "$.domains['pbx.example'].clients[0]")
    assert "never accepted" in d.message


def test_duplicate_trunk_ids_are_loose() -> None:
    text = dump(base(trunks=[{"id": 1}, {"id": 2}, {"id": "1"}]))
    d = only_error(refused(text))
    assert (d.code, d.path) == ("CONFIG_DUPLICATE_ID", "$.domains['pbx.example'].trunks[2].id")
    assert "trunks[0]" in d.message


@pytest.mark.parametrize(("trunk", "code", "where_"), [
    ({"id": 1, "authType": "registration", "regHost": "h"}, "CONFIG_REGISTRATION", "authType"),
    ({"id": 1, "authType": "registration"}, "CONFIG_REGISTRATION", "authType"),
    ({"id": 1, "register": True, "outbound": {"host": "h"}}, "CONFIG_REGISTRATION", "register"),
    ({"id": 1, "authType": "authentication", "authUser": "u"}, "CONFIG_TRUNK_AUTH", "authType"),
    ({"id": 1, "outbound": {"host": "h", "username": "u"}}, "CONFIG_OUTBOUND_AUTH", "outbound"),
])
def test_trunk_credentials(trunk: dict[str, Any], code: str, where_: str) -> None:
    d = only_error(refused(dump(base(trunks=[trunk]))))
    assert (d.code, d.path) == (code, f"$.domains['pbx.example'].trunks[0].{where_}")


def test_registration_via_outbound_credentials_is_valid() -> None:
    text = dump(base(trunks=[{"id": 1, "authType": "registration",
                              "outbound": {"host": "h", "username": "u", "password": "p"}}]))
    snap = snapshot_from_json_text(text, file="cfg.json")
    assert snap.get_reg_trunks("pbx.example")[0].registration.origin == "outbound"  # type: ignore[union-attr]


def test_warnings_do_not_refuse() -> None:
    text = ('{"domains": {"pbx.example": {"domain_id": 1, "trunks": [\n'
            '  {"id": 1, "reghost": "x", "dialplan": {"!x": "http://h/a", "#c": "http://h/b"}}\n'
            '], "trunks": []}}, "extra": 1}')
    snap = snapshot_from_json_text(text, file="cfg.json")
    codes = [(d.code, d.path) for d in snap.warnings]
    assert ("CONFIG_DUPLICATE_KEY", "$.domains['pbx.example'].trunks") in codes
    assert ("CONFIG_UNKNOWN_KEY", "$.extra") in codes
    # the first "trunks" was replaced, as JSON.parse does, so its warnings are not reported
    assert snap.get_domain("pbx.example").trunks == ()  # type: ignore[union-attr]
    text = dump(base(trunks=[{"id": 1, "reghost": "x", "dialplan": {"!x": "http://h/a",
                                                                    "#c": "http://h/b"}}]))
    snap = snapshot_from_json_text(text, file="cfg.json")
    messages = {d.code: d.message for d in snap.warnings}
    assert "did you mean 'regHost'" in messages["CONFIG_UNKNOWN_KEY"]
    assert "never matches" in messages["CONFIG_INERT_PATTERN"]
    assert all(d.severity == "warning" for d in snap.warnings)


def test_accounts_array_is_tolerated() -> None:
    data = base() | {"accounts": [{"username": "admin", "password": "x", "api_key": "k"}]}
    snap = snapshot_from_json_text(dump(data), file="cfg.json")
    assert snap.warnings == ()


def test_fingerprint_follows_content() -> None:
    a = snapshot_from_json_text(dump(base()), file="a.json")
    b = snapshot_from_json_text(json.dumps(base()), file="b.json")  # other formatting
    c = snapshot_from_json_text(dump(base(domain_id=2)), file="a.json")
    assert a.fingerprint == b.fingerprint != c.fingerprint


def test_precedence_is_applied() -> None:
    text = dump(base(trunks=[{"id": 1, "dialplan": {"*": "http://h/any", "1000": "http://h/x"}}]))
    for mode, pattern in (("specific", "1000"), ("legacy", "*")):
        snap = snapshot_from_json_text(text, file="cfg.json", precedence=mode)
        dialplan = snap.get_trunk_by_id("pbx.example", 1).dialplan  # type: ignore[union-attr]
        assert dialplan is not None and dialplan.match("1000").pattern == pattern  # type: ignore[union-attr]


# --------------------------------------------------------------------------- API shape

API_BODY = {
    "count": 1,
    "domains": [{
        "id": 7, "domain": "sip.example", "createdAt": 1700000000, "users": [],
        "clients": [{"id": 3, "label": "desk", "username": "1*", "authType": "reghook",
                     "password": None, "reghook": "http://h/reg", "codecs": [], "dialplan": {},
                     "maxClients": 1}],
        "trunks": [{"id": 9, "label": "itsp", "authType": "registration", "regUser": "u",
                    "regPass": "p", "regHost": "reg.itsp.example", "inbound": ["192.0.2.0/24"],
                    "outbound": {}, "codecs": ["PCMA"], "dialplan": {"*": "http://h/c"}}],
    }],
}


def test_api_body_is_transformed() -> None:
    snap = snapshot_from_api_text(json.dumps(API_BODY), url="http://cfg/api")
    dom = snap.get_domain("sip.example")
    assert dom is not None and dom.id == 7
    assert snap.get_trunk_by_name("sip.example", "itsp").id == 9  # type: ignore[union-attr]
    assert snap.get_reg_hook("sip.example", "100") == RegHookClient("http://h/reg", dom.clients[0])
    assert snap.get_reg_trunks("sip.example")[0].registration.host == "reg.itsp.example"  # type: ignore[union-attr]
    assert snap.warnings == ()  # extra API fields are not warned about


def test_api_errors_use_api_paths() -> None:
    body = json.loads(json.dumps(API_BODY))
    body["domains"][0]["trunks"][0]["inbound"] = ["192.0.2.0/99"]
    text = json.dumps(body, indent=2)
    with pytest.raises(ConfigError) as info:
        snapshot_from_api_text(text, url="http://cfg/api")
    d = only_error(info.value.diagnostics)
    assert (d.file, d.code, d.path) == ("http://cfg/api", "CONFIG_CIDR",
                                        "$.domains[0].trunks[0].inbound[0]")
    assert (d.line, d.col) == where(text, '"192.0.2.0/99"')


@pytest.mark.parametrize(("body", "code"), [
    ({"error": "nope"}, "CONFIG_SCHEMA"),
    ({"domains": {"a": {}}}, "CONFIG_SCHEMA"),
    ({"domains": [{"id": 1, "domain": "a.example"}, {"id": 2, "domain": "a.example"}]},
     "CONFIG_DUPLICATE_DOMAIN"),
])
def test_api_refusals(body: Any, code: str) -> None:
    with pytest.raises(ConfigError) as info:
        snapshot_from_api_text(json.dumps(body), url="http://cfg/api")
    assert only_error(info.value.diagnostics).code == code


# --------------------------------------------------------------------------- jsonpos


def test_jsonpos_matches_the_json_module() -> None:
    text = EXAMPLE.read_text()
    assert loads_located(text).value == json.loads(text)
    for bad in ("", "{", "[1,]", '{"a" 1}', "01", '"\\x"', "nul", "1 2", '{"a":1,}'):
        with pytest.raises(JsonSyntaxError):
            loads_located(bad)


def test_render_path() -> None:
    assert render_path(()) == "$"
    assert render_path(("domains", "pbx.example", "trunks", 0, "id")) == \
        "$.domains['pbx.example'].trunks[0].id"
    assert render_path(("k", "it's")) == "$.k['it\\'s']"


JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers() | st.floats(allow_nan=False, allow_infinity=False)
    | st.text(max_size=8),
    lambda inner: st.lists(inner, max_size=4) | st.dictionaries(st.text(max_size=5), inner,
                                                                  max_size=4),
    max_leaves=20,
)


@given(JSON_VALUES, st.sampled_from([None, 0, 2]), st.booleans())
def test_jsonpos_agrees_with_the_json_module(value: Any, indent: int | None,
                                             ascii_only: bool) -> None:
    text = json.dumps(value, indent=indent, ensure_ascii=ascii_only)
    doc = loads_located(text)
    assert doc.value == json.loads(text)
    assert doc.where(()) == (1, 1)
