"""SIP/SIPS/tel URIs (RFC 3261 §19.1, RFC 3966) and name-addr values (§20.10).

Components are kept *as written* (escapes not decoded) so a URI prints back
exactly; :func:`unescape` decodes when a comparison needs it, and
:meth:`SipUri.equivalent` implements the comparison rules of §19.1.4.
"""

from __future__ import annotations

import ipaddress
import re

from engine.sip.errors import SipParseError
from engine.sip.headers import Params, find_quote_end, parse_params, quote, unquote

_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+\-.]*")
# user / password: unreserved, escaped, user-unreserved (RFC 3261 §25.1).
_USER_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+")
_PASSWORD_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*")
_HOST_RE = re.compile(r"[A-Za-z0-9](?:[A-Za-z0-9\-._]*[A-Za-z0-9_])?\.?")
_HOSTPORT_RE = re.compile(
    r"(?:(\[[0-9A-Fa-f:.%]+\])|([A-Za-z0-9](?:[A-Za-z0-9\-._]*[A-Za-z0-9_])?\.?))"
    r"(?::([0-9]{1,5}))?(?=[;?]|$)")
_PC = r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+"
_SIP_RE = re.compile(
    r"(?:((?:[A-Za-z0-9\-_.!~*'()&=+$,;?/]|%[0-9A-Fa-f]{2})+)"
    r"(?::((?:[A-Za-z0-9\-_.!~*'()&=+$,]|%[0-9A-Fa-f]{2})*))?@)?"
    r"(?:(\[[0-9A-Fa-f:.%]+\])|([A-Za-z0-9](?:[A-Za-z0-9\-._]*[A-Za-z0-9_])?\.?))"
    r"(?::([0-9]{1,5}))?"
    rf"((?:;{_PC}(?:={_PC})?)*)"
    r"(?:\?((?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$=&]|%[0-9A-Fa-f]{2})*))?")
_PARAMCHARS_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/:&+$]|%[0-9A-Fa-f]{2})+")
_HEADERS_RE = re.compile(r"(?:[A-Za-z0-9\-_.!~*'()\[\]/?:+$=&]|%[0-9A-Fa-f]{2})*")
_TEL_RE = re.compile(r"\+?[0-9A-Fa-f*#\-.()]+")
_OPAQUE_RE = re.compile(r"[^\s<>\"]+")
_ESCAPE_RE = re.compile(r"%([0-9A-Fa-f]{2})")

# URI parameters that must match if present in either URI (§19.1.4).
_STRICT_PARAMS = ("user", "ttl", "method", "maddr", "transport")


def is_ipv6(text: str) -> bool:
    """True if ``text`` (without brackets) is an IPv6 address."""
    if not text or len(text) > 45:
        return False
    try:
        ipaddress.IPv6Address(text)
    except ValueError:
        return False
    return True


def unescape(text: str) -> str:
    """Decode ``%XX`` escapes (as UTF-8, invalid octets kept as surrogates)."""
    if "%" not in text:
        return text
    raw = _ESCAPE_RE.sub(lambda m: chr(int(m.group(1), 16) | 0xDC00)
                         if int(m.group(1), 16) >= 0x80 else chr(int(m.group(1), 16)), text)
    try:
        return raw.encode("utf-8", "surrogateescape").decode("utf-8")
    except UnicodeDecodeError:
        return raw


