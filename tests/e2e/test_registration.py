"""Registrar end to end: the real daemon, Redis and a webhook server, driven by SIPp.

Each case checks the SIP outcome and what it must leave behind (the Redis
binding and its TTL, the RegHook request), and the daemon keeps serving after
every bad case.
"""

from __future__ import annotations

import re
import socket
from collections.abc import Callable
from typing import Any

import pytest
import redis

from tests.fixtures.daemon import Pbx
from tests.fixtures.sipp import run_sipp, scenario, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"


def config(hooks: WebhookServer) -> dict[str, Any]:
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": [
        {"username": "alice", "password": "secret", "codecs": ["PCMU", "PCMA"],
         "dialplan": {"1???": "http://127.0.0.1:9/call"}, "expires": 600},
        {"username": "2*", "reghook": hooks.url("/reg")},
    ], "trunks": []}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        sip_backend: str) -> Pbx:
    """Every case runs on both SIP backends (embedded, and behind drachtio-server)."""
    return pbx_factory(config(webhook_server), backend=sip_backend, NONCE_TTL="2")


@pytest.fixture
def rdb(pbx: Pbx) -> redis.Redis:
    client = redis.Redis.from_url(pbx.redis_url, decode_responses=True)
    for key in client.scan_iter("client:*"):
        client.delete(key)
    return client


def register(pbx: Pbx, name: str, user: str, password: str = "", *, code: int | None = None,
             domain: str = DOMAIN, expires: int = 300, transport: str = "udp",
             extra: tuple[str, ...] = ()) -> Any:
    scen = scenario_with(name, code=code) if code is not None else scenario(name)
    args = ["-s", user, "-au", user, "-ap", password, "-m", "1", *extra]
    return run_sipp(scen, pbx.address, transport=transport,
                    keys={"domain": domain, "expires": str(expires)}, extra=args, timeout=15)


def assert_ok(result: Any) -> None:
    assert result.rc == 0, result.explain()


def test_no_credentials_gets_401_with_realm_the_domain(pbx: Pbx) -> None:
    result = register(pbx, "reg_noauth", "alice", code=401)
    assert_ok(result)
    assert f'realm="{DOMAIN}"' in result.messages and 'qop="auth"' in result.messages


def test_static_password_registers_binding_and_ttl(pbx: Pbx, rdb: redis.Redis) -> None:
    result = register(pbx, "reg_auth", "alice", "secret", code=200, expires=300)
    assert_ok(result)
    assert "Expires: 300" in result.messages
    fields = rdb.hgetall(f"client:{DOMAIN}:alice")
    assert fields["contact"].startswith("sip:alice@127.0.0.1:")
    assert fields["proxy"].startswith("sip:127.0.0.1:")
    assert fields["dialplan"] == '{"1???":"http://127.0.0.1:9/call"}'
    assert fields["codecs"] == '["PCMU","PCMA"]'
    assert fields["transport"] == "udp" and fields["user_agent"] == "SIPp-e2e"
    assert 295 <= rdb.ttl(f"client:{DOMAIN}:alice") <= 300


def test_grant_limits_expiry(pbx: Pbx, rdb: redis.Redis) -> None:
    assert_ok(register(pbx, "reg_auth", "alice", "secret", code=200, expires=3600))
    assert 595 <= rdb.ttl(f"client:{DOMAIN}:alice") <= 600


def test_wrong_password_is_403(pbx: Pbx, rdb: redis.Redis) -> None:
    result = register(pbx, "reg_auth", "alice", "wrong", code=403)
    assert_ok(result)
    assert "X-Reason: invalid credentials" in result.messages
    assert not rdb.exists(f"client:{DOMAIN}:alice")


def _sent_register_with_auth(messages: str) -> bytes:
    """The exact REGISTER-with-credentials SIPp sent (from its message trace)."""
    for block in messages.split("-----------------------------------------------"):
        if "message sent" in block and "Authorization: Digest" in block:
            text = block.split("\n\n", 1)[1].rstrip("\n") + "\n\n"
            return text.replace("\r\n", "\n").replace("\n", "\r\n").encode()
    raise AssertionError("no REGISTER with credentials in the trace")


def test_replayed_credentials_are_challenged_again(pbx: Pbx) -> None:
    """An eavesdropper re-sends a captured, valid REGISTER: same credentials (nonce, nc,
    response), a new transaction (new branch; rport so the answer comes back to it). The
    nc high-water mark in Redis catches it. (A byte-identical copy would only be a
    retransmission, absorbed by the transaction layer.)"""
    result = register(pbx, "reg_auth", "alice", "secret", code=200)
    assert_ok(result)
    captured = _sent_register_with_auth(result.messages)
    captured = re.sub(rb"branch=[^;\r\n]+", b"branch=z9hG4bK-replay-1;rport", captured, count=1)
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.settimeout(5)
        s.sendto(captured, ("127.0.0.1", pbx.port))
        reply = s.recv(65535).decode()
    assert reply.startswith("SIP/2.0 401"), reply


