"""Webhook fallback URLs and circuit breakers (issue 10, defect 9), end to end.

The real daemon, Redis, RTPEngine, the recording webhook server and SIPp:

* a RegHook primary that refuses connections, answers 500 or is too slow → the
  REGISTER is answered 200 through the client's ``reghookFallback``;
* a CallHook primary that fails → the dialplan entry's ``callHookFallback``
  CallScript runs (HTTP or ``file:``);
* after HOOK_BREAKER_THRESHOLD failures the primary gets no request during the
  cool-down (counted at the server) and the SIP answer is quick; after the
  cool-down exactly one probe goes to it, and its success closes the breaker;
* a RegHook that answers in 10 s does not delay the registrations of clients
  whose RegHook is another URL on the same server.
"""

from __future__ import annotations

import socket
import threading
import time
from collections.abc import Callable, Iterator
from typing import Any

import pytest

from tests.fixtures.daemon import Pbx
from tests.fixtures.sipp import SippResult, run_sipp, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"
THRESHOLD = 3
COOLDOWN = 3.0
REGHOOK_TIMEOUT = 2.0
OK = {"status": "ok", "dialplan": {"*": "http://127.0.0.1:9/c"}, "codecs": ["PCMU"]}


@pytest.fixture(scope="module")
def refused_url() -> Iterator[str]:
    """A loopback URL whose port is bound but not listening: connecting is refused."""
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        yield f"http://127.0.0.1:{s.getsockname()[1]}/reg"


def config(hooks: WebhookServer, refused: str) -> dict[str, Any]:
    def client(user: str, primary: str, fallback: str | None = None) -> dict[str, Any]:
        entry = {"username": user, "reghook": primary}
        if fallback:
            entry["reghookFallback"] = hooks.url(fallback)
        return entry

    plan = {"1???": {"callHook": hooks.url("/call-p"), "callHookFallback": hooks.url("/call-fb")},
            "2???": {"callHook": refused.replace("/reg", "/call"),
                     "callHookFallback": "file:fallback-script.json"}}
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": [
        {"username": "alice", "password": "secret", "codecs": ["PCMA", "PCMU"],
         "dialplan": plan},
        client("31*", refused, "/fb-refused"),
        client("32*", hooks.url("/p500"), "/fb-500"),
        client("33*", hooks.url("/p-slow"), "/fb-slow"),
        client("34*", hooks.url("/brk")),
        client("37*", hooks.url("/brk-p"), "/brk-fb"),
    ], "trunks": []}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        refused_url: str) -> Pbx:
    pbx = pbx_factory(config(webhook_server, refused_url),
                      REGHOOK_TIMEOUT=str(REGHOOK_TIMEOUT), CALLHOOK_TIMEOUT="2",
                      HOOK_BREAKER_THRESHOLD=str(THRESHOLD),
                      HOOK_BREAKER_COOLDOWN=str(COOLDOWN))
    (pbx.config_path.parent / "fallback-script.json").write_text(
        '[{"verb": "response", "code": 486}]')
    return pbx


def register(pbx: Pbx, user: str, code: int, password: str = "pw",
             timeout: float = 15) -> tuple[SippResult, float]:
    """One authenticated REGISTER expecting ``code``; returns the result and its seconds."""
    started = time.monotonic()
    result = run_sipp(scenario_with("reg_auth", code=code), pbx.address,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", password, "-m", "1"],
                      timeout=timeout)
    return result, time.monotonic() - started


def final_response(result: SippResult, code: int) -> str:
    return result.messages.split(f"SIP/2.0 {code}")[-1].split("\n\n")[0]


# --------------------------------------------------------------------------- RegHook


@pytest.mark.parametrize(("user", "primary", "fallback", "reply"), [
    ("3101", None, "/fb-refused", {}),
    ("3201", "/p500", "/fb-500", {"status": 500}),
    ("3301", "/p-slow", "/fb-slow", {"json": OK, "delay": REGHOOK_TIMEOUT + 2}),
])
def test_failing_reghook_is_answered_by_the_fallback(
        pbx: Pbx, webhooks: WebhookServer, user: str, primary: str | None, fallback: str,
        reply: dict[str, Any]) -> None:
    if primary:
        webhooks.reply(primary, **reply)
    webhooks.reply(fallback, json=OK)
    result, _ = register(pbx, user, 200)
    assert result.rc == 0, result.explain()
    [sent] = webhooks.requests(fallback)
    assert sent.json["username"] == user and sent.json["method"] == "REGISTER"
    if primary:
        [first] = webhooks.requests(primary)  # asked once, never again
        assert first.body == sent.body


def test_without_fallback_outcomes_are_unchanged_then_the_breaker_fails_fast(
        pbx: Pbx, webhooks: WebhookServer) -> None:
    webhooks.reply("/brk", status=500)
    for _ in range(THRESHOLD):
        result, _ = register(pbx, "3401", 500)  # the hook's HTTP status, as today
        assert result.rc == 0, result.explain()
    assert len(webhooks.requests("/brk")) == THRESHOLD
    for _ in range(2):
        result, seconds = register(pbx, "3401", 503)
        assert result.rc == 0, result.explain()
        head = final_response(result, 503)
        assert "Retry-After:" in head and "X-Reason: RegHook circuit open" in head
        assert seconds < 1.5
    assert len(webhooks.requests("/brk")) == THRESHOLD  # nothing sent while open


