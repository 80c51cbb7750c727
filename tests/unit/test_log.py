"""Redaction: no credential reaches a log line (S-5)."""

from __future__ import annotations

import io
import json
import logging

from engine.log import configure, get_logger, redact, redact_text


def test_secret_fields_are_redacted_nested() -> None:
    out = redact({"password": "pw", "trunk": {"authPass": "x", "regPass": "y",
                                             "outbound": {"password": "z"}},
                  "response": "abc", "cnonce": "c", "token": "t", "api_key": "k",
                  "webhook_secret": "s", "user": "alice", "verb_response": "1+abc"})
    assert out["password"] == "***" and out["trunk"]["authPass"] == "***"
    assert out["trunk"]["regPass"] == "***" and out["trunk"]["outbound"]["password"] == "***"
    assert out["response"] == out["cnonce"] == out["token"] == out["api_key"] == "***"
    assert out["webhook_secret"] == "***"
    assert out["user"] == "alice" and out["verb_response"] == "1+abc"


def test_authorization_in_raw_sip_text_is_redacted() -> None:
    text = ('REGISTER sip:x SIP/2.0\r\nAuthorization: Digest username="alice",'
            'response="5aa5f71c60e36881a7548333bb8cf5d0",nonce="n"\r\n')
    red = redact_text(text)
    assert "5aa5f71c" not in red and "Authorization: Digest ***" in red


def test_log_lines_are_json_and_redacted() -> None:
    stream = io.StringIO()
    configure("debug", "json", stream)
    try:
        get_logger("t").info("trunk", password="hunter2", trunk={"authPass": "p"}, user="u")
    finally:
        logging.getLogger().handlers.clear()
    line = json.loads(stream.getvalue().strip())
    assert line["msg"] == "trunk" and line["user"] == "u"
    assert "hunter2" not in stream.getvalue() and line["trunk"]["authPass"] == "***"
