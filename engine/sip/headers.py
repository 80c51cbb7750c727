"""Header-field grammar: names, compact forms, list splitting, parameters, Via, CSeq.

Everything here works on ``str`` values already unfolded by the message
parser. Functions raise :class:`SipParseError` and nothing else on bad input.
"""

from __future__ import annotations

import re

from engine.sip.errors import SipParseError

# RFC 3261 §7.3.3 and later RFCs (3515 Refer-To, 3892 Referred-By, 3265 Event,
# 4028 Session-Expires, 3841 Accept/Reject-Contact, 4474 Identity).
COMPACT_FORMS: dict[str, str] = {
    "a": "accept-contact",
    "b": "referred-by",
    "c": "content-type",
    "d": "request-disposition",
    "e": "content-encoding",
    "f": "from",
    "i": "call-id",
    "j": "reject-contact",
    "k": "supported",
    "l": "content-length",
    "m": "contact",
    "n": "identity-info",
    "o": "event",
    "r": "refer-to",
    "s": "subject",
    "t": "to",
    "u": "allow-events",
    "v": "via",
    "x": "session-expires",
    "y": "identity",
}

# How we spell headers we create ourselves (received names are kept verbatim).
_CANONICAL: dict[str, str] = {
    name.lower(): name
    for name in (
        "Accept", "Accept-Contact", "Accept-Encoding", "Accept-Language", "Alert-Info", "Allow",
        "Allow-Events", "Authentication-Info", "Authorization", "Call-ID", "Call-Info",
        "Contact", "Content-Disposition", "Content-Encoding", "Content-Language",
        "Content-Length", "Content-Type", "CSeq", "Date", "Diversion", "Error-Info", "Event",
        "Expires", "From", "History-Info", "Identity", "Identity-Info", "In-Reply-To",
        "Max-Forwards", "Min-Expires", "Min-SE", "MIME-Version", "Organization",
        "P-Asserted-Identity", "P-Preferred-Identity", "Path", "Priority", "Privacy",
        "Proxy-Authenticate", "Proxy-Authorization", "Proxy-Require", "RAck", "Reason",
        "Record-Route", "Refer-To", "Referred-By", "Reject-Contact", "Replaces",
        "Reply-To", "Request-Disposition", "Require", "Retry-After", "Route", "RSeq",
        "Server", "Service-Route", "Session-Expires", "SIP-ETag", "SIP-If-Match", "Subject",
        "Subscription-State", "Supported", "Timestamp", "To", "Unsupported", "User-Agent",
        "Via", "Warning", "WWW-Authenticate",
    )
}

# Headers whose grammar is a comma-separated list (RFC 3261 §7.3.1): several
# values may share one line and several lines form one list. Others (Date,
# Subject, User-Agent, the auth headers) may contain commas inside one value.
LIST_HEADERS = frozenset({
    "via", "route", "record-route", "contact", "allow", "supported", "require",
    "proxy-require", "unsupported", "accept", "accept-encoding", "accept-language",
    "content-encoding", "content-language", "allow-events", "path", "service-route",
    "p-asserted-identity", "p-preferred-identity", "history-info", "diversion", "reason",
    "warning", "in-reply-to", "call-info", "alert-info", "error-info", "accept-contact",
    "reject-contact", "request-disposition", "security-client", "security-server",
    "security-verify",
})

_TOKEN_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~]+")
_NAME_CACHE: dict[str, str] = {}
_NAME_CACHE_MAX = 2048


def header_key(name: str) -> str:
    """Lookup key of a header name: lower case, compact form expanded."""
    key = _NAME_CACHE.get(name)
    if key is None:
        lname = name.lower()
        key = COMPACT_FORMS.get(lname, lname)
        # Only valid names enter the cache: checked_header_key trusts it.
        if len(_NAME_CACHE) < _NAME_CACHE_MAX and _TOKEN_RE.fullmatch(name):
            _NAME_CACHE[name] = key
    return key


