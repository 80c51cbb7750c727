"""Where a request goes: next-hop URI → (host, port, transport) → address.

RFC 3263 in the small: the transport comes from the URI's ``transport``
parameter (``sips:`` means TLS, which the embedded stack does not offer),
else the caller's default; an IP literal is used as is (port default 5060);
a name is resolved with A/AAAA through ``loop.getaddrinfo`` (cached for
``ttl`` seconds). SRV and NAPTR lookups are not done: a name without a port
goes to port 5060.
"""

from __future__ import annotations

import asyncio
import re
import socket
from dataclasses import dataclass

from engine.errors import SipTransportError
from engine.ports import Clock, Peer
from engine.sip.errors import SipParseError
from engine.sip.uri import SipUri, parse_name_addr, parse_uri
from engine.transport.addresses import is_ip, strip_brackets

# "scheme:" that is not "host:port" (a host may look like a scheme: pbx.example.com:5060)
_SCHEME_RE = re.compile(r"[A-Za-z][A-Za-z0-9+.\-]*:(?![0-9]+(?:[;?]|$))")
DEFAULT_PORTS = {"udp": 5060, "tcp": 5060, "tls": 5061, "ws": 80, "wss": 443}


@dataclass(frozen=True, slots=True)
class Target:
    """A next hop before name resolution. ``port`` None = the transport default."""

    host: str
    port: int | None
    transport: str

    @property
    def numeric(self) -> bool:
        return is_ip(self.host)

    def peer(self) -> Peer:
        """The Peer of a numeric target."""
        return Peer(self.host, self.port or DEFAULT_PORTS.get(self.transport, 5060),
                    self.transport)


def target_of(uri: SipUri, default_transport: str = "udp") -> Target:
    """The next hop a SIP URI designates (``maddr`` overrides the host)."""
    if not uri.is_sip:
        raise ValueError(f"not a sip: or sips: URI: {uri}")
    transport = uri.transport or ("tls" if uri.scheme == "sips" else default_transport)
    host = uri.params.get("maddr") or uri.host
    if not host:
        raise ValueError(f"URI without a host: {uri}")
    return Target(strip_brackets(host), uri.port, transport.lower())


def parse_target(text: str, default_transport: str = "udp") -> Target:
    """A next hop from user text: ``sip:host[:port][;transport=tcp]``, ``<sip:…;lr>``
    or a bare ``host[:port]``. Raises ValueError when it is no SIP URI."""
    value = text.strip()
    try:
        if value.startswith("<") or '"' in value:
            uri = parse_name_addr(value).uri
        else:
            uri = parse_uri(value if _SCHEME_RE.match(value) else f"sip:{value}")
    except SipParseError as exc:
        raise ValueError(f"bad SIP URI {text!r}: {exc}") from exc
    return target_of(uri, default_transport)


class Resolver:
    """A/AAAA resolution with a small TTL cache; numeric targets cost nothing."""

    def __init__(self, loop: asyncio.AbstractEventLoop, clock: Clock, ttl: float = 30.0):
        self.loop = loop
        self.clock = clock
        self.ttl = ttl
        self._cache: dict[tuple[str, int, str], tuple[float, Peer]] = {}

    def resolve_now(self, target: Target) -> Peer | None:
        """The address if it needs no lookup (numeric, or cached), else None."""
        if target.numeric:
            return target.peer()
        hit = self._cache.get(self._key(target))
        if hit is not None and hit[0] > self.clock.monotonic():
            return hit[1]
        return None

    @staticmethod
    def _key(target: Target) -> tuple[str, int, str]:
        return (target.host.lower(), target.port or DEFAULT_PORTS.get(target.transport, 5060),
                target.transport)

    async def resolve(self, target: Target) -> Peer:
        """The address to send to; raises ``SipTransportError`` if the name does not
        resolve."""
        found = self.resolve_now(target)
        if found is not None:
            return found
        host, port, transport = self._key(target)
        kind = socket.SOCK_DGRAM if transport == "udp" else socket.SOCK_STREAM
        try:
            infos = await self.loop.getaddrinfo(target.host, port, type=kind)
        except (OSError, UnicodeError) as exc:
            raise SipTransportError(f"cannot resolve {target.host}: {exc}") from exc
        if not infos:
            raise SipTransportError(f"cannot resolve {target.host}: no address")
        # getaddrinfo already orders by RFC 6724 preference; take the first.
        addr = infos[0][4]
        # an INET/INET6 sockaddr: (host, port, …); typeshed also admits AF_UNIX shapes
        peer = Peer(str(addr[0]), int(addr[1]), transport)
        if len(self._cache) > 4096:
            self._cache.clear()
        self._cache[(host, port, transport)] = (self.clock.monotonic() + self.ttl, peer)
        return peer
