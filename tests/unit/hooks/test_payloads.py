"""Webhook bodies: exact JSON text, key order, omission and header-case rules."""

from __future__ import annotations

from dataclasses import dataclass

import pytest

from engine.errors import SipError
from engine.hooks.client import dumps
from engine.hooks.payloads import (
    LEGACY_SPACED_EVENTS,
    UNSET,
    callhook_body,
    event_name,
    header_key,
    headers_object,
    reghook_body,
    serialize_error,
    serialize_request,
    statushook_body,
    trunk_source,
)


def text(body: object) -> str:
    return dumps(body).decode()


# --------------------------------------------------------------------------- RegHook


def test_reghook_body_exact_text_with_all_optional_fields() -> None:
    body = reghook_body(
        source_address="192.0.2.7", source_port=5062, method="REGISTER", expires=600,
        realm="pbx.example.com", username="1000", nonce="abc", uri="sip:pbx.example.com",
        response="0123456789abcdef", algorithm="MD5", qop="auth", nc="00000001",
        cnonce="xyz", opaque="op",
    )
    assert text(body) == (
        '{"source_address":"192.0.2.7","source_port":5062,"method":"REGISTER",'
        '"expires":600,"scheme":"digest","username":"1000","realm":"pbx.example.com",'
        '"nonce":"abc","uri":"sip:pbx.example.com","response":"0123456789abcdef",'
        '"algorithm":"MD5","qop":"auth","nc":"00000001","cnonce":"xyz","opaque":"op"}'
    )


def test_reghook_body_omits_absent_digest_params_and_defaults_md5() -> None:
    body = reghook_body(
        source_address="10.0.0.1", source_port=5060, method="INVITE", expires=None,
        realm="d.example", username="u", nonce="n", uri="sip:d.example", response="r",
    )
    assert text(body) == (
        '{"source_address":"10.0.0.1","source_port":5060,"method":"INVITE","expires":null,'
        '"scheme":"digest","username":"u","realm":"d.example","nonce":"n",'
        '"uri":"sip:d.example","response":"r","algorithm":"MD5"}'
    )


def test_reghook_body_realm_is_the_domain_argument_d1() -> None:
    body = reghook_body(source_address="h", source_port=1, method="REGISTER", expires=0,
                        realm="tenant.example", username="u", nonce="n", uri="sip:x",
                        response="r")
    assert body["realm"] == "tenant.example"
    assert body["expires"] == 0  # an explicit Expires: 0 is sent, not null


def test_reghook_body_keeps_only_given_subset_in_order() -> None:
    body = reghook_body(source_address="h", source_port="5070", method="REGISTER",  # type: ignore[arg-type]
                        expires=60, realm="d", username="u", nonce="n", uri="sip:d",
                        response="r", nc="00000002")
    assert list(body)[-2:] == ["algorithm", "nc"]
    assert body["source_port"] == 5070


# --------------------------------------------------------------------------- headers


@pytest.mark.parametrize(
    ("name", "key"),
    [
        ("From", "from"), ("f", "from"), ("F", "from"), ("i", "call-id"), ("m", "contact"),
        ("l", "content-length"), ("c", "content-type"), ("t", "to"), ("v", "via"),
        ("k", "supported"), ("s", "subject"), ("e", "content-encoding"), ("r", "refer-to"),
        ("CSeq", "cseq"), ("User-Agent", "user-agent"),
        ("X-Custom-Thing", "X-Custom-Thing"), ("x-lower", "x-lower"), ("x-Mixed", "x-mixed"),
        ("P-Charging-Vector", "P-Charging-Vector"), ("P-Asserted-Identity", "p-asserted-identity"),
        ("P-Preferred-Identity", "P-Preferred-Identity"), ("Diversion", "Diversion"),
        ("DIVERSION", "diversion"), ("Privacy", "privacy"),
    ],
)
def test_header_key_case_rules(name: str, key: str) -> None:
    assert header_key(name) == key


