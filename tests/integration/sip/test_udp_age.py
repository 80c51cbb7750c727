"""The UDP listener knows how long each datagram waited in the kernel (SO_TIMESTAMPNS)
and discards REGISTER/INVITE copies that waited past ``stale_age`` without parsing them
(their clients have retransmitted by then); everything else is always handed on."""

from __future__ import annotations

import asyncio
import socket
import time

from engine.transport.udp import UdpTransport


async def test_ages_are_measured_and_stale_requests_discarded() -> None:
    loop = asyncio.get_running_loop()
    seen: list[tuple[bytes, float]] = []
    udp: UdpTransport

    def on_datagram(data: bytes, addr: tuple) -> None:
        seen.append((data, udp.age))

    udp = UdpTransport(loop, on_datagram)
    port = await udp.open("127.0.0.1", 0)
    try:
        udp.stale_age = 0.2
        with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as client:
            client.sendto(b"REGISTER sip:a SIP/2.0\r\n\r\n", ("127.0.0.1", port))
            await asyncio.sleep(0.05)  # read at once: young
            for data in (b"REGISTER sip:b SIP/2.0\r\n\r\n", b"INVITE sip:c SIP/2.0\r\n\r\n",
                         b"OPTIONS sip:d SIP/2.0\r\n\r\n", b"SIP/2.0 200 OK\r\n\r\n"):
                client.sendto(data, ("127.0.0.1", port))
            time.sleep(0.3)  # the loop is blocked: these wait in the kernel
            await asyncio.sleep(0.05)
        firsts = [d.split(b" ")[0] for d, _ in seen]
        assert firsts == [b"REGISTER", b"OPTIONS", b"SIP/2.0"]
        assert seen[0][1] < 0.05
        assert all(age >= 0.3 for _, age in seen[1:])
        assert udp.discarded == 2 and udp.max_age >= 0.3 and udp.age == 0.0
    finally:
        udp.close()
