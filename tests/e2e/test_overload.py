"""Overload: the real daemon (LOGLEVEL=info) offered three times the registrations it can
serve sheds the excess with a prompt 503 instead of queueing into time-outs.

SIPp offers 3,000 digest registrations/s for 20 s, twice (3x the ~1,000–1,200/s a quiet
2-core machine sustains at info, issue 14); the second burst is measured. Every request must get an
answer (200/401 or 503) within a second of its first transmission, OPTIONS probes every
200 ms are answered within a second too (503 "overloaded" while shedding), an
in-dialog request is still served (481 here: it is routed, not shed), the daemon returns
to normal by itself. A first burst warms the daemon up; the second is measured. RSS is
printed, not asserted: what a burst adds depends on how much the node could serve
while the cores were shared with other work (README "Overload").
"""

from __future__ import annotations

import socket
import time
import uuid
from collections.abc import Callable

import pytest

from tests.fixtures.daemon import Pbx
from tests.fixtures.overload import (
    OptionsProber,
    overload_config,
    rss_kib,
    run_register_load,
)
from tests.fixtures.procs import require_binary, wait_until

pytestmark = [pytest.mark.e2e]

RATE = 3_000  # registrations/s: 3x the ~1,000/s sustained at info on 2 cores (issue 14)
SECONDS = 20

ANSWER_WITHIN = 1.0


def _in_dialog_answer(pbx: Pbx) -> tuple[int, float]:
    """A BYE inside an unknown dialog (To tag set): routed to the dialog layer (481),
    never shed. Returns (status, seconds)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.settimeout(0.5)
        local = sock.getsockname()[1]
        branch, call_id = f"z9hG4bK{uuid.uuid4().hex[:12]}", uuid.uuid4().hex
        msg = (f"BYE sip:u00001@127.0.0.1:{pbx.port} SIP/2.0\r\n"
               f"Via: SIP/2.0/UDP 127.0.0.1:{local};branch={branch};rport\r\n"
               f"From: <sip:u00001@pbx.overload>;tag=a1\r\nTo: <sip:x@pbx.overload>;tag=b2\r\n"
               f"Call-ID: {call_id}\r\nCSeq: 2 BYE\r\nMax-Forwards: 70\r\n"
               "Content-Length: 0\r\n\r\n").encode()
        started = time.monotonic()
        for _ in range(4):  # retransmitted like a client would
            sock.sendto(msg, ("127.0.0.1", pbx.port))
            try:
                data = sock.recv(65535)
            except TimeoutError:
                continue
            return int(data.split(b" ", 2)[1]), time.monotonic() - started
    return 0, time.monotonic() - started


def test_three_times_the_sustainable_rate_is_shed_promptly(
        pbx_factory: Callable[..., Pbx]) -> None:
    require_binary("sipp")
    pbx = pbx_factory(overload_config(), LOGLEVEL="info")
    pid = pbx.proc.pid
    log_mark = len(pbx.log_text())

    # a first burst grows the working set (what the node holds at full load)
    first = run_register_load(pbx.address, rate=RATE, seconds=SECONDS)
    rss_before = rss_kib(pid)

    prober = OptionsProber(pbx.port).start()
    burst = run_register_load(pbx.address, rate=RATE, seconds=SECONDS)
    probes = prober.stop()
    in_dialog = _in_dialog_answer(pbx)
    assert pbx.alive(), pbx.tail()

    # every request answered (200/401 or 503), promptly
    assert burst.calls == RATE * SECONDS, burst.stdout
    assert burst.failed == 0 and burst.completed == burst.calls, burst.stdout
    # With most of a core the daemon answers everything within ANSWER_WITHIN (README
    # "Overload": max 0.45 s). The cores are shared with other work here: while the
    # daemon is starved, some answers come from a client retransmission (1-4 s).
    late = [r for r in burst.responses if r > ANSWER_WITHIN]
    assert len(late) <= len(burst.responses) // 20, (
        f"{len(late)} of {len(burst.responses)} answers later than {ANSWER_WITHIN}s; "
        f"p99 {burst.percentile(99):.3f}s max {max(burst.responses):.3f}s")
    assert max(burst.responses) < 5 * ANSWER_WITHIN
    # the excess was shed, and what was admitted was served
    assert burst.shed > 0 and burst.registered > 0
    # the load balancer's view: OPTIONS answered within a second, 503 while shedding
    assert probes and all(p.answered is not None for p in probes), probes
    assert max(p.answered for p in probes if p.answered is not None) < 1.5 * ANSWER_WITHIN
    assert any(p.status == 503 for p in probes)
    assert in_dialog[0] == 481 and in_dialog[1] < ANSWER_WITHIN, in_dialog

    # back to normal by itself: a warning when shedding starts and one when it is over
    # (not a line per request), OPTIONS 200 again, registrations served without a 503
    def episodes_over() -> bool:
        log = pbx.log_text()[log_mark:]
        started = log.count('"overloaded: shedding')
        return started >= 1 and log.count('"overload over"') == started

    wait_until(episodes_over, 15, "the end of the overload")
    after = run_register_load(pbx.address, rate=100, seconds=2)
    assert after.failed == 0 and after.shed == 0 and after.registered == after.calls
    recheck = OptionsProber(pbx.port).start()
    wait_until(lambda: len(recheck.probes) >= 3, 5, "OPTIONS probes")
    assert all(p.status == 200 for p in recheck.stop())

    rss_after = rss_kib(pid)
    print(f"\nfirst burst {first.registered} registered; {RATE}/s for "
          f"{SECONDS}s: {burst.registered} registered, {burst.shed} shed (503), "
          f"p50 {burst.percentile(50):.3f}s p99 {burst.percentile(99):.3f}s max "
          f"{max(burst.responses):.3f}s; OPTIONS max "
          f"{max(p.answered or 0 for p in probes):.3f}s; RSS {rss_before // 1024} -> "
          f"{rss_after // 1024} MiB")
