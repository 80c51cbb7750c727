"""TCP abuse bounds against the real daemon (issue 10, defect 5).

One client must not exhaust the SIP TCP listener: connections are capped per
source (the extras are closed at accept, one log line per source and minute),
a connection must send its first byte and finish every message in time, idle
connections are closed after SIP_TCP_IDLE_TIMEOUT, incomplete messages are
bounded in bytes over all connections, the daemon raises its descriptor limit at
start-up and keeps a reserve of descriptors, so webhooks still work under a
connection flood.

Each test starts its own daemon (its limits differ); load loops are bounded in
count and time, and every socket is closed at the end.
"""

from __future__ import annotations

import contextlib
import socket
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.fixtures.daemon import Pbx, start_pbx
from tests.fixtures.procs import require_binary, wait_until
from tests.fixtures.sipp import run_sipp, scenario_with
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"
StartPbx = Callable[..., Pbx]


def config(hooks: WebhookServer) -> dict[str, Any]:
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": [
        {"username": "alice", "password": "secret", "expires": 600},
        {"username": "2*", "reghook": hooks.url("/reg")},
    ], "trunks": []}}}


@pytest.fixture
def pbx_with(tmp_path_factory: pytest.TempPathFactory, redis_server: str,
             rtpengine_server: Any, webhook_server: WebhookServer) -> Iterator[StartPbx]:
    """Start a daemon with extra environment and, optionally, RLIMIT_NOFILE (soft, hard)
    set before it runs; stopped (exit 0 required) at the end of the test."""
    started: list[Pbx] = []

    def start(nofile: tuple[int, int] | None = None, **env: str) -> Pbx:
        prefix: tuple[str, ...] = ()
        if nofile is not None:  # prlimit sets the limits, then execs the daemon (same pid)
            prefix = (require_binary("prlimit"), f"--nofile={nofile[0]}:{nofile[1]}", "--")
        pbx = start_pbx(tmp_path_factory.mktemp("pbx"), config(webhook_server),
                        redis_url=redis_server, rtpengine=rtpengine_server, env=env,
                        prefix=prefix)
        started.append(pbx)
        return pbx

    yield start
    for pbx in started:
        rc = pbx.stop()
        assert rc == 0, f"daemon exited {rc} on SIGTERM:\n{pbx.tail()}"


@pytest.fixture
def sockets() -> Iterator[list[socket.socket]]:
    """Every client socket a test opens; all closed at the end."""
    opened: list[socket.socket] = []
    yield opened
    for s in opened:
        s.close()


def connect(pbx: Pbx, opened: list[socket.socket], source: str = "127.0.0.1") -> socket.socket:
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    opened.append(s)
    s.bind((source, 0))
    s.settimeout(5)
    s.connect(("127.0.0.1", pbx.port))
    return s


def closed_by_peer(s: socket.socket, wait: float) -> bool:
    """True if the daemon closed ``s`` (EOF or reset) within ``wait`` seconds; any data
    it sent before is skipped."""
    end = time.monotonic() + wait
    while True:
        left = end - time.monotonic()
        if left <= 0:
            return False
        s.settimeout(left)
        try:
            if s.recv(65536) == b"":
                return True
        except (ConnectionResetError, BrokenPipeError):
            return True
        except TimeoutError:
            return False


def options(pbx: Pbx, s: socket.socket, n: int = 1) -> bytes:
    port = s.getsockname()[1]
    return (f"OPTIONS sip:pbx@{pbx.address} SIP/2.0\r\n"
            f"Via: SIP/2.0/TCP 127.0.0.1:{port};branch=z9hG4bK-lim-{port}-{n}\r\n"
            f"From: <sip:probe@127.0.0.1>;tag=t{port}\r\nTo: <sip:pbx@{pbx.address}>\r\n"
            f"Call-ID: lim-{port}-{n}\r\nCSeq: {n} OPTIONS\r\nMax-Forwards: 70\r\n"
            f"Content-Length: 0\r\n\r\n").encode()


def ask_options(pbx: Pbx, s: socket.socket, n: int = 1) -> bytes:
    s.sendall(options(pbx, s, n))
    s.settimeout(5)
    reply = b""
    while b"\r\n\r\n" not in reply:
        chunk = s.recv(65536)
        if not chunk:
            break
        reply += chunk
    return reply