def test_stale_nonce_gets_stale_true(pbx: Pbx) -> None:
    result = register(pbx, "reg_stale", "alice", "secret", extra=("-d", "3200"))
    assert_ok(result)
    assert "stale=true" in result.messages


def test_unknown_domain_is_404(pbx: Pbx) -> None:
    result = register(pbx, "reg_noauth", "alice", code=404, domain="nowhere.test")
    assert_ok(result)
    assert "X-Reason: unknown domain" in result.messages


def test_expires_zero_removes_the_binding(pbx: Pbx, rdb: redis.Redis) -> None:
    assert_ok(register(pbx, "reg_auth", "alice", "secret", code=200))
    assert rdb.exists(f"client:{DOMAIN}:alice")
    assert_ok(register(pbx, "reg_auth", "alice", "secret", code=200, expires=0))
    assert not rdb.exists(f"client:{DOMAIN}:alice")


def test_too_brief_is_423_with_min_expires(pbx: Pbx) -> None:
    result = register(pbx, "reg_auth", "alice", "secret", code=423, expires=10)
    assert_ok(result)
    assert "Min-Expires: 30" in result.messages


def test_query_lists_the_binding(pbx: Pbx, rdb: redis.Redis) -> None:
    assert_ok(register(pbx, "reg_auth", "alice", "secret", code=200))
    result = register(pbx, "reg_query", "alice", "secret")
    assert_ok(result)
    assert ";expires=" in result.messages.split("SIP/2.0 200 OK")[-1]


def test_register_over_tcp_records_tcp(pbx: Pbx, rdb: redis.Redis) -> None:
    assert_ok(register(pbx, "reg_auth", "alice", "secret", code=200, transport="tcp"))
    fields = rdb.hgetall(f"client:{DOMAIN}:alice")
    assert fields["transport"] == "tcp"
    # backend-specific: drachtio exposes no connection token (it reuses the client's TCP
    # connection by itself), so only the embedded stack records a flow
    assert bool(fields.get("flow")) == (pbx.backend == "embedded")


def test_reghook_gets_exact_body_and_grants(pbx: Pbx, rdb: redis.Redis,
                                            webhooks: WebhookServer) -> None:
    webhooks.reply("/reg", json={"status": "ok", "expires": 120,
                                 "dialplan": {"*": "http://x/c"}, "codecs": ["PCMA"]})
    assert_ok(register(pbx, "reg_auth", "2001", "pw", code=200, expires=300))
    body = webhooks.requests("/reg")[0].json
    assert list(body)[:10] == ["source_address", "source_port", "method", "expires", "scheme",
                               "username", "realm", "nonce", "uri", "response"]
    assert body["realm"] == DOMAIN and body["expires"] == 300 and body["method"] == "REGISTER"
    assert body["username"] == "2001" and body["source_address"] == "127.0.0.1"
    assert body["qop"] == "auth" and body["nc"] == "00000001" and body["algorithm"] == "MD5"
    assert 115 <= rdb.ttl(f"client:{DOMAIN}:2001") <= 120
    assert rdb.hget(f"client:{DOMAIN}:2001", "codecs") == '["PCMA"]'


@pytest.mark.parametrize(("reply", "code", "why"), [
    ({"json": {"status": "fail"}}, 403, "invalid credentials"),
    ({"status": 500}, 500, "RegHook answered HTTP 500"),
    ({"status": 200, "body": b"not json"}, 500, "invalid RegHook reply"),
    ({"json": {"status": "ok"}, "delay": 6}, 504, "RegHook timed out"),
])
def test_reghook_failures_get_defined_statuses(pbx: Pbx, rdb: redis.Redis,
                                               webhooks: WebhookServer, reply: dict[str, Any],
                                               code: int, why: str) -> None:
    webhooks.reply("/reg", **reply)
    result = register(pbx, "reg_auth", "2002", "pw", code=code)
    assert_ok(result)
    assert f"X-Reason: {why}" in result.messages
    assert not rdb.exists(f"client:{DOMAIN}:2002")


def test_daemon_still_serves_after_the_bad_cases(pbx: Pbx) -> None:
    result = run_sipp(scenario("options_uac"), pbx.address, extra=["-m", "1"], timeout=10)
    assert result.rc == 0, result.explain()
    assert pbx.alive()
