"""Password guessing and request floods against the real daemon, Redis and webhook server.

Guessers are SIPp (or, where one exact request must be re-sent, a raw UDP socket)
bound to their own loopback addresses (127.0.0.x), so each test has its own
"attacker" and "legitimate" sources. The daemon runs with small limits and no
allow-listed addresses (loopback is exempt by default).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import socket
import subprocess
import sys
import time
import uuid
from collections.abc import Callable, Iterator
from typing import Any

import pytest
import redis

from tests.fixtures.daemon import Pbx
from tests.fixtures.sipp import SippResult, run_sipp, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"
TRUNK_SOURCE = "127.0.0.9"
LIMITS = {
    "ABUSE_ALLOW": "", "ABUSE_SOURCE_MAX_FAILURES": "5", "ABUSE_AOR_MAX_FAILURES": "8",
    "ABUSE_NONCE_MAX_FAILURES": "3", "ABUSE_WINDOW_SECS": "60", "ABUSE_BAN_SECS": "600",
    "ABUSE_RATE_LIMIT": "20", "ABUSE_RATE_BURST": "30",
}
BANNED = "X-Reason: too many failed authentications"


def config(hooks: WebhookServer) -> dict[str, Any]:
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": [
        {"username": "alice", "password": "secret", "dialplan": {"1???": "http://127.0.0.1:9/c"}},
        {"username": "bob", "password": "bobpass", "dialplan": {"1???": "http://127.0.0.1:9/c"}},
        {"username": "2*", "reghook": hooks.url("/reg")},
    ], "trunks": [
        {"id": 1, "name": "carrier", "inbound": [f"{TRUNK_SOURCE}/32"],
         "dialplan": {"44*": "http://127.0.0.1:9/t"}},
    ]}}}


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer) -> Pbx:
    return pbx_factory(config(webhook_server), **LIMITS)


@pytest.fixture
def rdb(pbx: Pbx) -> Iterator[redis.Redis]:
    """Redis with no bans, counters or bindings left by another test (before and after)."""
    client = redis.Redis.from_url(pbx.redis_url, decode_responses=True)

    def clean() -> None:
        for pattern in ("abuse:*", "client:*"):
            for key in client.scan_iter(pattern):
                client.delete(key)

    clean()
    yield client
    clean()


def register(pbx: Pbx, user: str, password: str, *, code: int, source: str,
             times: int = 1) -> SippResult:
    """``times`` REGISTERs one after the other (401, then credentials), each expecting
    ``code``, from ``source``."""
    result = run_sipp(scenario_with("reg_auth", code=code), pbx.address,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", password, "-m", str(times),
                             "-l", "1", "-r", "1000"],
                      timeout=30, bind=source)
    assert result.rc == 0, result.explain()
    return result


def reasons(result: SippResult) -> list[str]:
    return re.findall(r"X-Reason: ([^\r\n]+)", result.messages)


def ban_warnings(pbx: Pbx) -> list[dict[str, Any]]:
    return [line for line in pbx.log_lines()
            if line.get("msg") == "source banned after failed authentications"]


def test_guesser_is_shut_out_even_with_the_right_password(pbx: Pbx, rdb: redis.Redis) -> None:
    guesser, phone = "127.0.0.2", "127.0.0.3"
    guesses = register(pbx, "alice", "guess-0001", code=403, source=guesser, times=5)
    assert reasons(guesses) == ["invalid credentials"] * 5
    right = register(pbx, "alice", "secret", code=403, source=guesser)
    assert BANNED in right.messages
    assert not rdb.exists(f"client:{DOMAIN}:alice")
    # the same user from another address keeps service
    register(pbx, "alice", "secret", code=200, source=phone)
    assert rdb.exists(f"client:{DOMAIN}:alice")
    # logged once, at warning, with source, user and domain; never the guess
    warnings = [w for w in ban_warnings(pbx) if w.get("source") == guesser]
    assert len(warnings) == 1, warnings
    assert warnings[0]["level"] == "warning"
    assert warnings[0]["user"] == "alice" and warnings[0]["domain"] == DOMAIN
    assert "guess-0001" not in pbx.log_text()
    assert 590 <= rdb.ttl(f"abuse:ban:src:{guesser}") <= 600


def _bans_cli(pbx: Pbx, *args: str) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "REDIS_URL": pbx.redis_url}
    return subprocess.run([sys.executable, "-m", "engine", "bans", *args], env=env,
                          capture_output=True, text=True, timeout=30, check=False)


def test_bans_cli_lists_and_lifts_a_ban(pbx: Pbx, rdb: redis.Redis) -> None:
    guesser = "127.0.0.12"
    register(pbx, "alice", "nope", code=403, source=guesser, times=5)
    listed = _bans_cli(pbx, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    bans = [json.loads(line) for line in listed.stdout.splitlines()]
    assert [(b["scope"], b["source"], b["user"], b["domain"], b["failures"]) for b in bans] == [
        ("source", guesser, "alice", DOMAIN, 5)]
    lifted = _bans_cli(pbx, "lift", guesser)
    assert lifted.returncode == 0, lifted.stdout + lifted.stderr
    register(pbx, "alice", "secret", code=200, source=guesser)
    assert _bans_cli(pbx, "lift", guesser).returncode == 1  # nothing left to lift


def test_trunk_source_is_never_banned_or_rate_limited(pbx: Pbx, rdb: redis.Redis) -> None:
    register(pbx, "alice", "wrong", code=403, source=TRUNK_SOURCE, times=8)
    register(pbx, "alice", "secret", code=200, source=TRUNK_SOURCE)
    assert not list(rdb.scan_iter("abuse:*"))
    replies = flood(pbx, TRUNK_SOURCE, 120)
    assert replies and all(r.startswith("SIP/2.0 401") for r in replies), replies[:3]


def test_ban_expires(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
                     pbx: Pbx, rdb: redis.Redis) -> None:
    short = pbx_factory(config(webhook_server), **{**LIMITS, "ABUSE_BAN_SECS": "2"})
    guesser = "127.0.0.4"
    register(short, "alice", "wrong", code=403, source=guesser, times=5)
    assert BANNED in register(short, "alice", "secret", code=403, source=guesser).messages
    time.sleep(2.5)
    register(short, "alice", "secret", code=200, source=guesser)


# --------------------------------------------------------------------------- raw requests


def _md5(text: str) -> str:
    return hashlib.md5(text.encode()).hexdigest()  # SIP digest MD5


def _request(sock: socket.socket, pbx: Pbx, user: str, *, auth: str = "") -> str:
    host, port = sock.getsockname()
    branch = f"z9hG4bK-{uuid.uuid4().hex}"
    msg = (f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
           f"Via: SIP/2.0/UDP {host}:{port};branch={branch};rport\r\n"
           f"From: <sip:{user}@{DOMAIN}>;tag={uuid.uuid4().hex[:8]}\r\n"
           f"To: <sip:{user}@{DOMAIN}>\r\nCall-ID: {uuid.uuid4().hex}\r\nCSeq: 1 REGISTER\r\n"
           f"Contact: <sip:{user}@{host}:{port}>\r\nMax-Forwards: 70\r\nExpires: 300\r\n"
           f"{auth}Content-Length: 0\r\n\r\n")
    sock.sendto(msg.encode(), ("127.0.0.1", pbx.port))
    return sock.recv(65535).decode()


def _nonce(reply: str) -> str:
    found = re.search(r'nonce="([^"]+)"', reply)
    assert found, reply
    return found.group(1)


def _authorization(user: str, password: str, nonce: str, nc: int) -> str:
    uri, cnonce, ncs = f"sip:{DOMAIN}", uuid.uuid4().hex[:16], f"{nc:08x}"
    ha1 = _md5(f"{user}:{DOMAIN}:{password}")
    ha2 = _md5(f"REGISTER:{uri}")
    response = _md5(f"{ha1}:{nonce}:{ncs}:{cnonce}:auth:{ha2}")
    return (f'Authorization: Digest username="{user}", realm="{DOMAIN}", nonce="{nonce}", '
            f'uri="{uri}", response="{response}", algorithm=MD5, qop=auth, nc={ncs}, '
            f'cnonce="{cnonce}"\r\n')


def _bound(source: str) -> socket.socket:
    sock = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    sock.bind((source, 0))
    sock.settimeout(5)
    return sock


def test_nonce_dies_after_three_failed_responses(pbx: Pbx, rdb: redis.Redis) -> None:
    with _bound("127.0.0.5") as sock:
        nonce = _nonce(_request(sock, pbx, "alice"))
        for nc in (1, 2, 3):
            reply = _request(sock, pbx, "alice", auth=_authorization("alice", f"g{nc}", nonce, nc))
            assert reply.startswith("SIP/2.0 403"), reply
        reply = _request(sock, pbx, "alice", auth=_authorization("alice", "g4", nonce, 4))
        assert reply.startswith("SIP/2.0 401"), reply
        fresh = _nonce(reply)
        assert fresh != nonce
        # the right password on the dead nonce is challenged too; on the fresh one it works
        reply = _request(sock, pbx, "alice", auth=_authorization("alice", "secret", nonce, 5))
        assert reply.startswith("SIP/2.0 401"), reply
        reply = _request(sock, pbx, "alice", auth=_authorization("alice", "secret", fresh, 1))
        assert reply.startswith("SIP/2.0 200"), reply


def flood(pbx: Pbx, source: str, count: int) -> list[str]:
    """``count`` REGISTERs without credentials as fast as one socket sends; the replies."""
    replies: list[str] = []
    with _bound(source) as sock:
        host, port = sock.getsockname()
        for i in range(count):
            msg = (f"REGISTER sip:{DOMAIN} SIP/2.0\r\n"
                   f"Via: SIP/2.0/UDP {host}:{port};branch=z9hG4bK-fl{i}-{uuid.uuid4().hex}\r\n"
                   f"From: <sip:alice@{DOMAIN}>;tag=f{i}\r\nTo: <sip:alice@{DOMAIN}>\r\n"
                   f"Call-ID: flood-{i}-{uuid.uuid4().hex}\r\nCSeq: 1 REGISTER\r\n"
                   f"Max-Forwards: 70\r\nContent-Length: 0\r\n\r\n")
            sock.sendto(msg.encode(), ("127.0.0.1", pbx.port))
        sock.settimeout(2)
        end = time.monotonic() + 10
        while len(replies) < count and time.monotonic() < end:
            try:
                replies.append(sock.recv(65535).decode())
            except TimeoutError:
                break
    return replies


def test_request_flood_from_one_source_is_answered_503(pbx: Pbx, rdb: redis.Redis) -> None:
    replies = flood(pbx, "127.0.0.7", 120)
    assert len(replies) == 120
    limited = [r for r in replies if r.startswith("SIP/2.0 503")]
    challenged = [r for r in replies if r.startswith("SIP/2.0 401")]
    assert len(limited) + len(challenged) == 120
    # the burst (30) passes, then about 20/s: most of a fast flood is refused
    assert len(challenged) >= 30 and len(limited) >= 20, (len(challenged), len(limited))
    assert "X-Reason: rate limited" in limited[0] and "Retry-After: 1" in limited[0]
    # another source is not affected
    assert flood(pbx, "127.0.0.8", 5)[0].startswith("SIP/2.0 401")
    warned = [line for line in pbx.log_lines()
              if line.get("msg", "").startswith("source over its request rate")
              and line.get("source") == "127.0.0.7"]
    assert len(warned) == 1


def test_reghook_stops_receiving_guesses_after_the_ban(pbx: Pbx, rdb: redis.Redis,
                                                       webhooks: WebhookServer) -> None:
    webhooks.reply("/reg", json={"status": "fail"})
    result = register(pbx, "2001", "guess", code=403, source="127.0.0.6", times=9)
    assert reasons(result) == ["invalid credentials"] * 5 + [
        "too many failed authentications"] * 4
    assert len(webhooks.requests("/reg")) == 5


def test_user_under_attack_bans_each_failing_source_for_that_user_only(
        pbx: Pbx, rdb: redis.Redis) -> None:
    """Below the per-source limit from each address, the failures on bob add up to
    ABUSE_AOR_MAX_FAILURES: from then on every source that fails on bob is banned for
    bob (at its next failure), not for other users, and bob at a good address keeps
    service."""
    register(pbx, "bob", "x", code=403, source="127.0.0.10", times=3)
    register(pbx, "bob", "x", code=403, source="127.0.0.11", times=3)
    register(pbx, "bob", "x", code=403, source="127.0.0.13", times=2)  # 8th: bob attacked
    assert rdb.exists("abuse:guard:aor:pbx.test/bob")
    assert BANNED in register(pbx, "bob", "bobpass", code=403, source="127.0.0.13").messages
    register(pbx, "bob", "x", code=403, source="127.0.0.10")  # its 4th failure: banned for bob
    assert BANNED in register(pbx, "bob", "bobpass", code=403, source="127.0.0.10").messages
    register(pbx, "alice", "secret", code=200, source="127.0.0.10")  # other users unaffected
    register(pbx, "bob", "bobpass", code=200, source="127.0.0.14")   # bob elsewhere: served
    assert not rdb.exists("abuse:ban:src:127.0.0.10")


def test_invite_guessing_is_counted_and_banned_like_register(pbx: Pbx,
                                                             rdb: redis.Redis) -> None:
    guesser = "127.0.0.15"

    def invite(password: str, code: int, times: int = 1) -> SippResult:
        result = run_sipp(scenario_with("call_uac_expect", code=code), pbx.address,
                          media=True, timeout=30, bind=guesser,
                          keys={"domain": DOMAIN, "caller": "alice"},
                          extra=["-s", "1000", "-au", "alice", "-ap", password,
                                 "-m", str(times), "-l", "1", "-r", "1000"])
        assert result.rc == 0, result.explain()
        return result

    assert reasons(invite("guess", 403, times=5)) == ["invalid credentials"] * 5
    assert reasons(invite("secret", 403)) == ["too many failed authentications"]
    assert BANNED in register(pbx, "alice", "secret", code=403, source=guesser).messages