def register(pbx: Pbx, user: str, password: str, *, transport: str = "udp",
             bind: str = "127.0.0.1") -> Any:
    return run_sipp(scenario_with("reg_auth", code=200), pbx.address, transport=transport,
                    keys={"domain": DOMAIN, "expires": "300"}, bind=bind,
                    extra=["-s", user, "-au", user, "-ap", password, "-m", "1"], timeout=15)


def warnings(pbx: Pbx, text: str) -> list[dict[str, Any]]:
    return [ln for ln in pbx.log_lines() if text in str(ln.get("msg", ""))]


def vm_rss_kb(pid: int) -> int:
    for line in Path(f"/proc/{pid}/status").read_text().splitlines():
        if line.startswith("VmRSS:"):
            return int(line.split()[1])
    raise AssertionError("no VmRSS")


def max_open_files(pid: int) -> tuple[int, int]:
    for line in Path(f"/proc/{pid}/limits").read_text().splitlines():
        if line.startswith("Max open files"):
            soft, hard = line.split()[3:5]
            return int(soft), int(hard)
    raise AssertionError("no Max open files")


# --------------------------------------------------------------------------- tests


def test_per_source_cap_closes_extra_connections_other_sources_still_register(
        pbx_with: StartPbx, sockets: list[socket.socket]) -> None:
    pbx = pbx_with(SIP_TCP_MAX_PER_SOURCE="5")
    conns = [connect(pbx, sockets) for _ in range(8)]
    time.sleep(0.3)
    extra_closed = [closed_by_peer(s, 2.0) for s in conns[5:]]
    kept_open = [not closed_by_peer(s, 0.2) for s in conns[:5]]
    assert extra_closed == [True] * 3, "connections over the per-source cap must be closed"
    assert kept_open == [True] * 5
    assert ask_options(pbx, conns[0]).startswith(b"SIP/2.0 200")

    # Another source registers over TCP while 127.0.0.1 holds its whole allowance.
    result = register(pbx, "alice", "secret", transport="tcp", bind="127.0.0.2")
    assert result.rc == 0, result.explain()

    # A freed slot can be used again.
    conns[1].close()
    time.sleep(0.3)
    again = connect(pbx, sockets)
    assert ask_options(pbx, again, 2).startswith(b"SIP/2.0 200")

    # Three refusals, one log line (throttled per source and minute).
    lines = warnings(pbx, "per-source limit reached")
    assert len(lines) == 1 and lines[0]["source"] == "127.0.0.1", lines
    assert lines[0]["level"] == "warning"


def test_slowloris_and_silent_connections_are_closed_by_their_deadlines(
        pbx_with: StartPbx, sockets: list[socket.socket]) -> None:
    pbx = pbx_with(SIP_TCP_MESSAGE_TIMEOUT="2", SIP_TCP_FIRST_BYTE_TIMEOUT="1")
    good = connect(pbx, sockets)
    assert ask_options(pbx, good).startswith(b"SIP/2.0 200")
    silent = connect(pbx, sockets)
    slow = connect(pbx, sockets)
    started = time.monotonic()
    message = options(pbx, slow)
    closed_after = None
    for i in range(40):  # one byte every 0.2 s: the message would take ~50 s
        try:
            slow.sendall(message[i:i + 1])
        except (BrokenPipeError, ConnectionResetError):
            closed_after = time.monotonic() - started
            break
        if closed_by_peer(slow, 0.2):
            closed_after = time.monotonic() - started
            break
    assert closed_after is not None, "a trickling connection must be closed"
    assert 1.8 <= closed_after <= 4.5, closed_after
    assert closed_by_peer(silent, 0.5), "a connection that never sends must be closed"
    # The complete exchange earlier does not count against the quiet connection.
    assert not closed_by_peer(good, 0.1)
    assert ask_options(pbx, good, 2).startswith(b"SIP/2.0 200")
    assert warnings(pbx, "message not complete in time")
    assert warnings(pbx, "nothing received in time")


