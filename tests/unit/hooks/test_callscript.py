"""CallScript validation (spec §6a, §7.1, D-13): typed verbs with defaults, precise
one-line errors, no secrets in messages, and agreement with the published schema."""

from __future__ import annotations

import copy
import dataclasses
import json
import math
import pickle
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from jsonschema import Draft202012Validator

from engine.hooks import callscript as cs
from engine.hooks.callscript import (
    CallScriptError,
    callscript_schema,
    callscript_summary,
    format_path,
    validate_callscript,
)
from engine.hooks.payloads import UNSET, statushook_body
from engine.hooks.verbs import (
    AnnounceVerb,
    CallScript,
    ConnectVerb,
    Destination,
    FrozenDict,
    PauseVerb,
    ResponseVerb,
)

SECRET = "hunter2-very-secret"


def one(verb: dict[str, Any]) -> Any:
    return validate_callscript([verb])[0]


def error(value: Any) -> CallScriptError:
    with pytest.raises(CallScriptError) as info:
        validate_callscript(value)
    return info.value


# --------------------------------------------------------------------------- valid scripts

VALID: list[tuple[dict[str, Any], Any]] = [
    ({"verb": "announce", "url": "file:/hello.wav"}, AnnounceVerb("file:/hello.wav")),
    ({"verb": "announce", "url": "file:hello.wav"}, AnnounceVerb("file:hello.wav")),
    ({"verb": "announce", "url": "FILE://odd name.wav"}, AnnounceVerb("FILE://odd name.wav")),
    ({"verb": "announce", "url": "https://media.example.com/a.mp3?x=1"},
     AnnounceVerb("https://media.example.com/a.mp3?x=1")),
    ({"verb": "announce", "url": "http://m/a.wav", "statusLabel": "intro"},
     AnnounceVerb("http://m/a.wav", status_label="intro")),
    ({"verb": "pause", "duration": 5}, PauseVerb(5)),
    ({"verb": "pause", "duration": 0}, PauseVerb(0)),
    ({"verb": "pause", "duration": 2.5}, PauseVerb(2.5)),
    ({"verb": "pause", "duration": 3600}, PauseVerb(3600)),
    ({"verb": "pause", "duration": 5.0, "statusLabel": False}, PauseVerb(5, status_label=False)),
    ({"verb": "response", "code": 486}, ResponseVerb(486)),
    ({"verb": "response", "code": 300}, ResponseVerb(300)),
    ({"verb": "response", "code": 699}, ResponseVerb(699)),
    ({"verb": "response", "code": 603.0}, ResponseVerb(603)),
    ({"verb": "response", "code": 302, "reason": "Moved", "headers": {"Contact": "<sip:x@y>"},
      "statusLabel": None},
     ResponseVerb(302, "Moved", (("Contact", "<sip:x@y>"),), status_label=None)),
    ({"verb": "response", "code": 480, "reason": ""}, ResponseVerb(480, None)),
    ({"verb": "response", "code": 480, "headers": {"X-Why": "tab\tok", "X-Empty": ""}},
     ResponseVerb(480, None, (("X-Why", "tab\tok"), ("X-Empty", "")))),
    ({"verb": "connect", "dest": {"type": "client", "address": "1000"}},
     ConnectVerb((Destination("client", "1000"),))),
    ({"verb": "connect", "dest": [{"type": "client", "address": 1000, "timeout": 20}]},
     ConnectVerb((Destination("client", "1000", timeout=20.0),))),
    ({"verb": "connect", "dest": {"type": "sip", "address": "sip:bob@example.com",
                                  "proxy": "sip:10.0.0.1:5060", "username": "bob",
                                  "password": SECRET, "codecs": ["PCMU", "DIRECT", "opus"],
                                  "headers": {"X-A": "1", "X-B": "2"}, "timeout": 0.5}},
     ConnectVerb((Destination("sip", "sip:bob@example.com", timeout=0.5,
                              headers=(("X-A", "1"), ("X-B", "2")), proxy="sip:10.0.0.1:5060",
                              username="bob", password=SECRET,
                              codecs=("PCMU", "DIRECT", "opus")),))),
    ({"verb": "connect", "dest": {"type": "sip", "address": "bob@example.com", "username": "u"}},
     ConnectVerb((Destination("sip", "bob@example.com", username="u"),))),
    ({"verb": "connect", "dest": {"type": "trunk", "address": "+441234", "trunk_id": 5}},
     ConnectVerb((Destination("trunk", "+441234", trunk_id=5),))),
    ({"verb": "connect", "dest": {"type": "trunk", "address": "1", "trunk_id": "t-5"}},
     ConnectVerb((Destination("trunk", "1", trunk_id="t-5"),))),
    ({"verb": "connect", "dest": {"type": "trunk", "address": "1", "trunk_id": 7.0}},
     ConnectVerb((Destination("trunk", "1", trunk_id=7),))),
    ({"verb": "connect", "dest": {"type": "trunk", "address": "1", "trunk_name": "carrier"}},
     ConnectVerb((Destination("trunk", "1", trunk_name="carrier"),))),
    ({"verb": "connect", "dest": {"type": "trunk", "address": "1", "trunk_id": 1,
                                  "trunk_name": "carrier"}},
     ConnectVerb((Destination("trunk", "1", trunk_id=1, trunk_name="carrier"),))),
    ({"verb": "connect", "dest": [{"type": "client", "address": "a"},
                                  {"type": "client", "address": "b"}],
      "reconnect": True, "callerId": 441234567890, "callerName": "Acme \"Sales\"",
      "ringtone": "file:/us.wav", "statusLabel": {"team": ["a", "b"], "n": 1}},
     ConnectVerb((Destination("client", "a"), Destination("client", "b")), reconnect=True,
                 caller_id="441234567890", caller_name='Acme "Sales"',
                 ringtone="file:/us.wav", status_label={"team": ("a", "b"), "n": 1})),
    ({"verb": "connect", "dest": {"type": "client", "address": "a"}, "callerId": "",
      "callerName": "", "reconnect": False},
     ConnectVerb((Destination("client", "a"),))),
    ({"verb": "connect", "dest": {"type": "client", "address": "a"}, "callerId": "+44-20 "[:-1]},
     ConnectVerb((Destination("client", "a"),), caller_id="+44-20")),
]


