"""Which address of ours goes into Via sent-by and Contact.

Rules, in order: ``SIP_EXTERNAL_ADDRESS`` when set (behind NAT the peers must
reach us there); else the listen address when it is a specific one; else (a
wildcard listener, ``0.0.0.0`` or ``::``) the address of the interface the
kernel would use towards the destination, found by ``connect()``-ing a UDP
socket (no packet is sent) and cached per destination host.
"""

from __future__ import annotations

import ipaddress
import socket
from functools import lru_cache

WILDCARDS = frozenset({"0.0.0.0", "::", ""})
# A destination for "which interface would we use at all" (TEST-NET-2: routed like
# any public address, never answered; connect() on UDP sends nothing).
_PROBE_V4 = "198.51.100.1"
_PROBE_V6 = "2001:db8::1"
_CACHE_MAX = 4096


@lru_cache(maxsize=8192)
def ip_family(host: str) -> socket.AddressFamily | None:
    """``socket.AF_INET``/``AF_INET6`` for an IP literal (brackets allowed), else None."""
    h = host[1:-1] if host[:1] == "[" else host
    try:
        addr = ipaddress.ip_address(h.split("%", 1)[0])
    except ValueError:
        return None
    return socket.AF_INET6 if addr.version == 6 else socket.AF_INET


def is_ip(host: str) -> bool:
    return ip_family(host) is not None


def strip_brackets(host: str) -> str:
    return host[1:-1] if host[:1] == "[" else host


def format_host(host: str) -> str:
    """``host`` as written in a URI or Via: IPv6 literals in brackets."""
    h = strip_brackets(host)
    return f"[{h}]" if ":" in h else h


def host_port(host: str, port: int) -> str:
    return f"{format_host(host)}:{port}"


def probe_source_address(dest: str) -> str | None:
    """The local address the kernel routes ``dest`` (an IP literal) from, or None."""
    family = ip_family(dest)
    if family is None:
        return None
    try:
        with socket.socket(family, socket.SOCK_DGRAM) as s:
            s.connect((strip_brackets(dest), 9))
            return s.getsockname()[0]
    except OSError:
        return None


class LocalAddresses:
    """Our advertised address per destination, with the probe cache.

    ``listen_host`` is SIP_HOST, ``port`` the bound SIP port (known after
    binding, set by the port), ``external`` SIP_EXTERNAL_ADDRESS.
    """

    __slots__ = ("_cache", "external", "listen_host", "port", "probe")

    def __init__(self, listen_host: str, port: int, external: str | None = None,
                 probe: object = probe_source_address):
        self.listen_host = strip_brackets(listen_host)
        self.port = port
        self.external = external.strip() if external else None
        self.probe = probe
        self._cache: dict[str, str] = {}

    @property
    def wildcard(self) -> bool:
        return self.listen_host in WILDCARDS

    def host_for(self, dest_host: str | None = None) -> str:
        """The address to advertise to ``dest_host`` (None: no particular peer)."""
        if self.external:
            return self.external
        if not self.wildcard:
            return self.listen_host
        key = dest_host or ""
        cached = self._cache.get(key)
        if cached is not None:
            return cached
        found = None
        if dest_host and is_ip(dest_host):
            found = self.probe(dest_host)  # type: ignore[operator]
            if found is not None and not self._family_ok(found):
                found = None
        if found is None:
            found = self._default()
        if len(self._cache) >= _CACHE_MAX:
            self._cache.clear()
        self._cache[key] = found
        return found

    def _family_ok(self, addr: str) -> bool:
        # A 0.0.0.0 listener cannot be reached over IPv6 and vice versa.
        return self.listen_host != "0.0.0.0" or ip_family(addr) == socket.AF_INET

    def _default(self) -> str:
        # "::" listens on both families (see udp.py/tcp.py), so IPv4 is fine for it too.
        targets = (_PROBE_V4,) if self.listen_host == "0.0.0.0" else (_PROBE_V4, _PROBE_V6)
        for target in targets:
            found = self.probe(target)  # type: ignore[operator]
            if found:
                return found
        return "127.0.0.1"

    def sent_by(self, transport: str, dest_host: str | None = None) -> str:
        """``SIP/2.0/UDP host:port`` — a Via value without parameters."""
        return f"SIP/2.0/{transport.upper()} {host_port(self.host_for(dest_host), self.port)}"

    def contact(self, transport: str = "udp", user: str | None = None,
                dest_host: str | None = None, port: int | None = None) -> str:
        """Our Contact URI (no angle brackets) for ``transport`` (``port``: another one)."""
        userpart = f"{user}@" if user else ""
        uri = f"sip:{userpart}{host_port(self.host_for(dest_host), port or self.port)}"
        t = transport.lower()
        return uri if t == "udp" else f"{uri};transport={t}"
