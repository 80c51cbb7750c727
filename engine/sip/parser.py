"""Parsing SIP messages from bytes (RFC 3261 §7, §20, §25), hardened.

The parser splits the start line and header lines once into a list of
``(name as received, raw value)`` plus an index ``key -> positions`` (key =
lower-case name, compact forms expanded) and validates only what every
receiver needs and what is cheap: the start line, one each of Call-ID/CSeq/
From/To and at least one Via, the CSeq (and its method against the request
method), Content-Length against the body, and the size caps. Everything else
is parsed on access (see :mod:`engine.sip.message`).

Only :class:`SipParseError` ever leaves :func:`parse_message`; it carries the
salvaged Via/From/To/Call-ID/CSeq lines so the transport can answer 400 (or
505/513) with the precise reason, or knows to drop.
"""

from __future__ import annotations

import re

from engine.sip.errors import REPLY_HEADERS, SipParseError
from engine.sip.headers import (
    _NAME_CACHE,
    canonical_name,
    checked_header_key,
    header_key,
    parse_cseq,
    parse_uint,
    parse_via,
    split_list,
)
from engine.sip.message import SipRequest, SipResponse

MAX_MESSAGE_SIZE = 65535  # largest UDP payload; also our cap for TCP messages
MAX_HEADERS = 256  # physical header lines (folded continuation lines included)
MAX_LINE = 16384  # one physical line

_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_RURI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_REQUIRED = ("call-id", "cseq", "from", "to")
_SINGLE = ("call-id", "cseq", "from", "to", "content-length", "max-forwards")


def is_keepalive(data: bytes) -> bool:
    """A datagram/segment made only of CR/LF (RFC 5626 ping ``CRLFCRLF`` or pong)."""
    return not data.strip(b"\r\n") and bool(data)


def parse_message(data: bytes, *, max_size: int = MAX_MESSAGE_SIZE) -> SipRequest | SipResponse:
    """Parse one complete message (a UDP datagram or a framed TCP message).

    Raises :class:`SipParseError` — and no other exception — on malformed input;
    the error carries the salvaged Via/From/To/Call-ID/CSeq lines.
    """
    try:
        return _parse(data, max_size)
    except SipParseError as err:
        if not err.context:
            salvage_context(err, data)
        raise
    except Exception as exc:  # a parser bug must still look like bad input to the caller
        bad = SipParseError("Unparseable message")
        salvage_context(bad, data)
        raise bad from exc


