"""SIP messages: header access, mutation and serialisation.

A message is its start line, the ordered list of ``(name as received, raw
value)`` header lines, an index ``key -> positions`` (key = lower-case name,
compact forms expanded) and the body as bytes. Structured headers (Via,
From/To, Contact, Route, the Request-URI…) are parsed on first access and
cached; their accessors raise :class:`SipParseError` on bad input. Parsing
from bytes lives in :mod:`engine.sip.parser`.

This is the hot path of the embedded stack: plain ``str`` methods, a handful
of precompiled regexes, ``__slots__`` and no per-header objects.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

from engine.sip.errors import REPLY_HEADERS, SipParseError
from engine.sip.headers import (
    _NAME_CACHE,
    LIST_HEADERS,
    CSeq,
    Via,
    canonical_name,
    header_key,
    parse_cseq,
    parse_uint,
    parse_via,
    split_list,
)
from engine.sip.uri import NameAddr, SipUri, parse_name_addr, parse_uri

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
        self._forget(key)

    def _forget(self, key: str) -> None:
        """Drop what the parsed-header cache holds for ``key``."""
        cache = self._cache
        if cache:
            cache.pop(key, None)
            if key == "via":
                cache.pop("via0", None)
            elif key == "contact":
                cache.pop("contact*", None)

    # ------------------------------------------------------------------ read access

    def compact(self) -> None:
        """Drop the header index and the parsed-header cache (rebuilt on next access): for
        messages that are kept for a long time but rarely read again, such as the INVITE
        of a call in progress."""
        self._index = None
        self._cache = {}

    def has(self, name: str) -> bool:
        return header_key(name) in self._idx()

    def header(self, name: str) -> str | None:
        """First value of ``name`` (first list element for list headers), or None."""
        key = _NAME_CACHE.get(name) or header_key(name)
        index = self._index
        pos = (index if index is not None else self._idx()).get(key)
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
            self._changed(key)
            return
        headers = self.headers
        headers.append((name, value))
        index = self._index
        if index is None:
            self._forget(key)
            return
        # Appending moves no other line: the index stays valid with one more entry, so
        # serialising (the Server header added to every response) needs no rescan.
        pos = index.get(key)
        if pos is None:
            index[key] = [len(headers) - 1]
        else:
            pos.append(len(headers) - 1)
        self._forget(key)

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
        star = self._cache.get("contact*")
        if star is None:  # asked several times per REGISTER: split the lines once
            star = self._cache["contact*"] = self.header_values("contact") == ["*"]
        return star  # type: ignore[return-value]

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


_MOVED_TO_PARSER = frozenset({"parse_message", "is_keepalive", "salvage_context",
                              "MAX_MESSAGE_SIZE", "MAX_HEADERS", "MAX_LINE"})


def __getattr__(name: str) -> object:
    """Parsing moved to :mod:`engine.sip.parser`; keep ``from engine.sip.message
    import parse_message`` working without an import cycle."""
    if name in _MOVED_TO_PARSER:
        from engine.sip import parser

        return getattr(parser, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