def test_headers_object_joins_repeats_in_order_and_expands_compact_forms() -> None:
    lines = [
        ("Via", "SIP/2.0/UDP a;branch=z9hG4bK1"), ("v", "SIP/2.0/UDP b;branch=z9hG4bK2"),
        ("f", "<sip:1000@d>;tag=1"), ("To", "<sip:2000@d>"), ("X-Tenant", "A"),
        ("X-Tenant", "B"), ("Diversion", "<sip:3000@d>"), ("Max-Forwards", "70"),
    ]
    assert text(headers_object(lines)) == (
        '{"via":"SIP/2.0/UDP a;branch=z9hG4bK1,SIP/2.0/UDP b;branch=z9hG4bK2",'
        '"from":"<sip:1000@d>;tag=1","to":"<sip:2000@d>","X-Tenant":"A,B",'
        '"Diversion":"<sip:3000@d>","max-forwards":"70"}'
    )


def test_headers_object_accepts_mapping_and_drop() -> None:
    assert headers_object({"Authorization": "Digest x", "Subject": "hi"},
                          drop=["authorization"]) == {"subject": "hi"}


# --------------------------------------------------------------------------- CallHook


def test_callhook_body_exact_text_client() -> None:
    body = callhook_body(
        domain="pbx.example.com", from_user="1000", to_user="2000", call_id="abc@h",
        source_address="192.0.2.7", headers=[("From", "<sip:1000@pbx>"), ("X-A", "1")],
        count=0,
    )
    assert text(body) == (
        '{"domain":"pbx.example.com","from":"1000","to":"2000","callId":"abc@h",'
        '"sourceAddress":"192.0.2.7","headers":{"from":"<sip:1000@pbx>","X-A":"1"},'
        '"source":"client","count":0}'
    )


def test_callhook_body_trunk_source_never_leaks_credentials_s4() -> None:
    trunk = {"id": 7, "name": "carrier", "outbound": {"host": "h", "username": "u",
             "password": "p4ss"}, "authPass": "a", "regPass": "r", "inbound": ["1.2.3.4/32"]}
    body = callhook_body(domain="d", from_user=None, to_user="2000", call_id="c",
                         source_address="1.2.3.4", headers=[], source=trunk, count=1)
    assert text(body) == (
        '{"domain":"d","to":"2000","callId":"c","sourceAddress":"1.2.3.4","headers":{},'
        '"source":{"id":7,"name":"carrier"},"count":1}'
    )
    assert "p4ss" not in text(body)


def test_callhook_body_refer_fetch_has_refer_and_no_count() -> None:
    body = callhook_body(domain="d", from_user="1", to_user="2", call_id="c",
                         source_address="h", headers=[], refer=True)
    assert list(body) == ["domain", "from", "to", "callId", "sourceAddress", "headers",
                          "source", "refer"]
    assert body["refer"] is True


def test_trunk_source_uses_label_for_api_configs() -> None:
    assert trunk_source({"id": "t1", "label": "Carrier A", "authPass": "x"}) == {
        "id": "t1", "name": "Carrier A"}


def test_callhook_body_keeps_non_ascii_unescaped() -> None:
    body = callhook_body(domain="d", from_user="jürgen", to_user="2", call_id="c",
                         source_address="h", headers=[("Subject", "café")])
    assert '"from":"jürgen"' in text(body)
    assert '"subject":"café"' in text(body)


# --------------------------------------------------------------------------- StatusHook


@pytest.mark.parametrize("event", sorted(LEGACY_SPACED_EVENTS))
def test_legacy_connect_events_get_trailing_space_only_when_enabled(event: str) -> None:
    assert event_name(event) == event
    assert event_name(event, legacy_names=True) == event + " "
    assert event_name(event + " ") == event  # a spaced input is normalised


@pytest.mark.parametrize("event", ["connect:start", "connect:skipped", "playback:start",
                                   "pause:complete", "response:notsent"])
def test_other_events_never_get_a_space(event: str) -> None:
    assert event_name(event, legacy_names=True) == event


