"""Benchmark: RTPEngine offer+answer+delete round trips through the MediaPort.

Starts its own rtpengine on free loopback ports (as the test fixture does),
then runs calls sequentially and with N concurrent calls, and prints

* calls/s (one call = offer + answer + delete = 3 ng commands) and commands/s;
* the engine process's own CPU time per command (``time.process_time()``
  over the run / commands): what the client costs us, excluding the daemon.

The daemon runs on the same machine and competes for the same cores, so the
rates measure the pair, not the client alone; the CPU-per-command figure is
the client's share.

    .venv/bin/python bench/bench_rtpengine.py [--calls 400] [--concurrency 20]
                                              [--loop uvloop|asyncio]
"""

from __future__ import annotations

import argparse
import asyncio
import sys
import tempfile
import time
import uuid
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))

from engine.media.port import RtpEngineMedia
from engine.settings import load_settings
from tests.fixtures.rtpengine import launch_rtpengine

A_SDP = (
    b"v=0\r\no=alice 400495 400495 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 30000 RTP/AVP 0 8 9 101\r\na=rtpmap:0 PCMU/8000\r\n"
    b"a=rtpmap:8 PCMA/8000\r\na=rtpmap:9 G722/8000\r\na=rtpmap:101 telephone-event/8000\r\n"
    b"a=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)
B_SDP = (
    b"v=0\r\no=bob 590928 590928 IN IP4 127.0.0.1\r\ns=call\r\nc=IN IP4 127.0.0.1\r\n"
    b"t=0 0\r\nm=audio 30010 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\n"
    b"a=rtpmap:101 telephone-event/8000\r\na=fmtp:101 0-16\r\na=ptime:20\r\na=sendrecv\r\n"
)


async def one_call(media: RtpEngineMedia) -> None:
    call_id = f"bench-{uuid.uuid4()}"
    await media.offer(call_id=call_id, from_tag="a", sdp=A_SDP, source_codecs=("PCMU",),
                      dest_codecs=("PCMA", "G722"), branch="z9hG4bK-1")
    await media.answer(call_id=call_id, from_tag="a", to_tag="b", sdp=B_SDP, branch="z9hG4bK-1")
    await media.delete(call_id=call_id)


async def run(media: RtpEngineMedia, calls: int, concurrency: int) -> tuple[float, float]:
    queue = iter(range(calls))

    async def worker() -> None:
        for _ in queue:
            await one_call(media)

    cpu0, wall0 = time.process_time(), time.perf_counter()
    await asyncio.gather(*(worker() for _ in range(concurrency)))
    return time.perf_counter() - wall0, time.process_time() - cpu0


async def main(args: argparse.Namespace, address: str) -> None:
    with tempfile.TemporaryDirectory() as cache:
        settings = load_settings({"RTPENGINE_HOST": address, "MEDIA_CACHE_DIR": cache})
        media = RtpEngineMedia.from_settings(settings)
        await media.start()
        try:
            await run(media, 50, 5)  # warm-up (socket, daemon codec tables)
            print(f"loop={args.loop}  calls per run={args.calls}  "
                  "(1 call = offer + answer + delete)")
            for label, concurrency in (("sequential", 1),
                                       (f"{args.concurrency} concurrent", args.concurrency)):
                wall, cpu = await run(media, args.calls, concurrency)
                commands = args.calls * 3
                print(f"{label:>14}: {args.calls / wall:7.0f} calls/s  "
                      f"{commands / wall:7.0f} commands/s  "
                      f"client CPU {cpu / commands * 1e6:6.0f} µs/command "
                      f"({cpu / wall * 100:3.0f}% of one core)")
        finally:
            await media.close()


def cli() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--calls", type=int, default=400)
    parser.add_argument("--concurrency", type=int, default=20)
    parser.add_argument("--loop", choices=("uvloop", "asyncio"), default="uvloop")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as logs:
        engine = launch_rtpengine(Path(logs), "bench-rtpengine", ports=2000)
        try:
            if args.loop == "uvloop":
                import uvloop

                uvloop.run(main(args, engine.address))
            else:
                asyncio.run(main(args, engine.address))
        finally:
            engine.kill()


if __name__ == "__main__":
    cli()