class SipUri:
    """A parsed URI.

    For ``sip``/``sips``: ``user``, ``password``, ``host`` (IPv6 with brackets),
    ``port``, ``params`` (lower-case names, raw values, None for flags) and
    ``headers`` (the raw text after ``?``). For ``tel``: ``user`` is the
    telephone-subscriber number and ``host`` is empty. For any other scheme
    only ``scheme`` and ``opaque`` (the text after the colon) are set: such URIs
    are legal in From/To/Contact and must not fail the message.
    """

    __slots__ = ("headers", "host", "opaque", "params", "password", "port", "scheme", "user")

    def __init__(
        self, scheme: str = "sip", user: str | None = None, host: str = "",
        port: int | None = None, params: Params | None = None, headers: str | None = None,
        password: str | None = None, opaque: str | None = None,
    ):
        self.scheme = scheme.lower()
        self.user = user
        self.password = password
        self.host = host
        self.port = port
        self.params: Params = {} if params is None else params
        self.headers = headers
        self.opaque = opaque

    @property
    def is_sip(self) -> bool:
        return self.scheme in ("sip", "sips")

    @property
    def transport(self) -> str | None:
        t = self.params.get("transport")
        return t.lower() if t else None

    @property
    def lr(self) -> bool:
        return "lr" in self.params

    @property
    def host_port(self) -> str:
        return self.host if self.port is None else f"{self.host}:{self.port}"

    def copy(self) -> SipUri:
        return SipUri(self.scheme, self.user, self.host, self.port, dict(self.params),
                      self.headers, self.password, self.opaque)

    def __str__(self) -> str:
        if self.opaque is not None:
            return f"{self.scheme}:{self.opaque}"
        out = [self.scheme, ":"]
        if self.scheme == "tel":
            out.append(self.user or "")
        else:
            if self.user is not None:
                out.append(self.user)
                if self.password is not None:
                    out.append(":" + self.password)
                out.append("@")
            out.append(self.host)
            if self.port is not None:
                out.append(f":{self.port}")
        for k, v in self.params.items():
            out.append(f";{k}" if v is None else f";{k}={v}")
        if self.headers is not None:
            out.append("?" + self.headers)
        return "".join(out)

    def __repr__(self) -> str:
        return f"SipUri({str(self)!r})"

    def _key(self) -> tuple[object, ...]:
        return (self.scheme, self.user, self.password, self.host.lower(), self.port,
                {k: v for k, v in self.params.items()}, self.headers, self.opaque)

    def __eq__(self, other: object) -> bool:
        """Structural equality (same components); see :meth:`equivalent` for §19.1.4."""
        if not isinstance(other, SipUri):
            return NotImplemented
        return self._key() == other._key()

    __hash__ = None  # type: ignore[assignment]

    def equivalent(self, other: SipUri) -> bool:
        """URI comparison of RFC 3261 §19.1.4 (escapes decoded, host case-insensitive,
        user/ttl/method/maddr/transport must agree, other params only if in both)."""
        if self.scheme != other.scheme:
            return False
        if self.opaque is not None or other.opaque is not None:
            return self.opaque == other.opaque
        if self.scheme == "tel":
            return (_tel_digits(self.user or "") == _tel_digits(other.user or "")
                    and _norm_params(self.params) == _norm_params(other.params))
        if (unescape(self.user) if self.user else self.user) != (
                unescape(other.user) if other.user else other.user):
            return False
        if self.password != other.password or self.host.lower() != other.host.lower():
            return False
        if self.port != other.port:
            return False
        a, b = _norm_params(self.params), _norm_params(other.params)
        for name in _STRICT_PARAMS:
            if a.get(name, "\0") != b.get(name, "\0"):
                return False
        for name in a.keys() & b.keys():
            if a[name] != b[name]:
                return False
        return _norm_headers(self.headers) == _norm_headers(other.headers)


def _norm_params(params: Params) -> dict[str, str | None]:
    return {k: (unescape(v).lower() if v is not None else None) for k, v in params.items()}


def _norm_headers(headers: str | None) -> dict[str, str]:
    if not headers:
        return {}
    out = {}
    for part in headers.split("&"):
        name, _, value = part.partition("=")
        out[unescape(name).lower()] = unescape(value)
    return out


def _tel_digits(number: str) -> str:
    return re.sub(r"[\-.()]", "", number).lower()


def parse_uri(text: str) -> SipUri:
    """Parse a URI; raises :class:`SipParseError` with the precise defect."""
    scheme, colon, rest = text.partition(":")
    if not colon or not _SCHEME_RE.fullmatch(scheme):
        raise SipParseError("Malformed URI: no scheme")
    lscheme = scheme.lower()
    if lscheme in ("sip", "sips"):
        return _parse_sip(lscheme, rest)
    if lscheme == "tel":
        return _parse_tel(rest)
    if not _OPAQUE_RE.fullmatch(rest):
        raise SipParseError("Malformed URI")
    return SipUri(lscheme, opaque=rest)