def test_exactly_nine_legacy_names() -> None:
    assert len(LEGACY_SPACED_EVENTS) == 9


def test_statushook_body_label_rules() -> None:
    assert text(statushook_body("c1", "pause:start")) == '{"callId":"c1","event":"pause:start"}'
    assert text(statushook_body("c1", "pause:start", label=None)) == (
        '{"callId":"c1","event":"pause:start","label":null}')
    assert text(statushook_body("c1", "pause:start", label="ivr")) == (
        '{"callId":"c1","event":"pause:start","label":"ivr"}')
    assert statushook_body("c1", "pause:start", label=False) is None
    assert text(statushook_body("c1", "pause:start", label=0)) == (
        '{"callId":"c1","event":"pause:start","label":0}')
    assert statushook_body("c1", "x", label=UNSET) == {"callId": "c1", "event": "x"}


def test_statushook_body_connect_error_exact_text_legacy() -> None:
    body = statushook_body("a-leg", "connect:error", label="sales", legacy_names=True,
                           dest="sip:2000@192.0.2.9:5060", index=1,
                           error=SipError(486, "Busy Here"))
    assert text(body) == (
        '{"callId":"a-leg","event":"connect:error ","dest":"sip:2000@192.0.2.9:5060",'
        '"index":1,"error":{"name":"SipError","status":486,"reason":"Busy Here",'
        '"message":"Sip non-success response: 486"},"label":"sales"}'
    )


def test_statushook_body_extra_field_order_and_omission() -> None:
    body = statushook_body("c", "connect:hangup", endedby="B", duration=None)
    assert text(body) == '{"callId":"c","event":"connect:hangup","endedby":"B"}'
    body = statushook_body("c", "playback:complete", duration=4200, label="x")
    assert list(body or {}) == ["callId", "event", "duration", "label"]


def test_serialize_error_other_exception_and_mapping() -> None:
    assert serialize_error(RuntimeError("boom")) == {"name": "RuntimeError", "message": "boom"}
    assert serialize_error({"name": "E", "status": 500, "res": {"huge": 1}}) == {
        "name": "E", "status": 500}
    assert serialize_error(None) is None


def test_serialize_request_drops_authorization_and_decodes_body() -> None:
    req = serialize_request("REFER", [
        ("Refer-To", "<sip:3000@d>"), ("Authorization", 'Digest username="u", response="s"'),
        ("Proxy-Authorization", "Digest x"), ("X-Trace", "1")], b"v=0\r\n\xff")
    assert req == {"method": "REFER", "headers": {"refer-to": "<sip:3000@d>", "X-Trace": "1"},
                   "body": "v=0\r\n\ufffd"}


@dataclass
class _Req:
    method: str
    headers: list[tuple[str, str]]
    body: bytes


def test_statushook_body_req_from_object_and_mapping() -> None:
    obj = _Req("INVITE", [("Content-Type", "application/sdp"), ("Authorization", "x")], b"sdp")
    body = statushook_body("c", "connect:reinvite", req=obj)
    assert text(body) == (
        '{"callId":"c","event":"connect:reinvite","req":{"method":"INVITE",'
        '"headers":{"content-type":"application/sdp"},"body":"sdp"}}'
    )
    body2 = statushook_body("c", "connect:refer", req={"method": "REFER", "headers": {},
                                                       "body": "x"})
    assert body2 is not None
    assert body2["req"] == {"method": "REFER", "headers": {}, "body": "x"}


def test_dumps_matches_json_stringify_forms() -> None:
    assert dumps({"a": [1, 2.5, None, True], "b": "é\n\u2028"}) == (
        '{"a":[1,2.5,null,true],"b":"é\\n\u2028"}'.encode())
    # lone surrogate: JSON.stringify escapes it, so do we (no UnicodeEncodeError)
    assert dumps({"s": "\ud800"}) == b'{"s":"\\ud800"}'
    with pytest.raises(ValueError):
        dumps({"x": float("nan")})