def _parse(data: bytes, max_size: int) -> SipRequest | SipResponse:
    if len(data) > max_size:
        raise SipParseError("Message Too Large", status=513)
    if data[:1] in (b"\r", b"\n"):
        data = data.lstrip(b"\r\n")  # §7.5: CRLFs before the start line are ignored
    end = data.find(b"\r\n\r\n")
    if end >= 0:
        body_start = end + 4
    else:
        end = data.find(b"\n\n")
        if end < 0:
            if not data:
                raise SipParseError("Empty message")
            raise SipParseError("Missing empty line after headers")
        body_start = end + 2
    text = data[:end].decode("utf-8", "surrogateescape")
    lines = text.split("\r\n")
    nlines = len(lines) - 1
    if text.count("\n") != nlines or text.count("\r") != nlines:
        # Bare LF line ends (lenient); a bare CR inside a line is never valid.
        lines = re.split(r"\r?\n", text)
        if any("\r" in line for line in lines):
            raise SipParseError("Bare CR in header section")
    if len(lines) > MAX_HEADERS + 1:
        raise SipParseError("Too many header lines")
    if end > MAX_LINE and any(len(line) > MAX_LINE for line in lines):
        raise SipParseError("Header line too long")

    # ---- start line
    start = lines[0]
    msg: SipRequest | SipResponse
    if start[:4].upper() == "SIP/":
        version, _, rest = start.partition(" ")
        code, _, reason = rest.partition(" ")
        if version.upper() != "SIP/2.0":
            raise SipParseError("Unsupported SIP version", status=505, is_request=False)
        if len(code) != 3 or not code.isdigit() or not code.isascii() or code[0] not in "123456":
            raise SipParseError("Malformed status code", is_request=False)
        msg = SipResponse.__new__(SipResponse)
        msg.status = int(code)
        msg.reason = reason
    else:
        parts = start.split(" ")
        if len(parts) != 3:
            raise SipParseError("Malformed Request-Line", is_request=True,
                                method=parts[0] if _METHOD_RE.fullmatch(parts[0]) else None)
        method, uri, version = parts
        if not _METHOD_RE.fullmatch(method):
            raise SipParseError("Malformed Request-Line")
        if version.upper() != "SIP/2.0":
            if _VERSION_RE.fullmatch(version):
                raise SipParseError("Version Not Supported", status=505, is_request=True,
                                    method=method)
            raise SipParseError("Malformed Request-Line", is_request=True, method=method)
        if not _RURI_RE.fullmatch(uri):
            raise SipParseError("Malformed Request-URI", is_request=True, method=method)
        msg = SipRequest.__new__(SipRequest)
        msg.method = method
        msg._uri = uri

    # ---- header lines, unfolded
    headers: list[tuple[str, str]] = []
    index: dict[str, list[int]] = {}
    known = _NAME_CACHE.get  # valid names seen before -> key (skips validation)
    for line in lines[1:]:
        c = line[:1]
        if c in {" ", "\t"}:
            if not headers:
                raise SipParseError("Continuation line before first header")
            name, value = headers[-1]
            more = line.strip(" \t")
            headers[-1] = (name, value + " " + more if value else more)
            continue
        name, colon, value = line.partition(":")
        if not colon:
            raise SipParseError("Header line without colon" if line else "Empty header line")
        key = known(name)
        if key is None:
            name = name.rstrip(" \t")
            key = checked_header_key(name)
            if key is None:
                raise SipParseError("Invalid header name")
        pos = index.get(key)
        if pos is None:
            index[key] = [len(headers)]
        else:
            pos.append(len(headers))
        headers.append((name, value.strip(" \t")))

    msg.headers = headers
    msg._index = index
    cache: dict[str, object] = {}
    msg._cache = cache

    # ---- mandatory headers and the cheap scalar checks
    if "via" not in index:
        raise SipParseError("Missing Via header")
    for key in _REQUIRED:
        if key not in index:
            raise SipParseError(f"Missing {canonical_name(key)} header")
    for key in _SINGLE:
        pos = index.get(key)
        if pos is not None and len(pos) > 1:
            raise SipParseError(f"Multiple {canonical_name(key)} headers")
    if not headers[index["call-id"][0]][1]:
        raise SipParseError("Empty Call-ID header")
    cseq = parse_cseq(headers[index["cseq"][0]][1])
    cache["cseq"] = cseq
    if msg.is_request and cseq.method != msg.method:  # type: ignore[union-attr]
        raise SipParseError("CSeq method does not match Request-Line")

    body = data[body_start:]
    pos = index.get("content-length")
    if pos is not None:
        length = parse_uint(headers[pos[0]][1], "Content-Length")
        if length > len(body):
            raise SipParseError("Content-Length larger than body")
        if length < len(body):
            body = body[:length]  # §18.3: extra datagram octets are discarded
    msg.body = body
    return msg


def salvage_context(err: SipParseError, data: bytes) -> None:
    """Best effort: fill ``err`` with the start-line kind/method and the raw lines of
    the five reply headers found in ``data``; never raises."""
    try:
        head = data[:MAX_MESSAGE_SIZE].lstrip(b"\r\n")
        end = head.find(b"\r\n\r\n")
        if end >= 0:
            head = head[:end]
        lines = re.split(r"\r?\n", head.decode("utf-8", "replace"))[: MAX_HEADERS + 1]
        start = lines[0] if lines else ""
        if err.is_request is None:
            if start[:4].upper() == "SIP/":
                err.is_request = False
            else:
                parts = start.split(" ")
                if len(parts) >= 2 and _METHOD_RE.fullmatch(parts[0]):
                    err.is_request = True
                    err.method = parts[0]
        if not err.is_request:
            return
        context: list[tuple[str, str]] = []
        last_kept = False
        for line in lines[1:]:
            if line[:1] in (" ", "\t"):
                if context and last_kept:
                    context[-1] = (context[-1][0], f"{context[-1][1]} {line.strip()}")
                continue
            name, colon, value = line.partition(":")
            last_kept = False
            if not colon or len(line) > MAX_LINE:
                continue
            name = name.strip()
            if "\r" in value or "\n" in value or header_key(name) not in REPLY_HEADERS:
                continue
            context.append((name, value.strip()))
            last_kept = True
        if not context:
            return
        # A top Via we cannot parse gives no usable reply destination.
        vias = [v for n, v in context if header_key(n) == "via"]
        if vias:
            try:
                parse_via(split_list(vias[0])[0])
            except (SipParseError, IndexError):
                context = [(n, v) for n, v in context if header_key(n) != "via"]
        err.context = context
    except Exception:  # never let context salvage turn into a second failure
        err.context = []
