"""WORKERS=2 end to end: `dragonpbx run` as a supervisor of two engine processes on one
SIP port (SO_REUSEPORT), driven by SIPp from many source ports, with the supervisor's
signal handling and worker restart checked on the real processes."""

from __future__ import annotations

import os
import signal
from collections import Counter
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.e2e.test_calls import assert_clean, script
from tests.fixtures.daemon import Pbx, start_pbx
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import (
    free_udp_port,
    run_sipp,
    scenario,
    scenario_with,
    start_sipp,
)
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "pbx.test"


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/call"), "statusHook": hooks.url("/status")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob")]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": []}}}


@pytest.fixture(scope="module")
def workers(tmp_path_factory: pytest.TempPathFactory, redis_server: str,
            rtpengine_server: Any, webhook_server: WebhookServer) -> Iterator[Pbx]:
    # NONCE_SECRET unset: the supervisor makes one for both workers.
    pbx = start_pbx(tmp_path_factory.mktemp("workers"), config(webhook_server),
                    redis_url=redis_server, rtpengine=rtpengine_server,
                    env={"WORKERS": "2", "NONCE_SECRET": "", "LOGLEVEL": "debug",
                         "ABUSE_RATE_LIMIT": "0", "WEBPORT": "auto"})
    try:
        pbx.wait_log('"workers ready"', 30)
        yield pbx
    finally:
        if pbx.alive():
            pbx.proc.kill()
            pbx.proc.wait(10)


def test_each_worker_serves_its_own_http_api(workers: Pbx) -> None:
    """Worker i serves its API and metrics on WEBPORT + i: the workers do not race for
    one HTTP port (the first one to bind would win and the other fail to start)."""
    import json
    import urllib.request

    assert workers.web_port
    for index in (0, 1):
        with urllib.request.urlopen(
                f"http://127.0.0.1:{workers.web_port + index}/health", timeout=5) as resp:
            assert resp.status == 200
            json.loads(resp.read() or b"{}")


def worker_pids(pbx: Pbx) -> dict[int, int]:
    """worker index → pid of its latest start (from the supervisor's log)."""
    pids: dict[int, int] = {}
    for line in pbx.log_lines():
        if line.get("msg") == "worker started":
            pids[line["worker"]] = line["pid"]
    return pids


def _listening_inodes(port: int) -> dict[str, str]:
    """socket inode → "udp"/"tcp" for the sockets bound to ``port`` (TCP: listening)."""
    out: dict[str, str] = {}
    for proto in ("udp", "tcp"):
        for line in Path(f"/proc/net/{proto}").read_text().splitlines()[1:]:
            f = line.split()
            if int(f[1].rsplit(":", 1)[1], 16) == port and (proto == "udp" or f[3] == "0A"):
                out[f[9]] = proto
    return out


def _socket_inodes(pid: int) -> set[str]:
    out = set()
    for fd in os.listdir(f"/proc/{pid}/fd"):
        try:
            target = os.readlink(f"/proc/{pid}/fd/{fd}")
        except OSError:
            continue
        if target.startswith("socket:["):
            out.add(target[8:-1])
    return out


def register_many(pbx: Pbx, count: int) -> None:
    """``count`` digest registrations, each from its own UDP source port (SIPp -t un)."""
    result = run_sipp(scenario_with("reg_auth", code=200), pbx.address, timeout=60,
                      keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", "alice", "-au", "alice", "-ap", "secret", "-t", "un",
                             "-max_socket", "1000",
                             "-m", str(count), "-r", "40", "-l", "40"])
    assert result.rc == 0, result.explain()
    assert result.stat("SuccessfulCall") == count, result.explain()


def lines_by_instance(pbx: Pbx, start: int, **match: Any) -> Counter[str]:
    out: Counter[str] = Counter()
    for line in pbx.log_lines()[start:]:
        if all(line.get(k) == v for k, v in match.items()) and "instance" in line:
            out[line["instance"]] += 1
    return out


def test_two_workers_share_the_udp_and_tcp_port(workers: Pbx) -> None:
    pids = worker_pids(workers)
    assert sorted(pids) == [0, 1] and workers.proc.pid not in pids.values()
    shared = _listening_inodes(workers.port)
    for pid in pids.values():
        mine = {shared[i] for i in _socket_inodes(pid) if i in shared}
        assert mine == {"udp", "tcp"}, (pid, mine)
    # the supervisor itself holds no SIP socket
    assert not _socket_inodes(workers.proc.pid) & set(shared)


def test_registrations_from_many_ports_reach_both_workers(workers: Pbx) -> None:
    start = len(workers.log_lines())
    register_many(workers, 60)
    # every REGISTER is answered 401 (challenge) then 200: count the challenges per worker
    challenged = lines_by_instance(workers, start, msg="challenge sent", status=401)
    base = f"e2e-{workers.port}"
    assert set(challenged) == {f"{base}-w0", f"{base}-w1"}, challenged
    assert sum(challenged.values()) == 60


def test_calls_through_workers_connect_and_end(workers: Pbx, webhooks: WebhookServer) -> None:
    """Each worker's B-leg goes out from its private UDP port, so the callee's answers and
    BYE come back to the worker that has the call, whichever worker the caller reached."""
    webhooks.reply("/status", json={"ok": True})
    script(webhooks, [{"verb": "connect", "dest": {"type": "client", "address": "bob"}}])
    port = free_udp_port()
    reg = run_sipp(scenario_with("reg_auth", code=200), workers.address, port=port,
                   keys={"domain": DOMAIN, "expires": "300"},
                   extra=["-s", "bob", "-au", "bob", "-ap", "secret", "-m", "1"], timeout=15)
    assert reg.rc == 0, reg.explain()
    bob = start_sipp(scenario("call_uas"), port=port, media=True, timeout=90,
                     extra=["-rtp_echo", "-m", "6", "-d", "300"])
    try:
        start = len(workers.log_lines())
        result = run_sipp(scenario("call_uac"), workers.address, media=True, timeout=80,
                          keys={"domain": DOMAIN, "caller": "alice"},
                          extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "6",
                                 "-r", "2", "-d", "1000", "-t", "un",
                                 "-max_socket", "1000"])
        assert result.rc == 0, result.explain()
        assert result.stat("SuccessfulCall") == 6, result.explain()
        assert bob.wait(30).rc == 0
        handled = lines_by_instance(workers, start, msg="challenge sent", status=401)
        assert sum(handled.values()) == 6, handled
    finally:
        bob.stop()
    assert_clean(workers)


