"""SIP messages: lazy parsing, header access, mutation and serialisation.

The parser splits the start line and header lines once into a list of
``(name as received, raw value)`` plus an index ``key -> positions`` (key =
lower-case name, compact forms expanded). It validates only what every
receiver needs and what is cheap: the start line, one each of Call-ID/CSeq/
From/To and at least one Via, the CSeq (and its method against the request
method), Content-Length against the body, and size caps. Structured headers
(Via, From/To, Contact, Route, the Request-URI…) are parsed on first access and
cached; their accessors raise :class:`SipParseError` on bad input too.

This is the hot path of the embedded stack: plain ``str`` methods, a handful
of precompiled regexes, ``__slots__`` and no per-header objects.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping

from engine.sip.errors import REPLY_HEADERS, SipParseError
from engine.sip.headers import (
    LIST_HEADERS,
    CSeq,
    Via,
    canonical_name,
    checked_header_key,
    header_key,
    parse_cseq,
    parse_uint,
    parse_via,
    split_list,
)
from engine.sip.uri import NameAddr, SipUri, parse_name_addr, parse_uri

MAX_MESSAGE_SIZE = 65535  # largest UDP payload; also our cap for TCP messages
MAX_HEADERS = 256  # physical header lines (folded continuation lines included)
MAX_LINE = 16384  # one physical line

_METHOD_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_RURI_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*:[^\s<>\"]+")
_VERSION_RE = re.compile(r"SIP/[0-9]+\.[0-9]+", re.IGNORECASE)
_REQUIRED = ("call-id", "cseq", "from", "to")
_SINGLE = ("call-id", "cseq", "from", "to", "content-length", "max-forwards")

HeaderItems = Iterable[tuple[str, str]] | Mapping[str, str]


class SipMessage:
    """Common part of requests and responses (satisfies ``ports.SipMessageView``).

    ``headers`` is the ordered list of ``(name, value)``; mutate it only through
    the methods below so the index and the parsed-header cache stay right.
    """

    __slots__ = ("_cache", "_index", "body", "headers")

    is_request = False

    def __init__(self, headers: HeaderItems = (), body: bytes = b""):
        items = headers.items() if isinstance(headers, Mapping) else headers
        self.headers: list[tuple[str, str]] = [(n, str(v)) for n, v in items]
        self.body = body
        self._index: dict[str, list[int]] | None = None
        self._cache: dict[str, object] = {}

    # ------------------------------------------------------------------ index

    def _idx(self) -> dict[str, list[int]]:
        index = self._index
        if index is None:
            index = {}
            for i, (name, _) in enumerate(self.headers):
                key = header_key(name)
                pos = index.get(key)
                if pos is None:
                    index[key] = [i]
                else:
                    pos.append(i)
            self._index = index
        return index

    def _changed(self, key: str) -> None:
        self._index = None
        cache = self._cache
        if cache:
            cache.pop(key, None)
            if key == "via":
                cache.pop("via0", None)

    # ------------------------------------------------------------------ read access

    def has(self, name: str) -> bool:
        return header_key(name) in self._idx()

    def header(self, name: str) -> str | None:
        """First value of ``name`` (first list element for list headers), or None."""
        key = header_key(name)
        pos = self._idx().get(key)
        if not pos:
            return None
        value = self.headers[pos[0]][1]
        if key in LIST_HEADERS and "," in value:
            try:
                values = split_list(value)
            except SipParseError:
                return value
            return values[0] if values else ""
        return value

    def header_lines(self, name: str) -> list[str]:
        """Raw value of every line of ``name`` (no comma splitting)."""
        headers = self.headers
        return [headers[i][1] for i in self._idx().get(header_key(name), ())]

    def header_values(self, name: str) -> list[str]:
        """Every value of ``name``: repeated lines and, for list headers, comma-joined
        elements, in order. Raises :class:`SipParseError` on unbalanced quotes."""
        key = header_key(name)
        pos = self._idx().get(key)
        if not pos:
            return []
        headers = self.headers
        if key not in LIST_HEADERS:
            return [headers[i][1] for i in pos]
        out: list[str] = []
        for i in pos:
            value = headers[i][1]
            if "," in value:
                out.extend(split_list(value))
            elif value:
                out.append(value)
        return out

    # ------------------------------------------------------------------ mutation

    def add_header(self, name: str, value: str, *, first: bool = False) -> None:
        """Append a header line; ``first=True`` puts it before the other lines of the
        same header (or at the top) — how a Via or Route is prepended."""
        key = header_key(name)
        if first:
            pos = self._idx().get(key)
            self.headers.insert(pos[0] if pos else 0, (name, value))
        else:
            self.headers.append((name, value))
        self._changed(key)

    def set_header(self, name: str, value: str) -> None:
        """Replace every line of ``name`` by one line (at the first one's place)."""
        key = header_key(name)
        pos = self._idx().get(key)
        if not pos:
            self.headers.append((name, value))
        else:
            self.headers[pos[0]] = (self.headers[pos[0]][0], value)
            for i in reversed(pos[1:]):
                del self.headers[i]
        self._changed(key)

    def remove_header(self, name: str) -> int:
        key = header_key(name)
        pos = self._idx().get(key)
        if not pos:
            return 0
        for i in reversed(pos):
            del self.headers[i]
        self._changed(key)
        return len(pos)

    def set_top_value(self, name: str, value: str) -> None:
        """Replace the first element of a list header (e.g. the top Via after adding
        ``received``/``rport``), keeping the other elements of its line."""
        key = header_key(name)
        pos = self._idx().get(key)
        if not pos:
            self.headers.append((name, value))
        else:
            hname, line = self.headers[pos[0]]
            rest = split_list(line)[1:] if "," in line else []
            self.headers[pos[0]] = (hname, ", ".join([value, *rest]))
        self._changed(key)

    def replace_top_via(self, via: Via) -> None:
        """Write back a modified top Via (``received``/``rport``), keeping it cached."""
        self.set_top_value("Via", str(via))
        self._cache["via0"] = via

    def pop_top_value(self, name: str) -> str | None:
        """Remove and return the first element of a list header (e.g. a Route we own)."""
        key = header_key(name)
        pos = self._idx().get(key)
        if not pos:
            return None
        hname, line = self.headers[pos[0]]
        values = split_list(line) if "," in line else [line.strip()]
        if len(values) > 1:
            self.headers[pos[0]] = (hname, ", ".join(values[1:]))
        else:
            del self.headers[pos[0]]
        self._changed(key)
        return values[0] if values else None

    # ------------------------------------------------------------------ parsed headers

    @property
    def call_id(self) -> str:
        return self.header("call-id") or ""

    @property
    def cseq(self) -> CSeq:
        c = self._cache.get("cseq")
        if c is None:
            raw = self.header("cseq")
            if raw is None:
                raise SipParseError("Missing CSeq header")
            c = self._cache["cseq"] = parse_cseq(raw)
        return c  # type: ignore[return-value]

    @property
    def top_via(self) -> Via:
        v = self._cache.get("via0")
        if v is None:
            raw = self.header("via")
            if not raw:
                raise SipParseError("Missing Via header")
            v = self._cache["via0"] = parse_via(raw)
        return v  # type: ignore[return-value]

    @property
    def vias(self) -> list[Via]:
        v = self._cache.get("via")
        if v is None:
            v = self._cache["via"] = [parse_via(x) for x in self.header_values("via")]
        return v  # type: ignore[return-value]

    def _addr(self, key: str) -> NameAddr:
        a = self._cache.get(key)
        if a is None:
            raw = self.header(key)
            if raw is None:
                raise SipParseError(f"Missing {canonical_name(key)} header")
            a = self._cache[key] = parse_name_addr(raw)
        return a  # type: ignore[return-value]

    @property
    def from_(self) -> NameAddr:
        return self._addr("from")

    @property
    def to(self) -> NameAddr:
        return self._addr("to")

    @property
    def from_tag(self) -> str | None:
        return self._addr("from").params.get("tag")

    @property
    def to_tag(self) -> str | None:
        return self._addr("to").params.get("tag")

    def _addr_list(self, key: str) -> list[NameAddr]:
        a = self._cache.get(key)
        if a is None:
            a = self._cache[key] = [parse_name_addr(x) for x in self.header_values(key)]
        return a  # type: ignore[return-value]

    @property
    def contact_is_star(self) -> bool:
        """``Contact: *`` (REGISTER removing every binding)."""
        return self.header_values("contact") == ["*"]

    @property
    def contacts(self) -> list[NameAddr]:
        """Parsed Contact values ([] for ``*``; check :attr:`contact_is_star`)."""
        if self.contact_is_star:
            return []
        return self._addr_list("contact")

    @property
    def routes(self) -> list[NameAddr]:
        return self._addr_list("route")

    @property
    def record_routes(self) -> list[NameAddr]:
        return self._addr_list("record-route")

    @property
    def content_type(self) -> str | None:
        """Media type without parameters, lower-case (``application/sdp``)."""
        raw = self.header("content-type")
        if raw is None:
            return None
        return raw.split(";", 1)[0].strip().lower()

    @property
    def expires(self) -> int | None:
        raw = self.header("expires")
        return None if raw is None else parse_uint(raw, "Expires")

    @property
    def max_forwards(self) -> int | None:
        raw = self.header("max-forwards")
        return None if raw is None else parse_uint(raw, "Max-Forwards", 255)

    # ------------------------------------------------------------------ output

    def start_line(self) -> str:
        raise NotImplementedError

    def to_bytes(self) -> bytes:
        """Serialise with a correct Content-Length (replacing any given one)."""
        parts = [self.start_line(), "\r\n"]
        cl = self._idx().get("content-length")
        if cl is None:
            for name, value in self.headers:
                parts += (name, ": ", value, "\r\n")
            parts += ("Content-Length: ", str(len(self.body)), "\r\n\r\n")
        else:
            first = cl[0]
            for i, (name, value) in enumerate(self.headers):
                if i == first:
                    parts += (name, ": ", str(len(self.body)), "\r\n")
                elif i not in cl:
                    parts += (name, ": ", value, "\r\n")
            parts.append("\r\n")
        return "".join(parts).encode("utf-8", "surrogateescape") + self.body

    __bytes__ = to_bytes

    def reply_context(self) -> list[tuple[str, str]]:
        """The raw Via/From/To/Call-ID/CSeq lines, for a :class:`SipParseError` raised
        while reading a structured header of an already parsed message."""
        return [(n, v) for n, v in self.headers if header_key(n) in REPLY_HEADERS]

    def _copy_into(self, other: SipMessage) -> None:
        other.headers = list(self.headers)
        other.body = self.body
        other._index = None
        other._cache = {}


class SipRequest(SipMessage):
    __slots__ = ("_uri", "method")

    is_request = True

    def __init__(self, method: str, uri: str | SipUri, headers: HeaderItems = (),
                 body: bytes = b""):
        super().__init__(headers, body)
        self.method = method
        self._uri = str(uri)

    @property
    def uri(self) -> str:
        """The Request-URI as text."""
        return self._uri

    @uri.setter
    def uri(self, value: str | SipUri) -> None:
        self._uri = str(value)
        self._cache.pop(":ruri", None)

    @property
    def request_uri(self) -> SipUri:
        u = self._cache.get(":ruri")
        if u is None:
            u = parse_uri(self._uri)
            if u.is_sip and u.headers is not None:
                # §19.1.1: headers are not allowed in a Request-URI.
                raise SipParseError("Request-URI must not contain headers")
            self._cache[":ruri"] = u
        return u  # type: ignore[return-value]

    def start_line(self) -> str:
        return f"{self.method} {self._uri} SIP/2.0"

    def copy(self) -> SipRequest:
        out = SipRequest.__new__(SipRequest)
        self._copy_into(out)
        out.method = self.method
        out._uri = self._uri
        return out

    def __repr__(self) -> str:
        return f"<SipRequest {self.method} {self._uri}>"


class SipResponse(SipMessage):
    __slots__ = ("reason", "status")

    def __init__(self, status: int, reason: str = "", headers: HeaderItems = (),
                 body: bytes = b""):
        super().__init__(headers, body)
        self.status = status
        self.reason = reason

    def start_line(self) -> str:
        return f"SIP/2.0 {self.status} {self.reason}"

    def copy(self) -> SipResponse:
        out = SipResponse.__new__(SipResponse)
        self._copy_into(out)
        out.status = self.status
        out.reason = self.reason
        return out

    def __repr__(self) -> str:
        return f"<SipResponse {self.status} {self.reason}>"


# --------------------------------------------------------------------------- parser


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
        err = SipParseError("Unparseable message")
        salvage_context(err, data)
        raise err from exc


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
