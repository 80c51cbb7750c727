"""Minimal RTP endpoints for relay tests: send paced packets, record what arrives.

Mind environment.md §5: skip non-RTP datagrams (STUN, first byte >> 6 != 2)
and keep sequence numbers/timestamps increasing per SSRC across bursts.
"""

from __future__ import annotations

import asyncio
import random
import re
import struct
from dataclasses import dataclass
from typing import Any

RTPMAP = {0: "PCMU/8000", 8: "PCMA/8000", 9: "G722/8000", 101: "telephone-event/8000"}
SILENCE = {0: b"\xff" * 160, 8: b"\xd5" * 160, 9: b"\x00" * 160}


@dataclass(frozen=True)
class Packet:
    pt: int
    marker: bool
    seq: int
    ts: int
    ssrc: int
    payload: bytes


class RtpPeer(asyncio.DatagramProtocol):
    """One party's RTP socket on 127.0.0.1."""

    def __init__(self, name: str):
        self.name = name
        self.packets: list[Packet] = []
        self.other: int = 0  # datagrams that were not RTP (STUN, RTCP on the RTP port…)
        self.transport: asyncio.DatagramTransport | None = None
        self.ssrc = random.getrandbits(32)
        self.seq = random.getrandbits(15)
        self.ts = random.getrandbits(31)

    @classmethod
    async def open(cls, name: str) -> RtpPeer:
        loop = asyncio.get_running_loop()
        _, peer = await loop.create_datagram_endpoint(lambda: cls(name),
                                                      local_addr=("127.0.0.1", 0))
        return peer

    def connection_made(self, transport: asyncio.BaseTransport) -> None:
        self.transport = transport  # type: ignore[assignment]

    def datagram_received(self, data: bytes, addr: Any) -> None:
        if len(data) < 12 or data[0] >> 6 != 2 or 72 <= (data[1] & 0x7F) <= 76:
            self.other += 1  # STUN, or RTCP (PT 200-204 show up as 72-76 with marker)
            return
        cc = data[0] & 0x0F
        seq, ts, ssrc = struct.unpack("!HII", data[2:12])
        self.packets.append(Packet(data[1] & 0x7F, bool(data[1] & 0x80), seq, ts, ssrc,
                                   data[12 + 4 * cc:]))

    @property
    def port(self) -> int:
        assert self.transport is not None
        return self.transport.get_extra_info("sockname")[1]

    def sdp(self, pts: list[int], *, session: str | None = None) -> bytes:
        lines = ["v=0", f"o={self.name} 1 1 IN IP4 127.0.0.1", f"s={session or self.name}",
                 "c=IN IP4 127.0.0.1", "t=0 0",
                 f"m=audio {self.port} RTP/AVP {' '.join(map(str, pts))}"]
        lines += [f"a=rtpmap:{pt} {RTPMAP[pt]}" for pt in pts]
        if 101 in pts:
            lines.append("a=fmtp:101 0-16")
        lines += ["a=ptime:20", "a=sendrecv"]
        return ("\r\n".join(lines) + "\r\n").encode()

    def send_one(self, port: int, pt: int, payload: bytes | None = None) -> None:
        assert self.transport is not None
        header = struct.pack("!BBHII", 0x80, pt, self.seq & 0xFFFF, self.ts & 0xFFFFFFFF,
                             self.ssrc)
        self.transport.sendto(header + (payload if payload is not None else SILENCE[pt]),
                              ("127.0.0.1", port))
        self.seq += 1
        self.ts += 160

    async def stream(self, port: int, pt: int, count: int, interval: float = 0.02) -> None:
        """Send ``count`` packets 20 ms apart (real-time pacing: the transcoder needs it)."""
        loop = asyncio.get_running_loop()
        start = loop.time()
        for n in range(count):
            self.send_one(port, pt)
            delay = start + (n + 1) * interval - loop.time()
            if delay > 0:
                await asyncio.sleep(delay)

    def pts(self) -> list[int]:
        return [p.pt for p in self.packets]

    def close(self) -> None:
        if self.transport is not None:
            self.transport.close()


def media_port(sdp: bytes) -> int:
    match = re.search(rb"^m=audio (\d+) ", sdp, re.MULTILINE)
    assert match, sdp
    return int(match.group(1))


def media_formats(sdp: bytes) -> list[int]:
    match = re.search(rb"^m=audio \d+ [A-Z/]+((?: \d+)*)\s*$", sdp, re.MULTILINE)
    assert match, sdp
    return [int(x) for x in match.group(1).split()]


def telephone_events(packets: list[Packet], pt: int = 101) -> list[tuple[int, bool, int]]:
    """(event, end bit, duration) of every RFC 4733 packet."""
    out = []
    for p in packets:
        if p.pt == pt and len(p.payload) >= 4:
            event, flags, duration = struct.unpack("!BBH", p.payload[:4])
            out.append((event, bool(flags & 0x80), duration))
    return out


async def wait_for(check: Any, timeout: float = 3.0, interval: float = 0.02) -> None:
    loop = asyncio.get_running_loop()
    deadline = loop.time() + timeout
    while not check():
        if loop.time() > deadline:
            raise AssertionError("condition not met in time")
        await asyncio.sleep(interval)