@pytest.mark.parametrize(("verb", "expected"), VALID)
def test_valid_verbs(verb: dict[str, Any], expected: Any) -> None:
    assert one(verb) == expected


def test_defaults() -> None:
    verb = one({"verb": "connect", "dest": {"type": "client", "address": "1000"}})
    assert isinstance(verb, ConnectVerb)
    assert (verb.reconnect, verb.caller_id, verb.caller_name, verb.ringtone) == (
        False, None, None, None)
    assert verb.status_label is UNSET
    dest = verb.dests[0]
    assert dest.timeout == 30.0 and isinstance(dest.timeout, float)
    assert (dest.headers, dest.trunk_id, dest.trunk_name, dest.proxy, dest.username,
            dest.password, dest.codecs, dest.auth) == ((), None, None, None, None, None, None,
                                                       None)


def test_pause_duration_keeps_its_number_kind() -> None:
    assert type(one({"verb": "pause", "duration": 5}).duration) is int
    assert type(one({"verb": "pause", "duration": 5.0}).duration) is int
    assert type(one({"verb": "pause", "duration": 0.25}).duration) is float


def test_response_code_is_int() -> None:
    assert type(one({"verb": "response", "code": 486.0}).code) is int


def test_sip_auth_property() -> None:
    dest = one({"verb": "connect", "dest": {"type": "sip", "address": "x", "username": "u",
                                             "password": "p"}}).dests[0]
    assert dest.auth == ("u", "p")
    bare = one({"verb": "connect", "dest": {"type": "sip", "address": "x",
                                             "username": "u"}}).dests[0]
    assert bare.auth == ("u", "")


def test_whole_script_in_order() -> None:
    script = validate_callscript([
        {"verb": "announce", "url": "file:/a.wav"},
        {"verb": "pause", "duration": 1},
        {"verb": "connect", "dest": {"type": "client", "address": "1"}},
        {"verb": "response", "code": 486},
    ])
    assert isinstance(script, CallScript)
    assert [v.name for v in script] == ["announce", "pause", "connect", "response"]
    assert len(script) == 4
    assert not script.is_single_response
    assert validate_callscript([{"verb": "response", "code": 404}]).is_single_response
    assert not validate_callscript([{"verb": "pause", "duration": 0}]).is_single_response


@pytest.mark.parametrize("label", [None, False, True, 0, "x", [1, [2, {"a": None}]],
                                   {"k": {"n": [1.5, "s"]}}])
def test_status_label_round_trips_to_statushook(label: Any) -> None:
    verb = one({"verb": "pause", "duration": 1, "statusLabel": label})
    body = statushook_body("cid", "pause:start", label=verb.status_label)
    if label is False:
        assert body is None  # false suppresses the verb's events (spec §8)
    else:
        assert body is not None
        assert json.loads(json.dumps(body))["label"] == label


def test_status_label_absent_means_no_label_key() -> None:
    verb = one({"verb": "pause", "duration": 1})
    body = statushook_body("cid", "pause:start", label=verb.status_label)
    assert body == {"callId": "cid", "event": "pause:start"}


# --------------------------------------------------------------------------- immutability

