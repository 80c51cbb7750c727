"""UDP listener(s) of the embedded SIP stack.

One non-blocking socket per address family (``::`` binds an IPv6-only socket
*and* an IPv4 one on the same port, so peers never show up as IPv4-mapped
addresses), each driven by a plain :class:`asyncio.DatagramProtocol`: a
datagram goes straight from the loop's callback into the driver, no task and
no queue per packet.

Workers (WORKERS > 1, engine/supervisor.py) open the shared port with
``SO_REUSEPORT`` — only then, so two unrelated daemons never share a port by
accident — and the kernel spreads datagrams over the workers by the peer's
address. A worker's own requests (trunk REGISTERs, B-legs, in-dialog requests)
must bring their answers back to *that* worker, so each worker also opens a
private UDP port: requests leave from it, Via and Contact name it, and a reply
goes out from the socket its peer last wrote to.
"""

from __future__ import annotations

import asyncio
import socket
from collections.abc import Callable

from engine.errors import SipTransportError
from engine.log import get_logger
from engine.transport.addresses import WILDCARDS, host_port, ip_family, strip_brackets

log = get_logger("engine.transport.udp")

# Big kernel buffers absorb bursts (the kernel caps them at net.core.rmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024

DatagramHandler = Callable[[bytes, tuple], None]

# Peers remembered as talking to a worker's private port (answered from it); a bound.
_PRIVATE_PEERS_MAX = 100_000


class UdpProtocol(asyncio.DatagramProtocol):
    """Hands every datagram to ``on_datagram(data, addr)``; never raises."""

    def __init__(self, on_datagram: DatagramHandler, label: str):
        self.on_datagram = on_datagram
        self.label = label
        self.transport: asyncio.DatagramTransport | None = None

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: tuple) -> None:
        try:
            self.on_datagram(data, addr)
        except Exception:  # a bug for one packet must not stop the listener
            log.exception("udp datagram handling failed", listener=self.label,
                          source=f"{addr[0]}:{addr[1]}", size=len(data))

    def error_received(self, exc: Exception) -> None:
        # ICMP errors (port unreachable…) of earlier sends; retransmission timers
        # and transaction time-outs already cover the consequences.
        log.debug("udp socket error", listener=self.label, error=str(exc))

    def connection_lost(self, exc: Exception | None) -> None:
        if exc is not None:
            log.warning("udp listener closed on error", listener=self.label, error=str(exc))


def _bind(family: int, host: str, port: int, reuse_port: bool = False) -> socket.socket:
    sock = socket.socket(family, socket.SOCK_DGRAM)
    try:
        if reuse_port:  # only workers of one supervisor share the port
            sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEPORT, 1)
        if family == socket.AF_INET6:
            sock.setsockopt(socket.IPPROTO_IPV6, socket.IPV6_V6ONLY, 1)
        for opt in (socket.SO_RCVBUF, socket.SO_SNDBUF):
            try:
                sock.setsockopt(socket.SOL_SOCKET, opt, SOCKET_BUFFER)
            except OSError:
                pass
        sock.bind((host, port))
        sock.setblocking(False)
    except OSError as exc:
        sock.close()
        raise SipTransportError(
            f"cannot listen on udp {host_port(host, port)}: {exc.strerror or exc}") from exc
    return sock


class UdpTransport:
    """The UDP sockets and ``send``. ``open`` returns the bound port."""

    def __init__(self, loop: asyncio.AbstractEventLoop, on_datagram: DatagramHandler,
                 reuse_port: bool = False):
        self.loop = loop
        self.on_datagram = on_datagram
        self.reuse_port = reuse_port
        self._by_family: dict[int, asyncio.DatagramTransport] = {}
        self.addresses: list[tuple[str, int]] = []
        # workers only: the private sockets (per family) and the peers that wrote to them
        self._private: dict[int, asyncio.DatagramTransport] = {}
        self._private_peers: dict[tuple[str, int], None] = {}
        self.private_port: int | None = None

    async def open(self, host: str, port: int) -> int:
        if not self.reuse_port:
            return await self._open(host, port, False, self._by_family, self.on_datagram,
                                    "udp")
        port = await self._open(host, port, True, self._by_family, self._on_shared, "udp")
        self.private_port = await self._open(host, 0, False, self._private,
                                             self._on_private, "udp private")
        return port

    def _on_shared(self, data: bytes, addr: tuple) -> None:
        if self._private_peers:
            self._private_peers.pop((addr[0], addr[1]), None)
        self.on_datagram(data, addr)

    def _on_private(self, data: bytes, addr: tuple) -> None:
        if not data.startswith(b"SIP/2.0 "):  # a request: answer it from this socket
            peers = self._private_peers
            if len(peers) >= _PRIVATE_PEERS_MAX:
                peers.clear()
            peers[(addr[0], addr[1])] = None
        self.on_datagram(data, addr)

    async def _open(self, host: str, port: int, reuse_port: bool,
                    into: dict[int, asyncio.DatagramTransport], handler: DatagramHandler,
                    kind: str) -> int:
        host = strip_brackets(host)
        if host == "::":
            plan = [(socket.AF_INET6, "::"), (socket.AF_INET, "0.0.0.0")]
        elif host in WILDCARDS:
            plan = [(socket.AF_INET, "0.0.0.0")]
        else:
            fam = ip_family(host)
            if fam is None:
                raise SipTransportError(f"SIP_HOST must be an IP address, not {host!r}")
            plan = [(fam, host)]
        socks: list[socket.socket] = []
        try:
            for fam, h in plan:
                sock = _bind(fam, h, port, reuse_port)
                socks.append(sock)
                port = sock.getsockname()[1]  # port 0: the others take the same one
        except SipTransportError:
            for s in socks:
                s.close()
            raise
        for sock in socks:
            fam = sock.family
            label = f"{kind} {host_port(sock.getsockname()[0], port)}"
            transport, _ = await self.loop.create_datagram_endpoint(
                lambda label=label: UdpProtocol(handler, label), sock=sock)
            into[fam] = transport  # type: ignore[assignment]
            if kind == "udp":
                self.addresses.append((sock.getsockname()[0], port))
        return port

    def send(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram; raises ``OSError`` when no socket can reach ``host``."""
        fam = ip_family(host)
        transport = self._by_family.get(fam) if fam is not None else None
        if transport is None:
            raise OSError(f"no udp socket for {host}")
        peer = (strip_brackets(host), port)
        if self._private and (not data.startswith(b"SIP/2.0 ") or peer in self._private_peers):
            transport = self._private.get(fam, transport)
        transport.sendto(data, peer)

    def can_reach(self, host: str) -> bool:
        fam = ip_family(host)
        return fam is not None and fam in self._by_family

    def close(self) -> None:
        for transport in (*self._by_family.values(), *self._private.values()):
            transport.close()
        self._by_family.clear()
        self._private.clear()
