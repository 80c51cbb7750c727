"""Building requests and responses, and generating tags/branches/Call-IDs.

Randomness is injectable (:class:`IdGenerator` takes a ``random.Random``) so
tests get reproducible identifiers; the default draws from the OS.
"""

from __future__ import annotations

import os
import random
from collections.abc import Iterable, Mapping

from engine.sip.errors import SipParseError
from engine.sip.headers import canonical_name, header_key, quote
from engine.sip.message import HeaderItems, SipRequest, SipResponse
from engine.sip.uri import SipUri

MAGIC_COOKIE = "z9hG4bK"

REASON_PHRASES: dict[int, str] = {
    100: "Trying", 180: "Ringing", 181: "Call Is Being Forwarded", 182: "Queued",
    183: "Session Progress", 199: "Early Dialog Terminated",
    200: "OK", 202: "Accepted", 204: "No Notification",
    300: "Multiple Choices", 301: "Moved Permanently", 302: "Moved Temporarily",
    305: "Use Proxy", 380: "Alternative Service",
    400: "Bad Request", 401: "Unauthorized", 402: "Payment Required", 403: "Forbidden",
    404: "Not Found", 405: "Method Not Allowed", 406: "Not Acceptable",
    407: "Proxy Authentication Required", 408: "Request Timeout", 410: "Gone",
    412: "Conditional Request Failed", 413: "Request Entity Too Large",
    414: "Request-URI Too Long", 415: "Unsupported Media Type",
    416: "Unsupported URI Scheme", 420: "Bad Extension", 421: "Extension Required",
    422: "Session Interval Too Small", 423: "Interval Too Brief",
    429: "Provide Referrer Identity", 480: "Temporarily Unavailable",
    481: "Call/Transaction Does Not Exist", 482: "Loop Detected", 483: "Too Many Hops",
    484: "Address Incomplete", 485: "Ambiguous", 486: "Busy Here",
    487: "Request Terminated", 488: "Not Acceptable Here", 489: "Bad Event",
    491: "Request Pending", 493: "Undecipherable",
    500: "Server Internal Error", 501: "Not Implemented", 502: "Bad Gateway",
    503: "Service Unavailable", 504: "Server Time-out", 505: "Version Not Supported",
    513: "Message Too Large", 580: "Precondition Failure",
    600: "Busy Everywhere", 603: "Decline", 604: "Does Not Exist Anywhere",
    606: "Not Acceptable",
}


