"""Building and sending requests outside a dialog (UAC side).

Defaults follow drachtio (spec §6.3) and stay out of the caller's way: a
caller-supplied From, To, Call-ID, CSeq, Contact, Max-Forwards (and any other
header) is used as given — trunk registration relies on a stable Call-ID and
its own CSeq — otherwise From is our address with a new tag, To the
Request-URI, Call-ID generated, CSeq random, Max-Forwards 70; INVITEs get
our Contact. Via and Content-Length are ours alone (caller values dropped).
"""

from __future__ import annotations

from engine.errors import SipTransportError
from engine.log import get_logger
from engine.ports import Credentials, Peer
from engine.sip.errors import SipParseError
from engine.sip.headers import header_key
from engine.sip.message import SipRequest, SipResponse
from engine.sip.outgoing import request_from_headers
from engine.transport.client import RequestWaiter, local_response
from engine.transport.resolve import Target, parse_target
from engine.transport.tu import TransactionUser

log = get_logger("engine.transport.uac")



def choose_target(port: TransactionUser, uri: str, proxy: str | None, flow: str | None,
                  items: list[tuple[str, str]]) -> Target:
    """The next hop (§8.1.2): ``proxy`` if given, else a caller-supplied top Route,
    else the Request-URI. Over a live ``flow`` the default transport is TCP.
    Raises ValueError for something that is no SIP URI."""
    default = "tcp" if port.flow_alive(flow) else "udp"
    if proxy:
        return parse_target(proxy, default)
    for name, value in items:
        if header_key(name) == "route":
            return parse_target(value.split(",", 1)[0], default)
    return parse_target(uri, default)


def build_request(
    port: TransactionUser, method: str, uri: str, items: list[tuple[str, str]], body: bytes,
    content_type: str | None, dest: Peer | None, flow: str | None, *,
    call_id: str | None = None, from_tag: str | None = None, contact: bool = False,
) -> SipRequest:
    """An out-of-dialog request from caller headers plus our defaults
    (``engine.sip.outgoing``). Without Via: :meth:`EmbeddedSipPort.send_request` adds ours."""
    transport = dest.transport if dest is not None else "udp"
    peer_host = dest.host if dest is not None else None
    req, _ = request_from_headers(
        method, uri, items, body, content_type, ids=port.ids, user_agent=port.user_agent,
        local_uri=lambda t: port.local_contact(t, peer_host, flow),
        contact_transport=transport, call_id=call_id, from_tag=from_tag, contact=contact)
    return req


async def send_out_of_dialog(
    port: TransactionUser, uri: str, method: str, items: list[tuple[str, str]], body: bytes,
    content_type: str | None, proxy: str | None, auth: Credentials | None, flow: str | None,
) -> SipResponse:
    """``SipPort.request``: see :meth:`EmbeddedSipPort.request`."""
    method = method.upper()
    if method in ("INVITE", "ACK", "CANCEL"):
        raise ValueError(f"use invite() for INVITE; {method} is sent by the stack")
    target = choose_target(port, uri, proxy, flow, items)
    try:
        dest: Peer | None = await port.resolver.resolve(target)
    except SipTransportError as exc:
        log.info("request not sent", method=method, uri=uri, error=str(exc))
        dest = None
    try:
        req = build_request(port, method, uri, items, body, content_type, dest, flow)
    except (SipParseError, ValueError) as exc:
        raise ValueError(f"cannot build {method} {uri}: {exc}") from exc
    if dest is None:
        return local_response(req, 503)
    return await RequestWaiter(port, req, dest, flow, auth).start()