def test_verbs_are_frozen_and_hashable() -> None:
    script = validate_callscript([{"verb": "connect", "dest": [
        {"type": "sip", "address": "x", "headers": {"X-A": "1"}, "codecs": ["PCMU"]}],
        "statusLabel": {"a": [1, {"b": 2}]}}])
    verb = script[0]
    with pytest.raises(dataclasses.FrozenInstanceError):
        verb.reconnect = True  # type: ignore[misc]
    with pytest.raises(dataclasses.FrozenInstanceError):
        verb.dests[0].address = "y"  # type: ignore[misc]
    label = verb.status_label
    assert isinstance(label, FrozenDict)
    for mutate in (lambda: label.__setitem__("c", 1), lambda: label.update(c=1),
                   lambda: label.pop("a"), label.clear, lambda: label.setdefault("c", 1),
                   label.popitem, lambda: label.__delitem__("a")):
        with pytest.raises(TypeError):
            mutate()
    assert isinstance(label["a"], tuple)
    assert hash(script) == hash(copy.deepcopy(script))
    assert pickle.loads(pickle.dumps(script)) == script


def test_input_is_copied_not_shared() -> None:
    raw = [{"verb": "connect", "dest": [{"type": "client", "address": "a",
                                         "headers": {"X-A": "1"}}],
            "statusLabel": {"k": [1]}}]
    script = validate_callscript(raw)
    raw[0]["statusLabel"]["k"].append(2)
    raw[0]["dest"][0]["headers"]["X-A"] = "changed"
    assert script[0].status_label == {"k": (1,)}
    assert script[0].dests[0].headers == (("X-A", "1"),)


# --------------------------------------------------------------------------- invalid scripts

CONNECT = {"verb": "connect"}


def dest(**fields: Any) -> dict[str, Any]:
    return {**CONNECT, "dest": fields}