def _parse_sip(scheme: str, rest: str) -> SipUri:
    m = _SIP_RE.fullmatch(rest)
    if m is None:
        return _parse_sip_slow(scheme, rest)  # raises the precise defect
    user, password, host6, host, port, ptext, headers = m.groups()
    if host6 is not None:
        if not is_ipv6(host6[1:-1]):
            raise SipParseError("Malformed IPv6 reference in URI")
        host = host6
    params: Params = {}
    if ptext:
        for part in ptext[1:].split(";"):
            name, eq, value = part.partition("=")
            params[name.lower()] = value if eq else None
    if port is not None:
        port = int(port)
        if port > 65535:
            raise SipParseError("Malformed URI port")
    return SipUri(scheme, user, host, port, params, headers, password)


def _parse_sip_slow(scheme: str, rest: str) -> SipUri:
    """Component-by-component parse: slower, but says which part is wrong."""
    user = password = None
    at = rest.find("@")
    if at >= 0:
        userinfo = rest[:at]
        rest = rest[at + 1:]
        user, colon, pw = userinfo.partition(":")
        if not _USER_RE.fullmatch(user):
            raise SipParseError("Malformed URI user part")
        if colon:
            if not _PASSWORD_RE.fullmatch(pw):
                raise SipParseError("Malformed URI password")
            password = pw
    # hostport: one regex for the usual case, a slower walk only to name the defect
    m = _HOSTPORT_RE.match(rest)
    if m is None:
        raise SipParseError(_hostport_defect(rest))
    host = m.group(1)
    if host is not None:
        if not is_ipv6(host[1:-1]):
            raise SipParseError("Malformed IPv6 reference in URI")
    else:
        host = m.group(2)
    port = None
    digits = m.group(3)
    if digits is not None:
        port = int(digits)
        if port > 65535:
            raise SipParseError("Malformed URI port")
    pos = m.end()
    headers = None
    q = rest.find("?", pos)
    if q >= 0:
        headers = rest[q + 1:]
        if not _HEADERS_RE.fullmatch(headers):
            raise SipParseError("Malformed URI headers")
        rest = rest[:q]
    params: Params = {}
    if pos < len(rest):
        if rest[pos] != ";":
            raise SipParseError("Malformed URI host")
        for part in rest[pos + 1:].split(";"):
            name, eq, value = part.partition("=")
            if not _PARAMCHARS_RE.fullmatch(name) or (eq and not _PARAMCHARS_RE.fullmatch(value)):
                raise SipParseError("Malformed URI parameter")
            params[name.lower()] = value if eq else None
    return SipUri(scheme, user, host, port, params, headers, password)


def _hostport_defect(rest: str) -> str:
    if rest.startswith("["):
        return "Malformed IPv6 reference in URI"
    host, colon, _ = rest.partition(":")
    if colon and _HOST_RE.fullmatch(host.split(";", 1)[0].split("?", 1)[0]):
        return "Malformed URI port"
    return "Malformed URI host"


def _parse_tel(rest: str) -> SipUri:
    number, _, tail = rest.partition(";")
    if not _TEL_RE.fullmatch(number):
        raise SipParseError("Malformed tel URI")
    params: Params = {}
    if tail:
        for part in tail.split(";"):
            name, eq, value = part.partition("=")
            if not _PARAMCHARS_RE.fullmatch(name) or (eq and not _PARAMCHARS_RE.fullmatch(value)):
                raise SipParseError("Malformed tel URI parameter")
            params[name.lower()] = value if eq else None
    return SipUri("tel", user=number, params=params)


# --------------------------------------------------------------------------- name-addr

_DISPLAY_TOKENS_RE = re.compile(r"[A-Za-z0-9\-.!%*_+`'~ \t]*")


