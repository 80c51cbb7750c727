"""Building an out-of-dialog request from the caller's headers plus our defaults — one
rule for both SIP backends (``engine.transport.uac``, ``engine.drachtio.legs``).

Caller headers (From, To, Call-ID, CSeq, Contact, Max-Forwards, Content-Type and any
other) are used as given; missing ones get defaults: From = our address with a new tag
(a tag is added to a caller's From without one), To = the Request-URI, a new Call-ID,
a random CSeq, Max-Forwards 70, our Contact when asked, our User-Agent unless given,
Content-Type ``application/sdp`` for an SDP body. Via and Content-Length are always
ours. With ``take_route`` the caller's first Route is returned rather than sent (drachtio
takes the next hop as the frame's route URI, not as a header).
"""

from __future__ import annotations

from collections.abc import Callable

from engine.sip.builders import IdGenerator, make_request
from engine.sip.headers import header_key
from engine.sip.message import SipRequest
from engine.sip.uri import parse_name_addr

_ALWAYS_OURS = frozenset({"via", "content-length"})
_ROUTING = frozenset({"route", "record-route"})


def request_from_headers(
    method: str, uri: str, items: list[tuple[str, str]], body: bytes,
    content_type: str | None, *, ids: IdGenerator, user_agent: str | None,
    local_uri: Callable[[str], str], contact_transport: str,
    call_id: str | None = None, from_tag: str | None = None, contact: bool = False,
    take_route: bool = False,
) -> tuple[SipRequest, str | None]:
    """The request and, with ``take_route``, the caller's first Route (else None).
    ``local_uri(transport)`` is our SIP URI for that transport (``sip:host:port…``).
    Raises ``ValueError``/``SipParseError`` for an unusable header value."""
    dropped = _ALWAYS_OURS | _ROUTING if take_route else _ALWAYS_OURS
    from_ = to = cid = contact_value = route = None
    cseq: int | None = None
    max_forwards = 70
    extra: list[tuple[str, str]] = []
    for name, value in items:
        key = header_key(name)
        if key == "from":
            from_ = value
        elif key == "to":
            to = value
        elif key == "call-id":
            cid = value
        elif key == "cseq":
            cseq = int(value.split()[0])
        elif key == "contact":
            contact_value = value
        elif key == "max-forwards":
            max_forwards = int(value)
        elif key == "content-type":
            content_type = content_type or value
        elif take_route and key == "route" and route is None:
            route = value.split(",", 1)[0].strip()
        elif key not in dropped:
            extra.append((name, value))
    if from_ is None:
        host = local_uri("udp").split(":", 1)[1]
        from_ = f"<sip:{host}>;tag={from_tag or ids.tag()}"
    elif parse_name_addr(from_).tag is None:
        from_ = f"{from_};tag={from_tag or ids.tag()}"
    if contact and contact_value is None:
        contact_value = f"<{local_uri(contact_transport)}>"
    if content_type is None and body[:2] == b"v=":
        content_type = "application/sdp"
    if user_agent and not any(header_key(n) == "user-agent" for n, _ in extra):
        extra.append(("User-Agent", user_agent))
    req = make_request(
        method, uri, from_=from_, to=to or f"<{uri}>", call_id=cid or call_id or ids.call_id(),
        cseq=cseq if cseq is not None else ids.cseq(), contact=contact_value,
        max_forwards=max_forwards, headers=extra, body=body, content_type=content_type)
    return req, route