INVALID: list[tuple[Any, str]] = [
    # the script itself
    (None, "$: a CallScript must be a JSON array of verb objects, got null"),
    ({}, "$: a CallScript must be a JSON array of verb objects, got an object"),
    ({"verb": "pause", "duration": 1},
     "$: a CallScript must be a JSON array of verb objects, got an object"),
    ("[]", "$: a CallScript must be a JSON array of verb objects, got a string"),
    (0, "$: a CallScript must be a JSON array of verb objects, got an integer"),
    (True, "$: a CallScript must be a JSON array of verb objects, got true or false"),
    ([], "$: a CallScript needs at least one verb"),
    ([{"verb": "pause", "duration": 0}] * 101, "$: at most 100 verbs allowed"),
    # verb objects
    ([1], "$[0]: expected a verb object, got 1"),
    ([None], "$[0]: expected a verb object, got null"),
    ([["pause"]], "$[0]: expected a verb object, got an array"),
    ([{}], "$[0]: missing 'verb'"),
    ([{"duration": 1}], "$[0]: missing 'verb'"),
    ([{"verb": "play"}], "$[0].verb: 'play' is not one of announce, connect, response, pause"),
    ([{"verb": "Pause", "duration": 1}],
     "$[0].verb: 'Pause' is not one of announce, connect, response, pause"),
    ([{"verb": 1}], "$[0].verb: 1 is not one of announce, connect, response, pause"),
    ([{"verb": "record", "siprecServer": "sip:x"}],
     "$[0].verb: 'record' is not one of announce, connect, response, pause"),
    # announce
    ([{"verb": "announce"}], "$[0]: missing 'url'"),
    ([{"verb": "announce", "url": 5}], "$[0].url: expected a string, got 5"),
    ([{"verb": "announce", "url": "ftp://x/a.wav"}],
     "$[0].url: expected a file:<path> or http(s):// URL"),
    ([{"verb": "announce", "url": "file:"}], "$[0].url: expected a file:<path> or http(s):// URL"),
    ([{"verb": "announce", "url": "file:///"}],
     "$[0].url: expected a file:<path> or http(s):// URL"),
    ([{"verb": "announce", "url": "http://a b"}],
     "$[0].url: expected a file:<path> or http(s):// URL"),
    ([{"verb": "announce", "url": "file:/a.wav\n"}],
     "$[0].url: must not contain control characters"),
    ([{"verb": "announce", "url": "http://x/" + "a" * 2048}],
     "$[0].url: longer than 2048 characters"),
    ([{"verb": "announce", "url": "file:/a.wav", "loop": 2}],
     "$[0].loop: unknown parameter of announce"),
    ([{"verb": "announce", "urll": "file:/a.wav"}],
     "$[0]: missing 'url'; $[0].urll: unknown parameter of announce (did you mean 'url'?)"),
    # pause
    ([{"verb": "pause"}], "$[0]: missing 'duration'"),
    ([{"verb": "pause", "duration": "5"}], "$[0].duration: expected a number, got '5'"),
    ([{"verb": "pause", "duration": True}], "$[0].duration: expected a number, got true"),
    ([{"verb": "pause", "duration": None}], "$[0].duration: expected a number, got null"),
    ([{"verb": "pause", "duration": -1}], "$[0].duration: expected a number ≥ 0, got -1"),
    ([{"verb": "pause", "duration": 3600.5}],
     "$[0].duration: expected a number ≤ 3600, got 3600.5"),
    ([{"verb": "pause", "duration": math.nan}], "$[0].duration: expected a finite number"),
    ([{"verb": "pause", "duration": math.inf}], "$[0].duration: expected a finite number"),
    ([{"verb": "pause", "durration": 3}],
     "$[0]: missing 'duration'; $[0].durration: unknown parameter of pause "
     "(did you mean 'duration'?)"),
    # response
    ([{"verb": "response"}], "$[0]: missing 'code'"),
    ([{"verb": "response", "code": 200}],
     "$[0].code: expected a final non-2xx SIP code 300–699, got 200"),
    ([{"verb": "response", "code": 183}],
     "$[0].code: expected a final non-2xx SIP code 300–699, got 183"),
    ([{"verb": "response", "code": 700}],
     "$[0].code: expected a final non-2xx SIP code 300–699, got 700"),
    ([{"verb": "response", "code": "486"}], "$[0].code: expected an integer, got '486'"),
    ([{"verb": "response", "code": 486.5}], "$[0].code: expected an integer, got 486.5"),
    ([{"verb": "response", "code": True}], "$[0].code: expected an integer, got true"),
    ([{"verb": "response", "code": 486, "reason": 1}], "$[0].reason: expected a string, got 1"),
    ([{"verb": "response", "code": 486, "reason": "Busy\r\nX-Evil: 1"}],
     "$[0].reason: must not contain control characters"),
    ([{"verb": "response", "code": 486, "reason": "x" * 129}],
     "$[0].reason: longer than 128 characters"),
    ([{"verb": "response", "code": 486, "headers": []}],
     "$[0].headers: expected an object, got an array"),
    ([{"verb": "response", "code": 486, "headers": {"Bad Name": "x"}}],
     "$[0].headers['Bad Name']: not a valid SIP header name"),
    ([{"verb": "response", "code": 486, "headers": {"": "x"}}],
     "$[0].headers['']: not a valid SIP header name"),
    ([{"verb": "response", "code": 486, "headers": {"X-A\n": "x"}}],
     "$[0].headers['X-A\\n']: not a valid SIP header name"),
    ([{"verb": "response", "code": 486, "headers": {"X-A": 1}}],
     "$[0].headers['X-A']: expected a string, got 1"),
    ([{"verb": "response", "code": 486, "headers": {"X-A": "a\r\nVia: evil"}}],
     "$[0].headers['X-A']: must not contain line breaks or control characters"),
    ([{"verb": "response", "code": 486, "headers": {"X-A": "a\n"}}],
     "$[0].headers['X-A']: must not contain line breaks or control characters"),
    ([{"verb": "response", "code": 486, "headers": {f"X-{i}": "v" for i in range(33)}}],
     "$[0].headers: at most 32 headers allowed"),
    ([{"verb": "response", "code": 486, "message": "Rejecting You"}],
     "$[0].message: unknown parameter of response"),
    # connect
    ([CONNECT], "$[0]: missing 'dest'"),
    ([{**CONNECT, "dest": []}], "$[0].dest: expected at least one destination"),
    ([{**CONNECT, "dest": "1000"}],
     "$[0].dest: expected a destination object or a non-empty array of them, got '1000'"),
    ([{**CONNECT, "dest": None}],
     "$[0].dest: expected a destination object or a non-empty array of them, got null"),
    ([{**CONNECT, "dest": [1]}], "$[0].dest[0]: expected a destination object, got 1"),
    ([{**CONNECT, "dest": [{"type": "client", "address": str(i)} for i in range(51)]}],
     "$[0].dest: at most 50 destinations allowed"),
    ([{**CONNECT, "destination": [{"type": "client", "address": "1"}]}],
     "$[0]: missing 'dest'; $[0].destination: unknown parameter of connect"),
    ([dest(type="client", address="1") | {"reconnect": "yes"}],
     "$[0].reconnect: expected true or false, got 'yes'"),
    ([dest(type="client", address="1") | {"callerId": "a@b"}],
     '$[0].callerId: must be a URI user part (no spaces, <, >, " or @)'),
    ([dest(type="client", address="1") | {"callerId": "<x>"}],
     '$[0].callerId: must be a URI user part (no spaces, <, >, " or @)'),
    ([dest(type="client", address="1") | {"callerId": -5}],
     "$[0].callerId: expected a number ≥ 0, got -5"),
    ([dest(type="client", address="1") | {"callerId": 1.5}],
     "$[0].callerId: expected a string or an integer, got 1.5"),
    ([dest(type="client", address="1") | {"callerName": "A\nB"}],
     "$[0].callerName: must not contain control characters"),
    ([dest(type="client", address="1") | {"ringtone": "uk.wav"}],
     "$[0].ringtone: expected a file:<path> or http(s):// URL"),
    ([dest(type="client", address="1") | {"callerid": "1"}],
     "$[0].callerid: unknown parameter of connect (did you mean 'callerId'?)"),
    # destinations
    ([dest(address="1")], "$[0].dest: missing 'type'"),
    ([dest(type="phone", address="1")], "$[0].dest.type: 'phone' is not one of client, sip, trunk"),
    ([{**CONNECT, "dest": [{"type": "client", "address": "1"},
                           {"type": "phone", "address": "x"}]}],
     "$[0].dest[1].type: 'phone' is not one of client, sip, trunk"),
    ([dest(type="client")], "$[0].dest: missing 'address'"),
    ([dest(type="client", address="")], "$[0].dest.address: expected a non-empty string"),
    ([dest(type="client", address="a b")], "$[0].dest.address: must not contain spaces"),
    ([dest(type="client", address=-1)], "$[0].dest.address: expected a number ≥ 0, got -1"),
    ([dest(type="client", address=1.5)],
     "$[0].dest.address: expected a string or an integer, got 1.5"),
    ([dest(type="client", address=True)],
     "$[0].dest.address: expected a string or an integer, got true"),
    ([dest(type="client", address="1", timeout=0)],
     "$[0].dest.timeout: expected a number > 0, got 0"),
    ([dest(type="client", address="1", timeout=-3)],
     "$[0].dest.timeout: expected a number > 0, got -3"),
    ([dest(type="client", address="1", timeout=3601)],
     "$[0].dest.timeout: expected a number ≤ 3600, got 3601"),
    ([dest(type="client", address="1", timeout="30")],
     "$[0].dest.timeout: expected a number, got '30'"),
    ([dest(type="client", address="1", timout=30)],
     "$[0].dest.timout: unknown destination field (did you mean 'timeout'?)"),
    ([dest(type="client", address="1", delay=30)], "$[0].dest.delay: unknown destination field"),
    ([dest(type="client", address="1", proxy="x")],
     "$[0].dest.proxy: not allowed for type client (only sip)"),
    ([dest(type="client", address="1", trunk_id=1)],
     "$[0].dest.trunk_id: not allowed for type client (only trunk)"),
    ([dest(type="trunk", address="1", trunk_id=1, proxy="x")],
     "$[0].dest.proxy: not allowed for type trunk (only sip)"),
    ([dest(type="trunk", address="1", trunk_id=1, codecs=["PCMU"])],
     "$[0].dest.codecs: not allowed for type trunk (only sip)"),
    ([dest(type="trunk", address="1", trunk_id=1, username="u")],
     "$[0].dest.username: not allowed for type trunk (only sip)"),
    ([dest(type="trunk", address="1")],
     "$[0].dest: a trunk destination needs trunk_id or trunk_name"),
    ([dest(type="trunk", address="1", trunk_id=None)],
     "$[0].dest.trunk_id: expected a string or an integer, got null"),
    ([dest(type="trunk", address="1", trunk_id="")],
     "$[0].dest.trunk_id: expected a non-empty string"),
    ([dest(type="trunk", address="1", trunk_id=-1)],
     "$[0].dest.trunk_id: expected a number ≥ 0, got -1"),
    ([dest(type="trunk", address="1", trunk_name=5)],
     "$[0].dest.trunk_name: expected a string, got 5"),
    ([dest(type="sip", address="x", proxy="")], "$[0].dest.proxy: expected a non-empty string"),
    ([dest(type="sip", address="x", proxy="a b")],
     "$[0].dest.proxy: must be a host or SIP URI without spaces"),
    ([dest(type="sip", address="x", username="")],
     "$[0].dest.username: expected a non-empty string"),
    ([dest(type="sip", address="x", codecs="PCMU")],
     "$[0].dest.codecs: expected an array, got 'PCMU'"),
    ([dest(type="sip", address="x", codecs=[])], "$[0].dest.codecs: expected at least one codec"),
    ([dest(type="sip", address="x", codecs=["PCMU", 8])],
     "$[0].dest.codecs[1]: expected a string, got 8"),
    ([dest(type="sip", address="x", codecs=["PC MU"])], "$[0].dest.codecs[0]: not a codec name"),
    ([dest(type="sip", address="x", codecs=["PCMU"] * 33)],
     "$[0].dest.codecs: at most 32 codecs allowed"),
    ([dest(type="sip", address="x", headers={"X-A": ["1"]})],
     "$[0].dest.headers['X-A']: expected a string, got an array"),
    # statusLabel
    ([{"verb": "pause", "duration": 1, "statusLabel": {"a": [math.nan]}}],
     "$[0].statusLabel.a[0]: expected a finite number"),
]