class NameAddr:
    """``"Display" <uri>;param=value`` (From, To, Contact, Route, Refer-To…).

    ``display`` is kept raw (quoted if it was quoted); ``display_name`` gives the
    text. ``params`` are the *header* parameters (``tag``, ``expires``, ``q``…);
    URI parameters live in ``uri.params``. The URI itself is parsed on first
    access of :attr:`uri` (reading a tag needs no URI parse); a malformed URI
    raises :class:`SipParseError` there.
    """

    __slots__ = ("_uri", "_uri_text", "display", "params")

    def __init__(self, uri: SipUri | str, display: str | None = None,
                 params: Params | None = None):
        if isinstance(uri, str):
            self._uri: SipUri | None = None
            self._uri_text: str | None = uri
        else:
            self._uri = uri
            self._uri_text = None
        self.display = display or None
        self.params: Params = {} if params is None else params

    @property
    def uri(self) -> SipUri:
        u = self._uri
        if u is None:
            u = self._uri = parse_uri(self._uri_text or "")
        return u

    @uri.setter
    def uri(self, value: SipUri) -> None:
        self._uri = value
        self._uri_text = None

    @property
    def uri_text(self) -> str:
        """The URI as text, without parsing it if it was not parsed yet."""
        return str(self._uri) if self._uri is not None else (self._uri_text or "")

    @property
    def tag(self) -> str | None:
        return self.params.get("tag")

    @property
    def display_name(self) -> str | None:
        return unquote(self.display) if self.display is not None else None

    @classmethod
    def create(cls, uri: SipUri | str, display_name: str | None = None,
               params: Params | None = None) -> NameAddr:
        """Build one from plain text (the display name gets quoted as needed)."""
        u = parse_uri(uri) if isinstance(uri, str) else uri
        return cls(u, quote(display_name) if display_name else None, params)

    def copy(self) -> NameAddr:
        uri = self._uri.copy() if self._uri is not None else (self._uri_text or "")
        return NameAddr(uri, self.display, dict(self.params))

    def __str__(self) -> str:
        disp = f"{self.display} " if self.display else ""
        out = f"{disp}<{self.uri_text}>"
        if self.params:
            out += "".join(f";{k}" if v is None else f";{k}={v}" for k, v in self.params.items())
        return out

    def __repr__(self) -> str:
        return f"NameAddr({str(self)!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, NameAddr):
            return NotImplemented
        return (self.uri == other.uri and self.display_name == other.display_name
                and self.params == other.params)

    __hash__ = None  # type: ignore[assignment]


def parse_name_addr(value: str) -> NameAddr:
    """Parse a name-addr or addr-spec value with its header parameters."""
    v = value.strip()
    if not v:
        raise SipParseError("Empty address")
    display: str | None = None
    if v[0] == '"':
        end = find_quote_end(v, 0)
        display = v[:end + 1]
        rest = v[end + 1:].lstrip(" \t")
        if not rest.startswith("<"):
            raise SipParseError("Quoted display name not followed by <URI>")
        lt = len(v) - len(rest)
    else:
        lt = v.find("<")
        if lt > 0:
            disp = v[:lt].strip()
            if disp:
                if not _DISPLAY_TOKENS_RE.fullmatch(disp):
                    raise SipParseError("Invalid characters in display name")
                display = disp
    if lt >= 0:
        gt = v.find(">", lt)
        if gt < 0:
            raise SipParseError("Unbalanced '<' in address")
        uri_text = v[lt + 1:gt]
        if uri_text != uri_text.strip() or not uri_text:
            raise SipParseError("Whitespace inside <URI>")
        params = parse_params(v, gt + 1) if gt + 1 < len(v) else {}
        return NameAddr(uri_text, display, params)
    # addr-spec: header parameters follow the first ';', the URI can carry none
    # (nor '?' headers or commas, RFC 3261 §20.10).
    semi = v.find(";")
    uri_text = v if semi < 0 else v[:semi]
    uri_text = uri_text.rstrip(" \t")
    if any(c in uri_text for c in ' \t?,">'):
        raise SipParseError("Address needs <> around a URI with spaces, '?' or ','")
    params = parse_params(v, semi) if semi >= 0 else {}
    return NameAddr(uri_text, None, params)
