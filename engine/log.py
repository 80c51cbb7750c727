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


class JsonFormatter(logging.Formatter):
    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, Any] = {
            "time": time.strftime("%Y-%m-%dT%H:%M:%S", time.gmtime(record.created))
            + f".{int(record.msecs):03d}Z",
            "level": record.levelname.lower(),
            "logger": record.name,
            "msg": redact_text(record.getMessage()),
        }
        fields = getattr(record, "fields", None)
        if fields:
            out.update(redact(fields))
        if record.exc_info:
            out["exc"] = redact_text(self.formatException(record.exc_info))
        return json.dumps(out, default=str, ensure_ascii=False)


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
        if self._logger.isEnabledFor(level):
            merged = {**self._base, **fields} if self._base else fields
            self._logger.log(level, msg, extra={"fields": merged}, exc_info=exc_info,
                             stacklevel=3)

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
    root = logging.getLogger()
    root.handlers[:] = [handler]
    root.setLevel(level.upper())
    for noisy in ("transitions", "asyncio", "aiohttp.access", "httpx", "httpcore"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