def test_breaker_skips_the_primary_then_one_probe_closes_it(
        pbx: Pbx, webhooks: WebhookServer) -> None:
    start = len(pbx.log_text())
    webhooks.reply("/brk-p", json=OK, delay=REGHOOK_TIMEOUT + 3)  # too slow
    webhooks.reply("/brk-fb", json=OK)
    for _ in range(THRESHOLD):
        result, seconds = register(pbx, "3701", 200)
        assert result.rc == 0, result.explain()
        assert seconds >= REGHOOK_TIMEOUT  # waited for the primary's timeout
    pbx.wait_log("webhook circuit open", start=start)
    opened = time.monotonic()
    for _ in range(3):
        result, seconds = register(pbx, "3701", 200)
        assert result.rc == 0, result.explain()
        assert seconds < 1.5  # the primary is skipped: straight to the fallback
    assert len(webhooks.requests("/brk-p")) == THRESHOLD
    assert len(webhooks.requests("/brk-fb")) == THRESHOLD + 3
    # the primary recovers; after the cool-down one probe goes to it and closes the breaker
    webhooks.reply("/brk-p", json=OK)
    time.sleep(max(0.0, COOLDOWN - (time.monotonic() - opened)) + 0.2)
    result, _ = register(pbx, "3701", 200)
    assert result.rc == 0, result.explain()
    assert len(webhooks.requests("/brk-p")) == THRESHOLD + 1
    assert len(webhooks.requests("/brk-fb")) == THRESHOLD + 3  # the probe's answer was used
    pbx.wait_log("webhook circuit closed", start=start)
    result, _ = register(pbx, "3701", 200)
    assert result.rc == 0, result.explain()
    assert len(webhooks.requests("/brk-p")) == THRESHOLD + 2
    lines = [line for line in pbx.log_lines() if line.get("logger") == "engine.hooks.breaker"]
    opened_lines = [x for x in lines if x["msg"].startswith("webhook circuit open")
                    and x["url"].endswith("/brk-p")]
    closed_lines = [x for x in lines if x["msg"] == "webhook circuit closed"
                    and x["url"].endswith("/brk-p")]
    assert len(opened_lines) == 1 and opened_lines[0]["level"] == "warning"
    assert len(closed_lines) == 1 and closed_lines[0]["level"] == "info"


# --------------------------------------------------------------------------- CallHook


def call(pbx: Pbx, number: str, code: int) -> SippResult:
    return run_sipp(scenario_with("call_uac_expect", code=code), pbx.address, media=True,
                    timeout=30, keys={"domain": DOMAIN, "caller": "alice"},
                    extra=["-s", number, "-au", "alice", "-ap", "secret", "-m", "1"])


@pytest.fixture
def alice(pbx: Pbx) -> None:
    result, _ = register(pbx, "alice", 200, password="secret")  # a client call needs it
    assert result.rc == 0, result.explain()


@pytest.mark.parametrize("reply", [{"status": 500}, {"status": 200, "body": b"<html>"},
                                   {"json": [], "delay": 3}])
def test_failing_callhook_runs_the_fallback_script(pbx: Pbx, webhooks: WebhookServer,
                                                   alice: None, reply: dict[str, Any]) -> None:
    webhooks.reply("/call-p", **reply)
    webhooks.reply("/call-fb", json=[{"verb": "response", "code": 486}])
    result = call(pbx, "1001", 486)
    assert result.rc == 0, result.explain()
    [primary] = webhooks.requests("/call-p")
    [fallback] = webhooks.requests("/call-fb")
    assert fallback.json == primary.json and fallback.json["to"] == "1001"


def test_unreachable_callhook_falls_back_to_a_file_template(pbx: Pbx, webhooks: WebhookServer,
                                                            alice: None) -> None:
    result = call(pbx, "2001", 486)
    assert result.rc == 0, result.explain()


# --------------------------------------------------------------------------- pool isolation


def test_slow_reghook_does_not_delay_clients_of_another_url(
        pbx_factory: Callable[..., Pbx], webhooks: WebhookServer) -> None:
    """The issue's case: a RegHook answering in 10 s (REGHOOK_TIMEOUT 5 s) with more
    REGISTERs in flight than the 100-connection pool; another client's RegHook is another
    URL on the same server and must answer at once, not after a pooled slot frees."""
    pbx = pbx_factory({"domains": {DOMAIN: {"domain_id": 1, "clients": [
        {"username": "35*", "reghook": webhooks.url("/slow10")},
        {"username": "36*", "reghook": webhooks.url("/other")},
    ], "trunks": []}}}, HOOK_BREAKER_THRESHOLD="0")
    webhooks.reply("/slow10", json=OK, delay=10)
    webhooks.reply("/other", json=OK)
    flood: list[SippResult] = []
    thread = threading.Thread(target=lambda: flood.append(run_sipp(
        scenario_with("reg_auth", code=504), pbx.address,
        keys={"domain": DOMAIN, "expires": "300"},
        extra=["-s", "3501", "-au", "3501", "-ap", "pw", "-m", "120", "-r", "400",
               "-l", "200"], timeout=30)), daemon=True)
    thread.start()
    try:
        webhooks.wait("/slow10", count=100, timeout=10)  # the slow URL holds 100 connections
        result, seconds = register(pbx, "3601", 200)
        assert result.rc == 0, result.explain()
        assert seconds < 1.5, f"another URL's RegHook waited {seconds:.1f}s"
        assert len(webhooks.requests("/other")) == 1
    finally:
        thread.join(40)
    assert pbx.alive()
