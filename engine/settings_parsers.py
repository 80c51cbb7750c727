"""Value parsers of the settings table (``engine.settings.VARIABLES``)."""

from __future__ import annotations

import json
import math
import os
from collections.abc import Callable
from pathlib import Path

# --------------------------------------------------------------------------- parsers
# Each parser takes the raw string and returns the value, or raises ValueError
# whose text is the accepted form ("an integer ≥ 0", …).


def _str(raw: str) -> str:
    return raw


def _opt_str(raw: str) -> str | None:
    return raw or None


def _int(minimum: int | None = None, maximum: int | None = None) -> Callable[[str], int]:
    def parse(raw: str) -> int:
        form = "an integer"
        if minimum is not None and maximum is not None:
            form = f"an integer from {minimum} to {maximum}"
        elif minimum is not None:
            form = f"an integer ≥ {minimum}"
        try:
            value = int(raw.strip())
        except ValueError:
            raise ValueError(form) from None
        if (minimum is not None and value < minimum) or (maximum is not None and value > maximum):
            raise ValueError(form)
        return value

    return parse


def _float(minimum: float = 0.0, *, strict: bool = False) -> Callable[[str], float]:
    def parse(raw: str) -> float:
        form = f"a number {'>' if strict else '≥'} {minimum:g} (seconds)"
        try:
            value = float(raw.strip())
        except ValueError:
            raise ValueError(form) from None
        if math.isnan(value) or value < minimum or (strict and value == minimum):
            raise ValueError(form)
        return value

    return parse


_TRUE = {"1", "true", "yes", "on"}
_FALSE = {"0", "false", "no", "off", ""}


def _bool(raw: str) -> bool:
    low = raw.strip().lower()
    if low in _TRUE:
        return True
    if low in _FALSE:
        return False
    raise ValueError("true or false")


def _choice(*options: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        low = raw.strip().lower()
        if low not in options:
            raise ValueError("one of " + ", ".join(options))
        return low

    return parse


def _codec_list(raw: str) -> tuple[str, ...]:
    """``["G722","PCMA"]`` (JSON) or ``G722,PCMA`` (comma list) — D-6."""
    text = raw.strip()
    form = 'a JSON list of codec names (["PCMU","PCMA"]) or a comma list (PCMU,PCMA)'
    if text.startswith("["):
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            raise ValueError(form) from None
        if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
            raise ValueError(form)
        items = [v.strip() for v in value]
    else:
        items = [v.strip() for v in text.split(",")]
    if not items or any(not v or " " in v for v in items):
        raise ValueError(form)
    return tuple(items)


def _transports(raw: str) -> tuple[str, ...]:
    form = "a comma list of udp, tcp"
    items = tuple(dict.fromkeys(v.strip().lower() for v in raw.split(",") if v.strip()))
    if not items or any(v not in ("udp", "tcp") for v in items):
        raise ValueError(form)
    return items


def _host_ports(default_port_env: str) -> Callable[[str], tuple[tuple[str, int | None], ...]]:
    """``host[:port]`` entries separated by commas; ports resolved later."""

    def parse(raw: str) -> tuple[tuple[str, int | None], ...]:
        form = "host[:port] entries separated by commas (IPv6 as [addr]:port)"
        out: list[tuple[str, int | None]] = []
        for part in raw.split(","):
            item = part.strip()
            if not item:
                continue
            host, port = _split_host_port(item, form)
            out.append((host, port))
        if not out:
            raise ValueError(form)
        return tuple(out)

    return parse


def _split_host_port(item: str, form: str) -> tuple[str, int | None]:
    if item.startswith("["):
        end = item.find("]")
        if end < 0:
            raise ValueError(form)
        host, rest = item[1:end], item[end + 1 :]
        if rest and not rest.startswith(":"):
            raise ValueError(form)
        port_text = rest[1:] if rest else ""
    elif item.count(":") == 1:
        host, port_text = item.split(":")
    elif item.count(":") > 1:  # bare IPv6 literal without port
        host, port_text = item, ""
    else:
        host, port_text = item, ""
    if not host or any(c.isspace() for c in host):
        raise ValueError(form)
    if port_text:
        if not port_text.isdigit() or not 0 < int(port_text) < 65536:
            raise ValueError(form)
        return host, int(port_text)
    return host, None


def _url(*schemes: str) -> Callable[[str], str]:
    def parse(raw: str) -> str:
        form = "a URL starting with " + " or ".join(f"{s}://" for s in schemes)
        text = raw.strip()
        if not any(text.startswith(f"{s}://") and len(text) > len(s) + 3 for s in schemes):
            raise ValueError(form)
        return text

    return parse


def _path(raw: str) -> Path:
    if not raw.strip():
        raise ValueError("a filesystem path")
    return Path(raw).expanduser().resolve()


def _loglevel(raw: str) -> str:
    low = raw.strip().lower()
    aliases = {"warn": "warning", "fatal": "critical", "trace": "debug", "silent": "critical"}
    low = aliases.get(low, low)
    if low not in ("debug", "info", "warning", "error", "critical"):
        raise ValueError("one of debug, info, warn, error, fatal")
    return low


def _ringtone(raw: str) -> str:
    text = raw.strip()
    if not (text.startswith(("file:", "http://", "https://"))):
        raise ValueError("a file:<path> or http(s):// URL")
    return text


def _instance_id(raw: str) -> str:
    text = raw.strip()
    if not text or any(c.isspace() or c == ":" for c in text):
        raise ValueError("a name without spaces or ':'")
    return text


def _workers(raw: str) -> int:
    text = raw.strip().lower()
    if text == "auto":
        return max(1, os.cpu_count() or 1)
    if text.isdigit() and 1 <= int(text) <= 256:
        return int(text)
    raise ValueError("an integer from 1 to 256, or auto")


def _worker_index(raw: str) -> int | None:
    return _int(0)(raw) if raw.strip() else None