@pytest.mark.parametrize(("value", "message"), INVALID)
def test_invalid_scripts(value: Any, message: str) -> None:
    assert str(error(value)) == message


def test_error_lists_every_problem_in_document_order() -> None:
    err = error([
        {"verb": "pause", "duration": -1},
        {"verb": "connect", "dest": [{"type": "trunk", "address": "1", "proxy": "x"},
                                     {"type": "client", "address": "2", "trunk_id": 1}]},
        {"verb": "bogus"},
    ])
    assert err.errors == (
        ("$[0].duration", "expected a number ≥ 0, got -1"),
        ("$[1].dest[0]", "a trunk destination needs trunk_id or trunk_name"),
        ("$[1].dest[0].proxy", "not allowed for type trunk (only sip)"),
        ("$[1].dest[1].trunk_id", "not allowed for type client (only trunk)"),
        ("$[2].verb", "'bogus' is not one of announce, connect, response, pause"),
    )
    assert err.kind == "schema"
    text = str(err)
    assert text.startswith("$[0].duration: expected a number ≥ 0, got -1; ")
    assert text.endswith(" more)")
    assert len(text) <= 200


def test_error_is_one_short_line_even_with_hostile_keys() -> None:
    verb = {"verb": "pause", "duration": 1}
    verb.update({f"key\r\n{i}" + "x" * 100: i for i in range(30)})
    err = error([verb])
    assert len(err.errors) == 30
    text = str(err)
    assert len(text) <= 200
    assert "\r" not in text and "\n" not in text
    assert "(+" in text and text.endswith("more)")