def checked_header_key(name: str) -> str | None:
    """Like :func:`header_key` for names read from the wire; None if not a token."""
    key = _NAME_CACHE.get(name)
    if key is None:
        if not _TOKEN_RE.fullmatch(name):
            return None
        lname = name.lower()
        key = COMPACT_FORMS.get(lname, lname)
        if len(_NAME_CACHE) < _NAME_CACHE_MAX:
            _NAME_CACHE[name] = key
    return key


def canonical_name(name: str) -> str:
    """Display spelling for a header we write (``call-id`` -> ``Call-ID``)."""
    key = header_key(name)
    canon = _CANONICAL.get(key)
    if canon is not None:
        return canon
    return "-".join(part[:1].upper() + part[1:] for part in name.split("-"))


def is_token(text: str) -> bool:
    return _TOKEN_RE.fullmatch(text) is not None


# --------------------------------------------------------------------------- quoting

_QUOTED_RE = re.compile(r'"[^"\\]*(?:\\.[^"\\]*)*"', re.S)


def find_quote_end(text: str, start: int) -> int:
    """Index of the closing quote of the quoted-string opening at ``start``."""
    m = _QUOTED_RE.match(text, start)
    if m is None:
        raise SipParseError("Unterminated quoted string")
    return m.end() - 1


def unquote(text: str) -> str:
    """Strip the quotes of a quoted-string and resolve its backslash escapes."""
    if len(text) >= 2 and text[0] == '"' and text[-1] == '"':
        inner = text[1:-1]
        if "\\" in inner:
            return re.sub(r"\\(.)", r"\1", inner, flags=re.S)
        return inner
    return text


def quote(text: str) -> str:
    """Make a quoted-string of ``text`` (escaping backslashes and quotes)."""
    return '"' + text.replace("\\", "\\\\").replace('"', '\\"') + '"'


# --------------------------------------------------------------------------- lists

# A list element is a run of: quoted strings, <...> URIs, or any other
# character but a comma. Unbalanced quotes/brackets are detected afterwards.
_ELEMENT_RE = re.compile(r'(?:"[^"\\]*(?:\\.[^"\\]*)*"|<[^>]*>|[^,"<]+)+', re.S)


def split_list(value: str) -> list[str]:
    """Split a comma-separated header value, ignoring commas in quotes and <>."""
    if "," not in value:
        v = value.strip()
        return [v] if v else []
    out: list[str] = []
    pos = 0
    n = len(value)
    while pos < n:
        m = _ELEMENT_RE.match(value, pos)
        if m is None:
            ch = value[pos]
            if ch == ",":
                pos += 1
                continue
            raise SipParseError(
                "Unterminated quoted string" if ch == '"' else "Unbalanced '<' in header value"
            )
        elem = m.group().strip()
        if elem:
            out.append(elem)
        pos = m.end()
    return out


# --------------------------------------------------------------------------- parameters

_PARAM_RE = re.compile(
    r'[ \t]*;[ \t]*([^\s;=,"<>?]+)[ \t]*(?:=[ \t]*("[^"\\]*(?:\\.[^"\\]*)*"|[^\s;,"<>]*))?[ \t]*'
)

Params = dict[str, "str | None"]


def parse_params(text: str, pos: int = 0, *, what: str = "header") -> Params:
    """Parse ``;name[=value]`` pairs from ``text[pos:]`` to its end.

    Names are lower-cased (they are case-insensitive); values are kept raw
    (a quoted value keeps its quotes) so serialisation is lossless.
    """
    params: Params = {}
    n = len(text)
    while pos < n:
        m = _PARAM_RE.match(text, pos)
        if m is None or m.end() == pos:
            if text[pos:].strip() == "":
                break
            raise SipParseError(f"Malformed {what} parameters")
        params[m.group(1).lower()] = m.group(2)
        pos = m.end()
    return params


def format_params(params: Params) -> str:
    return "".join(f";{k}" if v is None else f";{k}={v}" for k, v in params.items())


# --------------------------------------------------------------------------- Via

