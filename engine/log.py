"""Structured logging: one JSON object per line, secrets redacted (S-5).

Use ``log = get_logger(__name__)`` then ``log.info("registered", call_id=…, user=…)``.
Fields named like credentials are replaced by ``***`` wherever they appear,
nested dicts included, and ``Authorization`` header values are cut down to
their scheme and username — so a call site cannot leak a secret by accident.
"""

from __future__ import annotations

import json
import logging
import re
import sys
import time
from collections.abc import Mapping
from typing import Any

# Whole field names that hold credentials (digest ``response``/``cnonce`` only as exact
# names: "verb_response" is a machine, not a secret), or names ending in a secret word.
_SECRET_KEYS = re.compile(
    r"^(response|cnonce|authorization|proxy-authorization|signature|api_key)$"
    r"|(pass|password|passwd|secret|token|authpass|regpass|credentials?)$",
    re.IGNORECASE,
)
_AUTH_HEADER = re.compile(r"((?:proxy-)?authorization\s*:\s*\w+)\s[^\r\n]*", re.IGNORECASE)
_DIGEST_RESPONSE = re.compile(r'(response|cnonce)\s*=\s*"?[0-9a-zA-Z]+"?', re.IGNORECASE)

REDACTED = "***"


def redact(value: Any, _depth: int = 0) -> Any:
    """Return ``value`` with every secret-looking field replaced by ``***``."""
    if _depth > 8:
        return "…"
    if isinstance(value, Mapping):
        return {
            k: (REDACTED if isinstance(k, str) and _SECRET_KEYS.search(k) and v not in (None, "")
                else redact(v, _depth + 1))
            for k, v in value.items()
        }
    if isinstance(value, (list, tuple)):
        return [redact(v, _depth + 1) for v in value]
    if isinstance(value, str):
        return redact_text(value)
    if isinstance(value, bytes):
        return redact_text(value.decode("utf-8", "replace"))
    return value


def redact_text(text: str) -> str:
    """Redact credentials inside free text such as a raw SIP message."""
    if "uthorization" not in text and "esponse=" not in text and "nonce=" not in text:
        return text
    text = _AUTH_HEADER.sub(r"\1 ***", text)
    return _DIGEST_RESPONSE.sub(r"\1=***", text)


_secret_key_cache: dict[Any, bool] = {}
_PLAIN = (int, float, bool, type(None))


def _is_secret_key(key: Any) -> bool:
    """``_SECRET_KEYS`` for a field name, remembered: the names are the code's few."""
    hit = isinstance(key, str) and bool(_SECRET_KEYS.search(key))
    if len(_secret_key_cache) < 4096:
        _secret_key_cache[key] = hit
    return hit


def _redact_fields(fields: Mapping[str, Any], out: dict[str, Any]) -> None:
    """``out.update(redact(fields))`` without a new dict or a regex per line: the keys'
    verdicts are remembered, plain numbers pass as they are."""
    cache = _secret_key_cache
    for k, v in fields.items():
        secret = cache.get(k)
        if secret is None:
            secret = _is_secret_key(k)
        kind = type(v)
        if secret and v is not None and v != "":
            out[k] = REDACTED
        elif kind is str:
            # redact_text's own test, inlined: most values (ids, states) pass untouched
            out[k] = redact_text(v) if ("uthorization" in v or "esponse=" in v
                                        or "nonce=" in v) else v
        elif kind in _PLAIN:
            out[k] = v
        else:
            out[k] = redact(v, 1)


# One encoder for every line (json.dumps with options builds a new one per call).
_ENCODER = json.JSONEncoder(default=str, ensure_ascii=False)