@pytest.mark.parametrize("value", [
    [{"verb": "connect", "dest": {"type": "sip", "address": "x", "password": SECRET}}],
    [{"verb": "connect", "dest": {"type": "sip", "address": "x", "username": "u",
                                  "password": SECRET + "\n"}}],
    [{"verb": "connect", "dest": {"type": "sip", "address": "x", "username": "u",
                                  "password": SECRET * 20}}],
    [{"verb": "connect", "dest": {"type": "client", "address": "x", "password": SECRET}}],
    [{"verb": "connect", "dest": {"type": "trunk", "address": "x", "password": SECRET}}],
    [{"verb": "connect", "dest": {"type": "phone", "address": "x", "username": "u",
                                  "password": SECRET}}],
    [{"verb": "pause", "duration": 1, "password": SECRET}],
    [{"verb": "pause", "duration": 1, "token": SECRET}],
])
def test_passwords_are_never_echoed(value: Any) -> None:
    err = error(value)
    assert SECRET not in str(err)
    assert all(SECRET not in part for pair in err.errors for part in pair)
    assert SECRET not in repr(err)


def test_password_never_in_repr_of_a_valid_destination() -> None:
    verb = one({"verb": "connect", "dest": {"type": "sip", "address": "x", "username": "u",
                                             "password": SECRET}})
    assert SECRET not in repr(verb)
    assert SECRET not in callscript_summary(validate_callscript([
        {"verb": "connect", "dest": {"type": "sip", "address": "x", "username": "u",
                                     "password": SECRET}}]))


def test_deeply_nested_status_label_is_refused() -> None:
    label: Any = "leaf"
    for _ in range(40):
        label = [label]
    err = error([{"verb": "pause", "duration": 1, "statusLabel": label}])
    assert "nested deeper than 32 levels" in str(err)
    assert str(err).startswith("$[0].statusLabel")


@pytest.mark.parametrize(("path", "text"), [
    ((), "$"), ((0,), "$[0]"), ((1, "dest", 0, "type"), "$[1].dest[0].type"),
    ((0, "headers", "X-Foo"), "$[0].headers['X-Foo']"),
    ((0, "a b"), "$[0]['a b']"), ((0, "_ok9"), "$[0]._ok9"), ((0, "9x"), "$[0]['9x']"),
    ((0, "a\r\n"), "$[0]['a\\r\\n']"),
])
def test_format_path(path: tuple[Any, ...], text: str) -> None:
    assert format_path(path) == text


# --------------------------------------------------------------------------- summary

def test_summary_names_verbs_and_types_only() -> None:
    script = validate_callscript([
        {"verb": "announce", "url": "https://h/a.wav?token=abc"},
        {"verb": "announce", "url": "file:/x.wav"},
        {"verb": "connect", "dest": [{"type": "client", "address": "1000"},
                                     {"type": "sip", "address": "sip:b@h", "username": "u",
                                      "password": SECRET},
                                     {"type": "trunk", "address": "+4412", "trunk_id": 1}]},
        {"verb": "connect", "reconnect": True, "dest": {"type": "client", "address": "2"}},
        {"verb": "pause", "duration": 2.5},
        {"verb": "response", "code": 486},
    ])
    summary = callscript_summary(script)
    assert summary == ("announce(http), announce(file), connect[client,sip,trunk], "
                       "connect[client]+reconnect, pause(2.5s), response(486)")
    for secret in (SECRET, "token", "1000", "+4412", "sip:b@h"):
        assert secret not in summary