_VIA_RE = re.compile(
    r"[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*/[ \t]*"
    r"([A-Za-z0-9\-.!%*_+`'~]+)[ \t]+"
    r"(\[[0-9A-Fa-f:.]+\]|[A-Za-z0-9\-.]+)"
    r"(?:[ \t]*:[ \t]*([0-9]{1,5}))?"
)


class Via:
    """One Via value: ``SIP/2.0/UDP host:port;branch=…;received=…;rport``."""

    __slots__ = ("host", "params", "port", "protocol", "transport", "version")

    def __init__(
        self, transport: str, host: str, port: int | None = None,
        params: Params | None = None, protocol: str = "SIP", version: str = "2.0",
    ):
        self.protocol = protocol
        self.version = version
        self.transport = transport.upper()
        self.host = host
        self.port = port
        self.params: Params = {} if params is None else params

    @property
    def branch(self) -> str | None:
        return self.params.get("branch")

    @property
    def received(self) -> str | None:
        return self.params.get("received")

    @property
    def rport(self) -> int | None:
        """The rport value filled in by the server; None if absent or empty."""
        v = self.params.get("rport")
        return int(v) if v and v.isascii() and v.isdigit() and len(v) <= 5 else None

    @property
    def has_rport(self) -> bool:
        return "rport" in self.params

    @property
    def sent_by(self) -> tuple[str, int | None]:
        return (self.host.lower(), self.port)

    def __str__(self) -> str:
        port = f":{self.port}" if self.port is not None else ""
        return (f"{self.protocol}/{self.version}/{self.transport} {self.host}{port}"
                f"{format_params(self.params)}")

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Via):
            return NotImplemented
        return (self.protocol.upper(), self.version, self.transport, self.host.lower(),
                self.port, self.params) == (
                other.protocol.upper(), other.version, other.transport, other.host.lower(),
                other.port, other.params)

    __hash__ = None  # type: ignore[assignment]

    def __repr__(self) -> str:
        return f"Via({str(self)!r})"


def parse_via(value: str) -> Via:
    """Parse one Via value (not a comma-joined list)."""
    m = _VIA_RE.match(value)
    if m is None:
        raise SipParseError("Malformed Via header")
    port = None
    if m.group(5) is not None:
        port = int(m.group(5))
        if port > 65535:
            raise SipParseError("Malformed Via header: port out of range")
    params = parse_params(value, m.end(), what="Via")
    branch = params.get("branch", "")
    if branch is not None and branch.startswith('"'):
        raise SipParseError("Malformed Via branch")
    return Via(m.group(3), m.group(4), port, params, m.group(1), m.group(2))


# --------------------------------------------------------------------------- CSeq

_CSEQ_RE = re.compile(r"[ \t]*([0-9]{1,10})[ \t]+([A-Za-z0-9\-.!%*_+`'~]+)[ \t]*")
MAX_CSEQ = 2**31 - 1


class CSeq:
    __slots__ = ("method", "seq")

    def __init__(self, seq: int, method: str):
        self.seq = seq
        self.method = method

    def __str__(self) -> str:
        return f"{self.seq} {self.method}"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, CSeq):
            return NotImplemented
        return self.seq == other.seq and self.method == other.method

    def __hash__(self) -> int:
        return hash((self.seq, self.method))

    def __repr__(self) -> str:
        return f"CSeq({self.seq}, {self.method!r})"


def parse_cseq(value: str) -> CSeq:
    m = _CSEQ_RE.fullmatch(value)
    if m is None:
        raise SipParseError("Malformed CSeq header")
    seq = int(m.group(1))
    if seq > MAX_CSEQ:
        raise SipParseError("CSeq number too large")
    return CSeq(seq, m.group(2))


def parse_uint(value: str, what: str, maximum: int = 2**32 - 1) -> int:
    """A delta-seconds / count header (Expires, Max-Forwards, Content-Length)."""
    v = value.strip()
    if not v.isascii() or not v.isdigit() or len(v) > 10:
        raise SipParseError(f"Malformed {what} header")
    n = int(v)
    if n > maximum:
        raise SipParseError(f"{what} value too large")
    return n