def test_killed_worker_is_restarted_and_service_continues(workers: Pbx) -> None:
    before = worker_pids(workers)
    start = len(workers.log_text())
    os.kill(before[1], signal.SIGKILL)
    workers.wait_log('"worker died; restarting"', 10, start=start)
    died = [line for line in workers.log_lines() if line.get("msg") == "worker died; restarting"]
    assert died[-1]["level"] == "error" and died[-1]["signal"] == "SIGKILL", died[-1]
    assert died[-1]["worker"] == 1 and died[-1]["pid"] == before[1]
    register_many(workers, 20)  # the survivor serves meanwhile
    wait_until(lambda: worker_pids(workers)[1] != before[1], 15, "worker 1 restarted")
    after = worker_pids(workers)
    assert after[0] == before[0]
    wait_until(lambda: workers.log_text().count('"ready"', start) >= 1, 30, "restarted ready")
    wait_until(lambda: after[1] in {pid for pid in _pids_on(workers.port)}, 15,
               "the new worker on the shared port")
    register_many(workers, 40)


def _running(pid: int) -> bool:
    """``pid`` exists and is not a zombie."""
    try:
        return "zombie" not in Path(f"/proc/{pid}/status").read_text().lower()
    except OSError:
        return False


def _pids_on(port: int) -> set[int]:
    shared = _listening_inodes(port)
    out = set()
    for entry in os.listdir("/proc"):
        if entry.isdigit():
            try:
                if _socket_inodes(int(entry)) & set(shared):
                    out.add(int(entry))
            except OSError:
                continue
    return out


def test_sighup_reaches_every_worker(workers: Pbx) -> None:
    start = len(workers.log_lines())
    workers.signal(signal.SIGHUP)
    wait_until(lambda: len(lines_by_instance(
        workers, start, msg="reloading configuration and machines")) == 2, 10,
        "both workers reloading")


def test_sigusr1_makes_every_worker_log_its_sizes(workers: Pbx) -> None:
    """SIGUSR1 to the supervisor (what an operator sends to the one pid systemd shows)
    reaches each worker, which logs its own table sizes."""
    start = len(workers.log_lines())
    workers.signal(signal.SIGUSR1)
    wait_until(lambda: len(lines_by_instance(workers, start, msg="sizes")) == 2, 10,
               "a sizes line from each worker")
    assert workers.alive()


def test_sigterm_drains_every_worker_and_exits_0(workers: Pbx) -> None:
    pids = worker_pids(workers)
    assert workers.stop() == 0, workers.tail()
    for pid in pids.values():
        assert not _running(pid)
    stopped = lines_by_instance(workers, 0, msg="stopped")
    assert len(stopped) == 2, stopped
    assert not _pids_on(workers.port)


def test_second_supervisor_on_a_taken_port_refuses_to_start(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhook_server: WebhookServer) -> None:
    """SO_REUSEPORT is set only by workers: a supervisor never joins a port in use."""
    first = start_pbx(tmp_path_factory.mktemp("w-first"), config(webhook_server),
                      redis_url=redis_server, rtpengine=rtpengine_server,
                      env={"WORKERS": "2"})
    try:
        first.wait_log('"workers ready"', 30)
        with pytest.raises(RuntimeError, match="exited with 2"):
            start_pbx(tmp_path_factory.mktemp("w-second"), config(webhook_server),
                      redis_url=redis_server, rtpengine=rtpengine_server,
                      env={"WORKERS": "2", "SIP_PORT": str(first.port)})
    finally:
        assert first.stop() == 0


def test_workers_that_cannot_start_stop_the_supervisor_with_exit_2(
        tmp_path_factory: pytest.TempPathFactory, rtpengine_server: Any,
        webhook_server: WebhookServer) -> None:
    """A start-up failure (here: no Redis) is not restarted forever."""
    with pytest.raises(RuntimeError, match="exited with 2") as failed:
        start_pbx(tmp_path_factory.mktemp("w-noredis"), config(webhook_server),
                  redis_url="redis://127.0.0.1:1/0", rtpengine=rtpengine_server,
                  env={"WORKERS": "2"}, timeout=60)
    assert "worker failed to start; stopping" in str(failed.value)


def test_killed_supervisor_takes_its_workers_along(
        tmp_path_factory: pytest.TempPathFactory, redis_server: str, rtpengine_server: Any,
        webhook_server: WebhookServer) -> None:
    pbx = start_pbx(tmp_path_factory.mktemp("w-orphans"), config(webhook_server),
                    redis_url=redis_server, rtpengine=rtpengine_server, env={"WORKERS": "2"})
    try:
        pbx.wait_log('"workers ready"', 30)
        pids = worker_pids(pbx)
        pbx.proc.kill()
        pbx.proc.wait(5)
        wait_until(lambda: not any(_running(p) for p in pids.values()), 15, "the workers gone")
        assert not _pids_on(pbx.port)
    finally:  # never leave a daemon on the session's Redis for the tests after this one
        if pbx.alive():
            pbx.stop()
