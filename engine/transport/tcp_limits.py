"""Bounds that keep one TCP client from exhausting the SIP listener (issue 10, defect 5).

:class:`TcpLimits` carries the ``SIP_TCP_*`` settings; :func:`inbound_cap` turns
the configured connection cap into the effective one, limited by the process's
file-descriptor limit minus a reserve for outbound sockets (webhooks, Redis,
RTPEngine), so a connection flood reaches our cap before the kernel's.
:func:`source_key` names the "source" a per-source cap counts (an IPv4 address,
an IPv6 /64), and :class:`ThrottledLog` keeps one line per source and interval
when a flood is refused.
"""

from __future__ import annotations

import ipaddress
import resource
from dataclasses import dataclass
from typing import Any

# A refusal or forced close is logged at most once per (reason, source) in this many
# seconds; the line carries how many were not logged since.
LOG_INTERVAL = 60.0
_LOG_KEYS_MAX = 4096


@dataclass(frozen=True, slots=True)
class TcpLimits:
    """Production defaults; ``from_settings`` reads the ``SIP_TCP_*`` variables."""

    max_connections: int = 10_000  # inbound, whole process (also bounded by descriptors)
    max_per_source: int = 100  # inbound from one IPv4 address / IPv6 /64
    idle_timeout: float = 900.0  # no traffic either way (RFC 5626 keep-alives reset it)
    first_byte_timeout: float = 5.0  # an accepted connection that sends nothing
    message_timeout: float = 10.0  # first byte of a message → its last byte
    max_buffered_bytes: int = 32 * 1024 * 1024  # partial messages, all connections
    fd_reserve: int = 512  # descriptors kept for outbound sockets and files

    @classmethod
    def from_settings(cls, settings: Any) -> TcpLimits:
        return cls(
            max_connections=settings.sip_tcp_max_connections,
            max_per_source=settings.sip_tcp_max_per_source,
            idle_timeout=settings.sip_tcp_idle_timeout,
            first_byte_timeout=settings.sip_tcp_first_byte_timeout,
            message_timeout=settings.sip_tcp_message_timeout,
            max_buffered_bytes=settings.sip_tcp_max_buffered_bytes,
            fd_reserve=settings.sip_tcp_fd_reserve,
        )


def nofile_soft_limit() -> int:
    """The process's current RLIMIT_NOFILE soft limit (a large number if unlimited)."""
    soft, _hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    return 1 << 20 if soft == resource.RLIM_INFINITY else soft


def inbound_cap(limits: TcpLimits, nofile: int) -> tuple[int, bool]:
    """Inbound connections allowed with ``nofile`` descriptors: at most
    ``max_connections`` and at most ``nofile - fd_reserve``. When the limit is too low
    to keep the whole reserve, inbound gets half the descriptors and the second value
    is False (the caller warns)."""
    available = nofile - limits.fd_reserve
    reserve_kept = available >= nofile // 2
    if not reserve_kept:
        available = nofile // 2
    return max(1, min(limits.max_connections, available)), reserve_kept


def source_key(host: str) -> str:
    """What a per-source cap counts: the IPv4 address, or the IPv6 /64 (one host
    usually owns a whole /64, so counting single IPv6 addresses would cap nothing)."""
    if ":" not in host:
        return host
    try:
        addr = ipaddress.IPv6Address(host.split("%", 1)[0])
    except ValueError:
        return host
    if addr.ipv4_mapped is not None:
        return str(addr.ipv4_mapped)
    return str(ipaddress.IPv6Network((int(addr) >> 64 << 64, 64)))


class ThrottledLog:
    """Decides whether an event for ``key`` is logged now (at most once per interval)."""

    __slots__ = ("_interval", "_seen")

    def __init__(self, interval: float = LOG_INTERVAL):
        self._interval = interval
        self._seen: dict[object, tuple[float, int]] = {}  # key → (logged at, suppressed)

    def check(self, key: object, now: float) -> int | None:
        """None: stay quiet. Else log now; the value is how many were suppressed
        for ``key`` since its previous line."""
        entry = self._seen.get(key)
        if entry is not None and now - entry[0] < self._interval:
            self._seen[key] = (entry[0], entry[1] + 1)
            return None
        if entry is None and len(self._seen) >= _LOG_KEYS_MAX:
            self._expire(now)
        self._seen[key] = (now, 0)
        return entry[1] if entry is not None else 0

    def _expire(self, now: float) -> None:
        old = [k for k, (at, _) in self._seen.items() if now - at >= self._interval]
        for k in old:
            del self._seen[k]
        if len(self._seen) >= _LOG_KEYS_MAX:  # a flood from many sources: forget all
            self._seen.clear()