# --------------------------------------------------------------------------- schema agreement

@pytest.fixture(scope="module")
def schema_validator() -> Draft202012Validator:
    schema = callscript_schema()
    Draft202012Validator.check_schema(schema)
    return Draft202012Validator(schema)


def test_schema_is_2020_12_and_shares_the_rules() -> None:
    schema = callscript_schema()
    assert schema["$schema"] == "https://json-schema.org/draft/2020-12/schema"
    defs = schema["$defs"]
    control = {"type": "string", "pattern": cs.CONTROL}
    assert defs["address"]["pattern"] == cs.NO_SPACE and defs["address"]["not"] == control
    assert defs["proxy"]["pattern"] == cs.NO_SPACE
    assert defs["callerId"]["pattern"] == cs.CALLER_ID
    assert defs["mediaUrl"]["pattern"] == cs.MEDIA_URL
    assert defs["headers"]["propertyNames"]["pattern"] == cs.HEADER_NAME
    assert defs["headers"]["additionalProperties"]["not"] == {
        "type": "string", "pattern": cs.HEADER_VALUE_CONTROL}
    assert defs["codecs"]["items"]["pattern"] == cs.CODEC
    assert (schema["maxItems"], defs["headers"]["maxProperties"], defs["codecs"]["maxItems"]) == (
        cs.MAX_VERBS, cs.MAX_HEADERS, cs.MAX_CODECS)
    assert defs["connect"]["properties"]["dest"]["then"]["maxItems"] == cs.MAX_DESTS
    assert defs["pause"]["properties"]["duration"]["maximum"] == cs.MAX_SECONDS
    assert defs["destination"]["properties"]["timeout"]["maximum"] == cs.MAX_SECONDS
    assert defs["verb"]["properties"]["verb"]["enum"] == list(cs.VERBS)
    assert defs["destination"]["properties"]["type"]["enum"] == list(cs.DEST_TYPES)
    for verb in cs.VERBS:
        assert set(defs[verb]["properties"]) == {"verb", "statusLabel", *cs._VERB_RULES[verb]}
        assert defs[verb]["required"] == list(cs._REQUIRED[verb])
    by_type = {rule["if"]["properties"]["type"]["const"]: set(rule["then"]["properties"])
               for rule in defs["destination"]["allOf"]}
    common = set(defs["destination"]["properties"])
    for kind in cs.DEST_TYPES:
        assert cs.DEST_FIELDS[kind] == common | by_type.get(kind, set())


# NaN/Infinity are not JSON (JSON Schema bounds do not catch NaN): only the engine refuses them.
EXPRESSIBLE = [case for case in INVALID if "finite" not in case[1]]


@pytest.mark.parametrize(("value", "_message"), EXPRESSIBLE)
def test_schema_rejects_every_invalid_example(schema_validator: Draft202012Validator,
                                              value: Any, _message: str) -> None:
    assert not schema_validator.is_valid(value)


@pytest.mark.parametrize(("verb", "_expected"), VALID)
def test_schema_accepts_every_valid_example(schema_validator: Draft202012Validator,
                                            verb: dict[str, Any], _expected: Any) -> None:
    assert schema_validator.is_valid([verb])


# Strategies: arbitrary JSON, and near-valid scripts that reach every rule.

scalars = (st.none() | st.booleans() | st.integers(-10**6, 10**6)
           | st.floats(allow_nan=False, allow_infinity=False) | st.text(max_size=12))
json_values = st.recursive(
    scalars,
    lambda children: st.lists(children, max_size=4)
    | st.dictionaries(st.text(max_size=10), children, max_size=4),
    max_leaves=12,
)

texts = st.text(max_size=20) | st.sampled_from(
    ["", "a b", "x\n", "x\t", "sip:u@h", "1000", "a@b", "<x>", "PCMU", "file:/a.wav",
     "file:", "http://h/x", "https://h/a b", "X-Foo", "Bad Name", "é", "DIRECT"])
numbers = st.sampled_from([0, 1, -1, 0.5, 30, 299, 300, 486, 486.0, 699, 700, 3600, 3600.5,
                           True, False, 10**20, 7.0])
junk = st.one_of(texts, numbers, json_values)

# Valid scripts drawn widely, then 0–2 random mutations: a third stay untouched, and
# mutations land anywhere (replace a value, drop a member, add a member), so both
# validators are compared on valid scripts, near misses and garbage alike.
tokens = st.text(st.characters(min_codepoint=33, max_codepoint=126,
                               blacklist_characters='<>"@'), min_size=1, max_size=12)
