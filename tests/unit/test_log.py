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


def _lines(emit) -> list[dict]:  # type: ignore[no-untyped-def]
    stream = io.StringIO()
    configure("debug", "json", stream)
    try:
        emit()
    finally:
        logging.getLogger().handlers.clear()
    return [json.loads(x) for x in stream.getvalue().splitlines()]


def test_fast_json_path_redacts_every_kind_of_field() -> None:
    """The per-line fast path (cached key verdicts, plain numbers passed through) redacts
    what ``redact`` does: secret keys of any value type, secrets inside text and nested
    values, and leaves empty secrets and ordinary fields alone."""
    raw = 'Authorization: Digest username="a", response="5aa5f71c60e3"'
    for _ in range(2):  # the second line uses the remembered key verdicts
        (line,) = _lines(lambda: get_logger("t").bind(call_id="c1").info(
            "x", regPass=1234, token="", secret=None, sip=raw, ms=3, ok=True, ratio=0.5,
            nested={"password": "p", "list": [{"api_key": "k"}]}, peer=("1.2.3.4", 5060)))
        assert line["regPass"] == "***" and line["token"] == "" and line["secret"] is None
        assert "5aa5f71c" not in line["sip"] and line["call_id"] == "c1"
        assert (line["ms"], line["ok"], line["ratio"]) == (3, True, 0.5)
        assert line["nested"] == {"password": "***", "list": [{"api_key": "***"}]}
        assert line["peer"] == ["1.2.3.4", 5060]


def test_json_line_time_and_exception() -> None:
    def emit() -> None:
        try:
            raise ValueError("boom password=x")
        except ValueError:
            get_logger("t").exception("failed", what="w")

    (line,) = _lines(emit)
    assert line["level"] == "error" and line["msg"] == "failed" and line["what"] == "w"
    assert "ValueError: boom" in line["exc"]
    stamp = line["time"]
    assert len(stamp) == 24 and stamp[10] == "T" and stamp[19] == "." and stamp.endswith("Z")


def test_records_carry_every_logrecord_field_for_other_handlers() -> None:
    # engine.log builds its own lean records; a handler formatting with any LogRecord
    # field (pytest's caplog uses %(filename)s:%(lineno)d) must still work
    seen: list[logging.LogRecord] = []

    class Keep(logging.Handler):
        def emit(self, record: logging.LogRecord) -> None:
            seen.append(record)

    logger = logging.getLogger("engine.test_records")
    handler = Keep()
    logger.addHandler(handler)
    logger.setLevel(logging.INFO)
    try:
        get_logger("engine.test_records").info("hello %s", user="u1")
    finally:
        logger.removeHandler(handler)
    (record,) = seen
    stdlib = logging.LogRecord("x", logging.INFO, "", 0, "m", (), None)
    assert set(vars(stdlib)) <= set(vars(record))
    assert record.getMessage() == "hello %s"  # no %-args: the text is kept as given
    assert record.levelname == "INFO" and record.fields == {"user": "u1"}
    line = logging.Formatter("%(levelname)s %(name)s:%(filename)s:%(lineno)d %(message)s "
                             "%(asctime)s %(relativeCreated)d").format(record)
    assert line.startswith("INFO engine.test_records::0 hello %s ")
