"""Fallback URLs in the configuration (issue 10, defect 9): reghookFallback on clients,
callHookFallback in dialplan objects — optional and backward compatible."""

from __future__ import annotations

import json
from typing import Any

import pytest

from engine.config.matching import DialplanMatch
from engine.config.model import RegHookClient
from engine.config.validate import snapshot_from_json_text
from engine.errors import ConfigError

DOMAIN = "pbx.example"


def load(*clients: dict[str, Any]) -> Any:
    text = json.dumps({"domains": {DOMAIN: {"domain_id": 1, "clients": list(clients)}}})
    return snapshot_from_json_text(text, file="cfg.json")


def codes(exc: pytest.ExceptionInfo[ConfigError]) -> list[str]:
    return [d.code for d in exc.value.diagnostics if d.severity == "error"]


def test_reghook_fallback_reaches_the_reghook_lookup() -> None:
    snap = load({"username": "1*", "reghook": "http://h/reg",
                 "reghookFallback": "https://backup.example/reg"})
    assert snap.get_reg_hook(DOMAIN, "1000") == RegHookClient(
        "http://h/reg", snap.domain(DOMAIN).clients[0], "https://backup.example/reg")
    assert not snap.warnings


def test_client_without_fallback_is_unchanged() -> None:
    snap = load({"username": "1*", "reghook": "http://h/reg"})
    match = snap.get_reg_hook(DOMAIN, "1000")
    assert isinstance(match, RegHookClient) and match.fallback is None


def test_fallback_equal_to_reghook_is_refused() -> None:
    with pytest.raises(ConfigError) as info:
        load({"username": "1*", "reghook": "http://h/reg", "reghookFallback": "http://h/reg"})
    assert codes(info) == ["CONFIG_SAME_FALLBACK"]


def test_fallback_must_be_an_http_url() -> None:
    with pytest.raises(ConfigError):
        load({"username": "1*", "reghook": "http://h/reg", "reghookFallback": "ftp://h/x"})


def test_fallback_without_reghook_is_a_warning() -> None:
    snap = load({"username": "1*", "password": "pw", "reghookFallback": "http://h/reg"})
    assert [d.code for d in snap.warnings] == ["CONFIG_UNUSED_FALLBACK"]


def test_dialplan_object_with_callhook_fallback() -> None:
    plan = {"1*": {"callHook": "http://h/call", "callHookFallback": "file:fallback.json",
                   "statusHook": "http://h/status"},
            "2*": {"callHook": "http://h/call", "callHookFallback": None},
            "3*": "http://h/call"}
    snap = load({"username": "u", "password": "pw", "dialplan": plan})
    dialplan = snap.domain(DOMAIN).clients[0].dialplan
    assert dialplan.match("100") == DialplanMatch("1*", "http://h/call", "http://h/status",
                                                  "file:fallback.json")
    assert dialplan.match("200").call_hook_fallback is None
    assert dialplan.match("300") == DialplanMatch("3*", "http://h/call")
    assert dialplan.as_dict()["1*"]["callHookFallback"] == "file:fallback.json"  # pg import


@pytest.mark.parametrize("fallback", ["http://h/call", 42, "not a url"])
def test_bad_callhook_fallback_is_refused(fallback: Any) -> None:
    plan = {"1*": {"callHook": "http://h/call", "callHookFallback": fallback}}
    with pytest.raises(ConfigError):
        load({"username": "u", "password": "pw", "dialplan": plan})