class _Record(logging.LogRecord):
    """A log record built without what no formatter of ours shows: no caller file or
    line (``pathname`` is empty anyway), no thread or process (``configure`` turns
    them off). ``LogRecord.__init__`` cost a fifth of a summary line, splitting an
    empty path and reading clocks it then ignored. Every LogRecord field is still
    there, in the instance's dict, for handlers that format ``%(filename)s`` from it
    (pytest's caplog)."""

    def __init__(self, name: str, level: int, msg: str, exc_info: Any,
                 fields: dict[str, Any]) -> None:
        self.__dict__.update(_RECORD_DEFAULTS)
        created = time.time()
        self.name = name
        self.msg = msg
        self.levelname = logging.getLevelName(level)
        self.levelno = level
        self.exc_info = exc_info
        self.created = created
        self.msecs = int(created * 1000) % 1000
        self.relativeCreated = (created - _START) * 1000
        self.fields = fields


_START = time.time()
_RECORD_DEFAULTS: dict[str, Any] = {
    "args": (), "pathname": "", "filename": "", "module": "", "lineno": 0, "funcName": None,
    "stack_info": None, "exc_text": None, "thread": None, "threadName": None,
    "processName": None, "process": None, "taskName": None,
}


class JsonFormatter(logging.Formatter):
    def __init__(self) -> None:
        super().__init__()
        self._second = -1
        self._stamp = ""

    def _time(self, created: float) -> str:
        second = int(created)
        if second != self._second:  # strftime once a second, not once a line
            self._second = second
            self._stamp = time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(second))
        return f"{self._stamp}.{int((created - second) * 1000):03d}Z"

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": self._time(record.created),
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            _redact_fields(fields, out)
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return _ENCODER.encode(out)


class TextFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        fields = getattr(record, "fields", None) or {}
        extra = " ".join(f"{k}={v}" for k, v in redact(fields).items())
        line = f"{record.levelname.lower():7} {record.name}: {redact_text(record.getMessage())}"
        if extra:
            line += "  " + extra
        if record.exc_info:
            line += "\n" + redact_text(self.formatException(record.exc_info))
        return line


class Logger:
    """Thin wrapper over ``logging.Logger`` taking structured keyword fields."""

    __slots__ = ("_base", "_logger")

    def __init__(self, logger: logging.Logger, base: Mapping[str, Any] | None = None):
        self._logger = logger
        self._base = dict(base or {})

    def bind(self, **fields: Any) -> Logger:
        """A logger that adds ``fields`` to every line (call-id, leg, machine@state…)."""
        return Logger(self._logger, {**self._base, **fields})

    def is_enabled(self, level: int) -> bool:
        return self._logger.isEnabledFor(level)

    def _log(self, level: int, msg: str, fields: dict[str, Any], exc_info: Any = None) -> None:
        logger = self._logger
        if logger.isEnabledFor(level):
            merged = {**self._base, **fields} if self._base else fields
            if exc_info is True:
                exc_info = sys.exc_info()
            # The record is made here rather than by ``logger.log``: that walks the stack
            # for the caller's file and line on every line, which no formatter shows.
            logger.handle(_Record(logger.name, level, msg, exc_info, merged))

    def debug(self, msg: str, **fields: Any) -> None:
        self._log(logging.DEBUG, msg, fields)

    def info(self, msg: str, **fields: Any) -> None:
        self._log(logging.INFO, msg, fields)

    def warning(self, msg: str, **fields: Any) -> None:
        self._log(logging.WARNING, msg, fields)

    def error(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields)

    def milestone(self, msg: str, **fields: Any) -> None:
        """A lifecycle line (ready, draining, stopped) shown whatever LOGLEVEL says: at info,
        or at the configured level when that is higher."""
        level = max(logging.INFO, self._logger.getEffectiveLevel())
        self._log(level, msg, fields)

    def exception(self, msg: str, **fields: Any) -> None:
        self._log(logging.ERROR, msg, fields, exc_info=True)


def get_logger(name: str, **base: Any) -> Logger:
    return Logger(logging.getLogger(name), base)


def configure(level: str = "info", fmt: str = "json", stream: Any = None) -> None:
    """Install the formatter on the root logger (called once by the CLI)."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    # Nothing we format shows a record's thread or process: skip collecting them.
    logging.logThreads = logging.logProcesses = logging.logMultiprocessing = False
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("transitions", "asyncio", "aiohttp.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