header_names = st.text("ABCXYZabcxyz-_.!", min_size=1, max_size=10)
header_values = st.text(st.characters(blacklist_categories=("Cc",)) | st.just("\t"),
                        max_size=20)
valid_headers = st.dictionaries(header_names, header_values, max_size=3)
seconds = st.integers(1, 3600) | st.floats(0.001, 3600)
media = st.sampled_from(["file:/a.wav", "FILE:x/y z.wav", "https://h/a.wav?x=1", "http://h"])


def valid_destination() -> st.SearchStrategy[dict[str, Any]]:
    common = {"timeout": seconds, "headers": valid_headers}
    return st.one_of(
        st.fixed_dictionaries({"type": st.just("client"), "address": tokens | st.integers(0)},
                              optional=common),
        st.fixed_dictionaries({"type": st.just("sip"), "address": tokens},
                              optional={**common, "proxy": tokens, "username": tokens,
                                        "codecs": st.lists(st.sampled_from(
                                            ["PCMU", "PCMA", "G722", "opus", "DIRECT"]),
                                            min_size=1, max_size=4)}),
        st.fixed_dictionaries({"type": st.just("trunk"), "address": tokens,
                               "trunk_id": st.integers(0) | tokens},
                              optional={**common, "trunk_name": tokens}),
        st.fixed_dictionaries({"type": st.just("trunk"), "address": tokens,
                               "trunk_name": tokens}, optional=common),
    )


valid_verbs = st.one_of(
    st.fixed_dictionaries({"verb": st.just("announce"), "url": media},
                          optional={"statusLabel": json_values}),
    st.fixed_dictionaries(
        {"verb": st.just("connect"),
         "dest": valid_destination() | st.lists(valid_destination(), min_size=1, max_size=3)},
        optional={"reconnect": st.booleans(), "callerId": tokens | st.integers(0),
                  "callerName": header_values.filter(lambda v: "\t" not in v),
                  "ringtone": media, "statusLabel": json_values}),
    st.fixed_dictionaries({"verb": st.just("response"), "code": st.integers(300, 699)},
                          optional={"reason": st.just("Busy"), "headers": valid_headers,
                                    "statusLabel": json_values}),
    st.fixed_dictionaries({"verb": st.just("pause"), "duration": st.integers(0, 3600)
                           | st.floats(0, 3600)}, optional={"statusLabel": json_values}),
)
MEMBER_NAMES = ["verb", "url", "dest", "reconnect", "callerId", "callerName", "ringtone",
                "code", "reason", "headers", "duration", "statusLabel", "type", "address",
                "timeout", "trunk_id", "trunk_name", "proxy", "username", "password", "codecs",
                "timout", "junk", "Bad Name"]


def containers(value: Any) -> list[Any]:
    found = [value] if isinstance(value, list | dict) else []
    children = value.values() if isinstance(value, dict) else value if isinstance(
        value, list) else ()
    for child in children:
        found.extend(containers(child))
    return found


@st.composite
def near_valid_scripts(draw: st.DrawFn) -> Any:
    script = draw(st.lists(valid_verbs, min_size=1, max_size=3))
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(containers(script)))
        if isinstance(target, list):
            if target:
                target[draw(st.integers(0, len(target) - 1))] = draw(junk)
            continue
        action = draw(st.sampled_from(["replace", "delete", "add"]))
        if action == "add" or not target:
            target[draw(st.sampled_from(MEMBER_NAMES))] = draw(junk | valid_headers | tokens)
        elif action == "replace":
            target[draw(st.sampled_from(sorted(target)))] = draw(junk)
        else:
            del target[draw(st.sampled_from(sorted(target)))]
    return script


scripts = near_valid_scripts() | json_values


def outcome(value: Any) -> bool:
    """True when accepted; asserts the refusal contract otherwise."""
    try:
        script = validate_callscript(value)
    except CallScriptError as err:
        text = str(err)
        assert 0 < len(text) <= 200
        assert "\n" not in text and "\r" not in text
        assert err.errors and all(path.startswith("$") for path, _ in err.errors)
        return False
    assert isinstance(script, CallScript) and len(script) == len(value)
    callscript_summary(script)
    hash(script)
    return True


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=json_values)
def test_any_json_value_validates_or_raises_callscript_error(value: Any) -> None:
    outcome(value)  # any other exception fails the test


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(value=scripts)
def test_engine_agrees_with_the_published_schema(schema_validator: Draft202012Validator,
                                                 value: Any) -> None:
    assert outcome(value) == schema_validator.is_valid(value)


@settings(max_examples=300, deadline=None)
@given(value=st.lists(valid_verbs, min_size=1, max_size=3))
def test_valid_scripts_are_accepted_and_survive_a_json_round_trip(value: Any) -> None:
    script = validate_callscript(value)
    assert validate_callscript(json.loads(json.dumps(value))) == script