def reason_phrase(status: int) -> str:
    return REASON_PHRASES.get(status) or REASON_PHRASES.get(status // 100 * 100, "Unknown")


class IdGenerator:
    """Branches, tags and Call-IDs.

    RFC 3261 wants tags with ≥32 bits of randomness (§19.3) and branches unique
    in space and time (§8.1.1.7); 64 random bits cover both. Pass a seeded
    ``random.Random`` in tests.
    """

    __slots__ = ("_rng",)

    def __init__(self, rng: random.Random | None = None):
        self._rng = rng

    def hex(self, nbytes: int = 8) -> str:
        if self._rng is None:
            return os.urandom(nbytes).hex()
        return self._rng.getrandbits(nbytes * 8).to_bytes(nbytes, "big").hex()

    def branch(self) -> str:
        return MAGIC_COOKIE + self.hex(8)

    def tag(self) -> str:
        return self.hex(6)

    def call_id(self) -> str:
        return self.hex(12)

    def cseq(self) -> int:
        """A first CSeq number (random below 2**30 so it can grow, §8.1.1.5)."""
        return int(self.hex(4), 16) % (2**30) + 1


def _items(headers: HeaderItems) -> Iterable[tuple[str, str]]:
    return headers.items() if isinstance(headers, Mapping) else headers


def _safe(value: str, what: str) -> str:
    """Refuse CR/LF in values we write: a header injection would split the message."""
    if "\r" in value or "\n" in value:
        raise SipParseError(f"Line break in {what}")
    return value


def make_request(
    method: str,
    uri: str | SipUri,
    *,
    from_: str,
    to: str,
    call_id: str,
    cseq: int,
    via: str | None = None,
    contact: str | None = None,
    max_forwards: int | None = 70,
    routes: Iterable[str] = (),
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: str | None = None,
) -> SipRequest:
    """A request with the mandatory headers in the usual order.

    ``via`` may be left out: the endpoint core adds its own Via (sent-by of the
    transport, fresh branch, ``rport``) when it sends a request without one.
    Extra ``headers`` are appended as given (names kept, values checked for CR/LF).
    """
    hdrs: list[tuple[str, str]] = []
    if via is not None:
        hdrs.append(("Via", _safe(via, "Via")))
    if max_forwards is not None:
        hdrs.append(("Max-Forwards", str(max_forwards)))
    hdrs.extend(("Route", _safe(r, "Route")) for r in routes)
    hdrs += [("From", _safe(from_, "From")), ("To", _safe(to, "To")),
             ("Call-ID", _safe(call_id, "Call-ID")), ("CSeq", f"{cseq} {method}")]
    if contact is not None:
        hdrs.append(("Contact", _safe(contact, "Contact")))
    for name, value in _items(headers):
        hdrs.append((name, _safe(str(value), name)))
    if content_type is not None:
        hdrs.append(("Content-Type", _safe(content_type, "Content-Type")))
    req = SipRequest(method, uri, (), body)
    req.headers = hdrs
    return req


# Responses that establish or belong to a dialog carry the request's
# Record-Route back (RFC 3261 §12.1.1).
_RR_METHODS = frozenset({"INVITE", "SUBSCRIBE", "REFER", "NOTIFY"})
_COPIED = ("via", "from", "to", "call-id", "cseq")
_COPIED_RR = (*_COPIED, "record-route")
_CANON_COPIED = {k: canonical_name(k) for k in _COPIED_RR}


def make_response(
    request: SipRequest,
    status: int,
    reason: str | None = None,
    *,
    headers: HeaderItems = (),
    body: bytes = b"",
    content_type: str | None = None,
    to_tag: str | None = None,
) -> SipResponse:
    """A response to ``request`` (RFC 3261 §8.2.6): Via lines, From, To, Call-ID and
    CSeq copied; ``to_tag`` added to To unless it has one already or the status is
    100; Record-Route copied into 101-299 responses of dialog-creating methods.
    Headers given in ``headers`` replace copied ones of the same name."""
    extra = list(_items(headers))
    override = {header_key(n) for n, _ in extra} if extra else ()
    copy_rr = 100 < status < 300 and request.method in _RR_METHODS
    add_tag = bool(to_tag) and status != 100 and request.to_tag is None
    # Walk the request's index, not every header: only five or six keys matter.
    index = request._idx()
    positions: list[tuple[int, str]] = []  # (line in the request, its key)
    for key in (_COPIED_RR if copy_rr else _COPIED):
        if key not in override:
            pos = index.get(key)
            if pos is not None:
                positions.extend([(i, key) for i in pos])
    positions.sort()
    src = request.headers
    hdrs: list[tuple[str, str]] = []
    # Build the response's index as we go: serialising it then needs no rescan.
    rindex: dict[str, list[int]] = {}
    for i, key in positions:
        value = src[i][1]
        _index_add(rindex, key, len(hdrs))
        if key == "to":
            hdrs.append(("To", f"{value};tag={to_tag}" if add_tag else value))
        else:
            hdrs.append((_CANON_COPIED[key], value))
    for name, value in extra:
        _index_add(rindex, header_key(name), len(hdrs))
        hdrs.append((name, _safe(str(value), name)))
    if content_type is not None:
        _index_add(rindex, "content-type", len(hdrs))
        hdrs.append(("Content-Type", _safe(content_type, "Content-Type")))
    resp = SipResponse(status, _safe(reason if reason is not None else reason_phrase(status),
                                     "reason phrase"), (), body)
    resp.headers = hdrs
    resp._index = rindex
    return resp


def _index_add(index: dict[str, list[int]], key: str, pos: int) -> None:
    lst = index.get(key)
    if lst is None:
        index[key] = [pos]
    else:
        lst.append(pos)


def error_response_bytes(context: list[tuple[str, str]], status: int, reason: str,
                         to_tag: str | None = None) -> bytes:
    """Serialise a stateless error response from the raw lines salvaged by a
    :class:`SipParseError` (the message itself could not be parsed)."""
    reason = "".join(c for c in reason if c >= " " and c != "\x7f")[:120] or reason_phrase(status)
    lines = [f"SIP/2.0 {status} {reason}"]
    for name, value in context:
        key = header_key(name)
        if key == "to" and to_tag and ";tag=" not in value.lower().replace(" ", ""):
            lines.append(f"To: {value};tag={to_tag}")
        else:
            lines.append(f"{canonical_name(key)}: {value}")
    lines.append("Content-Length: 0")
    return ("\r\n".join(lines) + "\r\n\r\n").encode("utf-8", "surrogateescape")


def format_name_addr(uri: str | SipUri, display_name: str | None = None,
                     tag: str | None = None) -> str:
    """``"Name" <uri>;tag=x`` text for From/To/Contact."""
    out = f"{quote(display_name)} <{uri}>" if display_name else f"<{uri}>"
    return f"{out};tag={tag}" if tag else out
