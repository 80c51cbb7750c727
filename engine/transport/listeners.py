"""Opening and closing the embedded stack's sockets: the UDP socket and the TCP listener
on one address and port, attached to the driver that feeds them to the core."""

from __future__ import annotations

import asyncio

from engine.ports import Clock, Peer
from engine.transport.driver import Driver
from engine.transport.tcp_limits import TcpLimits
from engine.transport.udp import UdpTransport


async def open_listeners(driver: Driver, loop: asyncio.AbstractEventLoop, host: str,
                         port: int, transports: tuple[str, ...], clock: Clock,
                         limits: TcpLimits, reuse_port: bool) -> int:
    """Bind every transport on ``host:port`` (0 = a free port, the same for all); the
    bound port. On failure nothing stays open (``SipTransportError`` names the address)."""
    udp = tcp = None
    try:
        if "udp" in transports:
            udp = UdpTransport(loop, driver.on_datagram, reuse_port=reuse_port)
            port = await udp.open(host, port)
        if "tcp" in transports:
            from engine.transport.tcp import TcpTransport

            tcp = TcpTransport(loop, clock, driver, limits=limits, reuse_port=reuse_port)
            port = await tcp.open(host, port)
    except BaseException:
        if udp is not None:
            udp.close()
        if tcp is not None:
            await tcp.close()
        raise
    driver.udp = udp
    driver.tcp = tcp
    return port


async def close_listeners(driver: Driver) -> None:
    """Close both transports and every connection; late sends then fail quietly."""
    udp, tcp = driver.udp, driver.tcp
    driver.udp = driver.tcp = None
    if udp is not None:
        udp.close()
    if tcp is not None:
        await tcp.close()


def listening_addresses(driver: Driver) -> list[Peer]:
    """Every bound listener as ``Peer(host, port, transport)``."""
    out: list[Peer] = []
    for name, t in (("udp", driver.udp), ("tcp", driver.tcp)):
        if t is not None:
            out += [Peer(h, p, name) for h, p in t.addresses]
    return out