def test_idle_timeout_is_a_setting_and_keepalives_hold_the_connection(
        pbx_with: StartPbx, sockets: list[socket.socket]) -> None:
    pbx = pbx_with(SIP_TCP_IDLE_TIMEOUT="2")
    quiet = connect(pbx, sockets)
    pinging = connect(pbx, sockets)
    assert ask_options(pbx, quiet).startswith(b"SIP/2.0 200")
    assert ask_options(pbx, pinging).startswith(b"SIP/2.0 200")
    started = time.monotonic()
    closed_after = None
    while time.monotonic() - started < 6:
        pinging.sendall(b"\r\n\r\n")  # RFC 5626 ping: traffic, so not idle
        pinging.settimeout(2)
        assert pinging.recv(2) == b"\r\n"
        if closed_after is None and closed_by_peer(quiet, 0.5):
            closed_after = time.monotonic() - started
    assert closed_after is not None, "an idle connection must be closed after the setting"
    assert 1.5 <= closed_after <= 4.5, closed_after
    assert ask_options(pbx, pinging, 2).startswith(b"SIP/2.0 200")


def test_buffered_bytes_are_bounded_and_the_oldest_partial_messages_go_first(
        pbx_with: StartPbx, sockets: list[socket.socket]) -> None:
    bound = 4 * 1024 * 1024
    pbx = pbx_with(SIP_TCP_MAX_BUFFERED_BYTES=str(bound), SIP_TCP_MAX_PER_SOURCE="2000",
                   SIP_TCP_MESSAGE_TIMEOUT="120", SIP_TCP_FIRST_BYTE_TIMEOUT="120")
    warm = connect(pbx, sockets)
    assert ask_options(pbx, warm).startswith(b"SIP/2.0 200")
    before = vm_rss_kb(pbx.proc.pid)
    count, size = 800, 60_000  # 48 MB of header sections that never end
    conns = []
    for i in range(count):
        s = connect(pbx, sockets)
        head = f"OPTIONS sip:pbx@{pbx.address} SIP/2.0\r\nX-Pad: ".encode()
        s.sendall(head + b"a" * (size - len(head)))
        conns.append(s)
        if i % 100 == 99:
            time.sleep(0.05)  # let the daemon read
    time.sleep(1.0)
    grown_mb = (vm_rss_kb(pbx.proc.pid) - before) / 1024
    assert grown_mb < 16, f"RSS grew {grown_mb:.1f} MB for a {bound >> 20} MB bound"
    oldest_closed = sum(closed_by_peer(s, 0.05) for s in conns[:100])
    newest_open = sum(not closed_by_peer(s, 0.05) for s in conns[-20:])
    assert oldest_closed == 100 and newest_open == 20, (oldest_closed, newest_open)
    assert warnings(pbx, "buffered input over bound")
    assert ask_options(pbx, warm, 2).startswith(b"SIP/2.0 200")


def test_descriptor_limit_is_raised_at_startup(pbx_with: StartPbx) -> None:
    pbx = pbx_with(nofile=(256, 4096))
    assert max_open_files(pbx.proc.pid) == (4096, 4096)
    assert not warnings(pbx, "file-descriptor limit is low")


def test_connection_flood_leaves_descriptors_for_webhooks(
        pbx_with: StartPbx, sockets: list[socket.socket], webhooks: WebhookServer) -> None:
    """Hard limit 512 (soft 256): without a reserve the flood takes every descriptor and
    the RegHook cannot connect (503 "Too many open files")."""
    pbx = pbx_with(nofile=(256, 512), SIP_TCP_MAX_PER_SOURCE="100000")
    assert max_open_files(pbx.proc.pid) == (512, 512)
    assert warnings(pbx, "file-descriptor limit is low")
    webhooks.reply("/reg", json={"status": "ok", "expires": 120})
    flood = []
    for _ in range(700):
        with contextlib.suppress(OSError):
            flood.append(connect(pbx, sockets))
    time.sleep(0.5)
    result = register(pbx, "2001", "pw")
    assert result.rc == 0, result.explain()
    assert len(webhooks.requests("/reg")) == 1
    still_open = sum(not closed_by_peer(s, 0.01) for s in flood)
    assert still_open <= 512 - 256, still_open  # the inbound cap held the flood
    wait_until(lambda: bool(warnings(pbx, "inbound limit reached")), 5, "cap warning")
