"""UDP listener(s) of the embedded SIP stack.

One non-blocking socket per address family (``::`` binds an IPv6-only socket
*and* an IPv4 one on the same port, so peers never show up as IPv4-mapped
addresses), each read by a plain loop reader: a datagram goes straight from the
socket into the driver, no task and no queue per packet.

Each datagram carries its kernel receive time (``SO_TIMESTAMPNS``), so the stack
knows how long it waited in the socket buffer: ``UdpTransport.age`` is the wait of
the datagram being handled, ``max_age`` the longest since overload control last
looked (``engine.overload`` sheds new requests that waited too long — under overload
the queue builds up in the kernel, not in the loop). The socket is read in bursts of
up to ``BURST`` datagrams per wake-up, then the loop serves timers and tasks; a
REGISTER or INVITE older than ``stale_age`` is discarded without being parsed, so a
backlog drains at the cost of a read per datagram.

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
import struct
import time
from collections.abc import Callable

from engine.errors import SipTransportError
from engine.log import get_logger
from engine.transport.addresses import WILDCARDS, host_port, ip_family, strip_brackets

log = get_logger("engine.transport.udp")

# Big kernel buffers absorb bursts (the kernel caps them at net.core.rmem_max).
SOCKET_BUFFER = 4 * 1024 * 1024
BURST = 64  # datagrams handled per wake-up before the loop runs other work
MAX_DISCARD = 4096  # stale datagrams discarded per wake-up (each costs a read only)
_STARTS_WORK = (b"REGISTER ", b"INVITE ")  # requests worth discarding when stale
MAX_DATAGRAM = 65535
_SO_TIMESTAMPNS = getattr(socket, "SO_TIMESTAMPNS", 35)  # Linux
_TIMESPEC = struct.Struct("@qq")
_ANCILLARY = socket.CMSG_SPACE(_TIMESPEC.size)

DatagramHandler = Callable[[bytes, tuple], None]

# Peers remembered as talking to a worker's private port (answered from it); a bound.
_PRIVATE_PEERS_MAX = 100_000


class UdpListener:
    """Reads one socket for its ``UdpTransport``; hands every datagram to
    ``handler(data, addr)``; never raises into the loop."""

    def __init__(self, owner: UdpTransport, sock: socket.socket, label: str,
                 handler: DatagramHandler):
        self.owner = owner
        self.sock = sock
        self.label = label
        self.handler = handler

    def read(self) -> None:
        owner = self.owner
        handle = self.handler
        recvmsg = self.sock.recvmsg
        unpack = _TIMESPEC.unpack_from
        clock = time.time
        stale = owner.stale_age
        handled = discarded = 0
        while handled < BURST and discarded < MAX_DISCARD:
            try:
                data, ancillary, _flags, addr = recvmsg(MAX_DATAGRAM, _ANCILLARY)
            except (BlockingIOError, InterruptedError):
                break
            except OSError as exc:
                # ICMP errors of earlier sends; retransmission timers and transaction
                # time-outs already cover the consequences.
                log.debug("udp socket error", listener=self.label, error=str(exc))
                break
            age = 0.0
            if ancillary:
                sec, nsec = unpack(ancillary[0][2])
                age = clock() - sec - nsec * 1e-9
                owner.max_age = max(owner.max_age, age)
                if age >= stale and data.startswith(_STARTS_WORK):
                    # its client has retransmitted it by now: that copy gets the answer
                    discarded += 1
                    continue
            owner.age = age
            handled += 1
            try:
                handle(data, addr)
            except Exception:  # a bug for one packet must not stop the listener
                log.exception("udp datagram handling failed", listener=self.label,
                              source=f"{addr[0]}:{addr[1]}", size=len(data))
        owner.age = 0.0
        owner.discarded += discarded


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
        try:
            sock.setsockopt(socket.SOL_SOCKET, _SO_TIMESTAMPNS, 1)
        except OSError:  # no receive timestamps: ages read 0, loop lag still counts
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
        self._by_family: dict[int, socket.socket] = {}
        self.addresses: list[tuple[str, int]] = []
        # workers only: the private sockets (per family) and the peers that wrote to them
        self._private: dict[int, socket.socket] = {}
        self._private_peers: dict[tuple[str, int], None] = {}
        self.private_port: int | None = None
        self.age = 0.0  # seconds the datagram being handled waited in the kernel
        self.max_age = 0.0  # the longest such wait since overload control reset it
        # REGISTER/INVITE datagrams that waited this long are discarded unread (set by
        # engine.overload; by then the client has retransmitted, and reading the stale
        # copies would only delay the fresh ones further)
        self.stale_age = float("inf")
        self.discarded = 0
        self.send_dropped = 0  # datagrams not sent because the send buffer was full

    async def open(self, host: str, port: int) -> int:
        if not self.reuse_port:
            return self._open(host, port, False, self._by_family, self.on_datagram, "udp")
        port = self._open(host, port, True, self._by_family, self._on_shared, "udp")
        self.private_port = self._open(host, 0, False, self._private, self._on_private,
                                       "udp private")
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

    def _open(self, host: str, port: int, reuse_port: bool, into: dict[int, socket.socket],
              handler: DatagramHandler, kind: str) -> int:
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
            label = f"{kind} {host_port(sock.getsockname()[0], port)}"
            self.loop.add_reader(sock.fileno(), UdpListener(self, sock, label, handler).read)
            into[sock.family] = sock
            if kind == "udp":
                self.addresses.append((sock.getsockname()[0], port))
        return port

    def send(self, data: bytes, host: str, port: int) -> None:
        """Send one datagram; raises ``OSError`` when no socket can reach ``host``. A
        full send buffer loses the datagram, as the network may (retransmission covers)."""
        fam = ip_family(host)
        sock = self._by_family.get(fam) if fam is not None else None
        if sock is None:
            raise OSError(f"no udp socket for {host}")
        peer = (strip_brackets(host), port)
        if self._private and (not data.startswith(b"SIP/2.0 ") or peer in self._private_peers):
            sock = self._private.get(sock.family, sock)
        try:
            sock.sendto(data, peer)
        except (BlockingIOError, InterruptedError):
            self.send_dropped += 1

    def can_reach(self, host: str) -> bool:
        fam = ip_family(host)
        return fam is not None and fam in self._by_family

    def close(self) -> None:
        for sock in (*self._by_family.values(), *self._private.values()):
            try:
                self.loop.remove_reader(sock.fileno())
            except (ValueError, RuntimeError):  # loop already closed
                pass
            sock.close()
        self._by_family.clear()
        self._private.clear()
