"""The HTTP API, metrics and control CLI against the real daemon (Redis, RTPEngine,
SIPp, a webhook server): auth, the OpenAPI document and every response validated
against it, live calls with their machines and traces, the diagram, hang-up,
registrations, trunks, machines, reload, metrics that move, and the CLI.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest
import redis
from prometheus_client.parser import text_string_to_metric_families

from engine.api.openapi import ROUTES
from engine.paths import machines_dir
from tests.fixtures.api import ApiCheck
from tests.fixtures.daemon import Pbx
from tests.fixtures.procs import wait_until
from tests.fixtures.sipp import (
    SippServer,
    free_udp_port,
    run_sipp,
    scenario,
    scenario_with,
    start_sipp,
)
from tests.fixtures.webhooks import WebhookServer

pytestmark = [pytest.mark.e2e]

DOMAIN = "api.test"
TOKEN = "e2e-api-token"
REGISTRAR = free_udp_port()


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/apicall"), "statusHook": hooks.url("/apistatus")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob", "carol")]
    trunks = [{"id": 3, "label": "itsp", "authType": "registration",
               "regHost": f"127.0.0.1:{REGISTRAR}", "regUser": "pbxuser", "regPass": "regpass",
               "dialplan": {"*": "http://127.0.0.1:9/x"}},
              {"id": 4, "name": "office", "inbound": ["192.0.2.0/24"]}]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": trunks}}}


@pytest.fixture(scope="module")
def registrar() -> Iterator[SippServer]:
    server = start_sipp(scenario("registrar_loop"), port=REGISTRAR, timeout=300,
                        keys={"user": "pbxuser", "pass": "regpass", "grant": "60"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def machines(tmp_path_factory: pytest.TempPathFactory) -> Path:
    folder = tmp_path_factory.mktemp("machines") / "machines"
    shutil.copytree(machines_dir(), folder)
    return folder


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        registrar: SippServer, machines: Path) -> Pbx:
    return pbx_factory(config(webhook_server), WEBPORT="auto", API_TOKEN=TOKEN,
                       MACHINES_PATH=str(machines))


@pytest.fixture(scope="module")
def api(pbx: Pbx) -> Iterator[ApiCheck]:
    check = ApiCheck(pbx.api_url, TOKEN)
    yield check
    check.close()


@pytest.fixture(autouse=True)
def status_receiver(webhook_server: WebhookServer) -> None:
    webhook_server.reply("/apistatus", json={"ok": True})


def register(pbx: Pbx, user: str, port: int | None = None) -> None:
    result = run_sipp(scenario_with("reg_auth", code=200), pbx.address,
                      port=port or free_udp_port(), keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", "secret", "-m", "1"], timeout=15)
    assert result.rc == 0, result.explain()


def metrics(api: ApiCheck) -> dict[tuple[str, tuple[tuple[str, str], ...]], float]:
    reply = api.call("GET", "/metrics", token=None)
    assert reply.headers["content-type"].startswith("text/plain")
    out = {}
    for family in text_string_to_metric_families(reply.text):
        for s in family.samples:
            out[(s.name, tuple(sorted(s.labels.items())))] = s.value
    return out


def sample(values: dict[Any, float], name: str, **labels: str) -> float:
    return values.get((name, tuple(sorted(labels.items()))), 0.0)


def cli(pbx: Pbx, *args: str, token: str | None = TOKEN) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if k not in ("API_TOKEN", "WEBPORT")}
    if token:
        env["API_TOKEN"] = token
    return subprocess.run([sys.executable, "-m", "engine", *args, "--url", pbx.api_url],
                          capture_output=True, text=True, timeout=60, env=env, check=False)


# --------------------------------------------------------------------------- document, auth


def test_openapi_document_is_valid_and_covers_every_route(api: ApiCheck) -> None:
    # ApiCheck validated it against the OpenAPI 3.1 meta-schema; it is built from the routes
    assert api.doc["openapi"].startswith("3.1")
    for r in ROUTES:
        assert r.method.lower() in api.doc["paths"][r.path], (r.method, r.path)
    assert api.doc["paths"]["/api/v1/calls"]["get"]["security"] == [{"bearer": []}]
    assert api.doc["paths"]["/health"]["get"]["security"] == []


def test_api_needs_the_token_probes_and_metrics_do_not(api: ApiCheck) -> None:
    for path in ("/api/v1/calls", "/api/v1/machines", "/api/v1/openapi.json"):
        body = api.call("GET", path, expect=401, token=None).json()
        assert body["error"]["code"] == "unauthorized"
        api.call("GET", path, expect=401, token="wrong-token")
        api.call("GET", path, expect=200)
    api.call("POST", "/api/v1/reload", expect=401, token=TOKEN[:-1])
    assert api.call("GET", "/health", token=None).json()["status"] == "ok"
    assert api.call("GET", "/ready", token=None).json()["ready"] is True
    api.call("GET", "/metrics", token=None)
    # an unknown API path is a JSON error too
    reply = api.client.get("/api/v1/nothing", headers=api.headers())
    assert reply.status_code == 404 and reply.json()["error"]["code"] == "not_found"


# --------------------------------------------------------------------------- listings


def test_registrations_listed_from_redis_with_pagination(pbx: Pbx, api: ApiCheck) -> None:
    for user in ("alice", "bob", "carol"):
        register(pbx, user)
    seen: list[str] = []
    cursor = ""
    pages = 0
    for _ in range(200):
        page = api.call("GET", "/api/v1/registrations",
                        params={"domain": DOMAIN, "limit": "1", "cursor": cursor}).json()
        pages += 1
        assert len(page["items"]) <= 4  # a SCAN step returns a bucket: a few keys at most
        seen += [r["user"] for r in page["items"]]
        for r in page["items"]:
            assert r["domain"] == DOMAIN and r["transport"] == "udp" and 0 < r["ttl"] <= 300
            assert r["expires"] == 300 and r["user_agent"] == "SIPp-e2e"
        if page["next"] is None:
            break
        cursor = page["next"]
    # SCAN may repeat a key when Redis rehashes meanwhile (never misses one)
    assert sorted(set(seen)) == ["alice", "bob", "carol"], seen
    assert pages >= 2
    only = api.call("GET", "/api/v1/registrations",
                    params={"domain": DOMAIN, "user": "bob", "limit": "100"}).json()
    users: list[str] = [r["user"] for r in only["items"]]
    cursor = only["next"] or ""
    while cursor:
        more = api.call("GET", "/api/v1/registrations",
                        params={"domain": DOMAIN, "user": "bob", "cursor": cursor}).json()
        users += [r["user"] for r in more["items"]]
        cursor = more["next"] or ""
    assert set(users) == {"bob"}
    api.call("GET", "/api/v1/registrations", params={"limit": "0"}, expect=400)


def test_trunks_show_the_registration_state(pbx: Pbx, api: ApiCheck) -> None:
    def registered() -> dict[str, Any] | None:
        for t in api.call("GET", "/api/v1/trunks").json()["items"]:
            if t["id"] == 3 and (t["registration"] or {}).get("state") == "registered":
                return t
        return None

    wait_until(lambda: registered() is not None, 20, "trunk 3 registered")
    trunk = registered()
    assert trunk is not None
    reg = trunk["registration"]
    assert trunk["name"] == "itsp" and trunk["domain"] == DOMAIN
    assert reg["last_status"] == 200 and reg["last_error"] is None
    assert reg["registrar"] == f"127.0.0.1:{REGISTRAR}"
    assert reg["owner"] == f"e2e-{pbx.port}"
    assert reg["next_refresh"] > time.time() - 1
    office = [t for t in api.call("GET", "/api/v1/trunks").json()["items"] if t["id"] == 4]
    assert office and office[0]["registration"] is None


def test_machines_listing(api: ApiCheck, machines: Path) -> None:
    items = api.call("GET", "/api/v1/machines").json()["items"]
    by_name = {m["machine"]: m for m in items}
    assert {"inbound_call", "registration", "verb_connect"} <= set(by_name)
    call = by_name["inbound_call"]
    assert call["file"] == str(machines / "inbound_call.yaml")
    assert call["version"].endswith("+" + call["content_hash"])
    assert abs(call["loaded_at"] - time.time()) < 3600


# --------------------------------------------------------------------------- a live call


def _find_call(api: ApiCheck, status: str = "live") -> dict[str, Any] | None:
    items = api.call("GET", "/api/v1/calls", params={"status": status}).json()["items"]
    return items[0] if items else None


def _instance_state(call: dict[str, Any], machine: str) -> str | None:
    states = [i["state"] for i in call["instances"] if i["machine"] == machine]
    return states[-1] if states else None


def test_live_call_is_shown_drawn_and_hung_up(pbx: Pbx, api: ApiCheck, webhooks: WebhookServer,
                                              sipp_servers: list[SippServer]) -> None:
    webhooks.reply("/apistatus", json={"ok": True})
    port = free_udp_port()
    register(pbx, "alice")  # a client's call uses its registration's dialplan
    register(pbx, "bob", port)
    callee = start_sipp(scenario("call_uas"), port=port, media=True, timeout=90,
                        extra=["-rtp_echo", "-m", "1", "-d", "200"])
    sipp_servers.append(callee)
    webhooks.reply("/apicall", json=[{"verb": "connect",
                                      "dest": {"type": "client", "address": "bob"}}])
    before = metrics(api)
    caller = start_sipp(scenario("call_uac_wait_bye"), remote=pbx.address, media=True,
                        timeout=90, keys={"domain": DOMAIN, "caller": "alice"},
                        extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1"])
    sipp_servers.append(caller)

    def connected() -> dict[str, Any] | None:
        call = _find_call(api)
        if call and _instance_state(call, "verb_connect") == "connected":
            return call
        return None

    wait_until(lambda: connected() is not None, 20, "the call connected in the API")
    call = connected()
    assert call is not None
    assert call["domain"] == DOMAIN and call["from"] == "alice" and call["to"] == "1001"
    assert call["live"] is True and call["outcome"] is None
    assert _instance_state(call, "inbound_call") == "running_verb"
    assert {i["machine"] for i in call["instances"]} >= {"inbound_call", "verb_connect",
                                                         "call_leg"}
    assert all(i["version"] for i in call["instances"])
    roles = [leg["role"] for leg in call["legs"]]
    assert roles[0] == "A" and "B" in roles and call["legs"][0]["state"] == "answered"
    assert "trace" not in call["instances"][0]
    call_id = call["call_id"]
    path = f"/api/v1/calls/{call_id}"
    detail = api.call("GET", path, template="/api/v1/calls/{call_id}").json()
    root = detail["instances"][0]
    assert root["machine"] == "inbound_call"
    steps = [(t["from"], t["to"]) for t in root["trace"]]
    assert ("routing", "fetching_script") in steps and ("next_verb", "running_verb") in steps
    svg = api.call("GET", path + "/diagram.svg",
                   template="/api/v1/calls/{call_id}/diagram.svg")
    assert svg.headers["content-type"].startswith("image/svg+xml")
    assert svg.text.lstrip().startswith(("<?xml", "<svg")) and "</svg>" in svg.text
    assert "palegreen" in svg.text and "darkgreen" in svg.text  # the path so far
    leg_id = next(i["id"] for i in detail["instances"] if i["machine"] == "call_leg")
    leg_svg = api.call("GET", path + "/diagram.svg", params={"instance": leg_id},
                       template="/api/v1/calls/{call_id}/diagram.svg")
    assert "call_leg" in leg_svg.text
    # the CLI sees it too (table and JSON), and writes the diagram
    table = cli(pbx, "calls")
    assert table.returncode == 0 and call_id in table.stdout and "running_verb" in table.stdout
    listed = json.loads(cli(pbx, "calls", "--json").stdout)
    assert [c["call_id"] for c in listed["items"]] == [call_id]
    svg_file = Path(caller.workdir) / "call.svg"
    shown = cli(pbx, "call", call_id, "--svg", str(svg_file))
    assert shown.returncode == 0, shown.stderr
    assert "fetching_script" in shown.stdout and "</svg>" in svg_file.read_text()

    hung = api.call("DELETE", path, expect=202, template="/api/v1/calls/{call_id}").json()
    assert hung["call_id"] == call_id and hung["state"] == "running_verb"
    assert caller.wait(30).rc == 0, caller.messages[-3000:]  # the caller got our BYE
    assert callee.wait(30).rc == 0, callee.messages[-3000:]  # so did the callee
    wait_until(lambda: "api:hangup" in _events(webhooks), 10, "api:hangup StatusHook event")
    assert "connect:hangup" in _events(webhooks)
    rdb = redis.Redis.from_url(pbx.redis_url, decode_responses=True)
    wait_until(lambda: not list(rdb.scan_iter(f"call:{DOMAIN}:*")), 10, "call key removed")
    wait_until(lambda: _find_call(api) is None, 10, "no live call")
    # recently ended: still visible with its outcome and traces
    ended = _find_call(api, "ended")
    assert ended is not None and ended["call_id"] == call_id and ended["live"] is False
    assert ended["outcome"] == "ending (done)"
    detail = api.call("GET", path, template="/api/v1/calls/{call_id}").json()
    root_trace = detail["instances"][0]["trace"]
    assert any(t["event"] == "api.hangup" and t["to"] == "aborting" for t in root_trace)
    again = api.call("DELETE", path, expect=409, template="/api/v1/calls/{call_id}")
    assert again.json()["error"]["code"] == "ended"
    # metrics moved with the call
    after = metrics(api)
    assert sample(after, "dragonpbx_calls_total", outcome="ending") > \
        sample(before, "dragonpbx_calls_total", outcome="ending")
    assert sample(after, "dragonpbx_sip_requests_total", method="INVITE") >= \
        sample(before, "dragonpbx_sip_requests_total", method="INVITE") + 2
    assert sample(after, "dragonpbx_webhook_duration_seconds_count", hook="callhook",
                  outcome="2xx") > sample(before, "dragonpbx_webhook_duration_seconds_count",
                                          hook="callhook", outcome="2xx")
    assert sample(after, "dragonpbx_rtpengine_command_duration_seconds_count",
                  command="offer") > sample(
        before, "dragonpbx_rtpengine_command_duration_seconds_count", command="offer")
    assert sample(after, "dragonpbx_machine_transitions_total", machine="inbound_call") > \
        sample(before, "dragonpbx_machine_transitions_total", machine="inbound_call")


def _events(hooks: WebhookServer) -> list[str]:
    return [r.json["event"] for r in hooks.requests("/apistatus")]


def test_call_waiting_for_its_callhook_is_hung_up_with_480(
        pbx: Pbx, api: ApiCheck, webhooks: WebhookServer,
        sipp_servers: list[SippServer]) -> None:
    webhooks.reply("/apistatus", json={"ok": True})
    register(pbx, "alice")
    webhooks.reply("/apicall", delay=2.5, json=[{"verb": "response", "code": 486}])
    caller = start_sipp(scenario_with("call_uac_expect", code=480), remote=pbx.address,
                        media=True, timeout=60, keys={"domain": DOMAIN, "caller": "alice"},
                        extra=["-s", "1002", "-au", "alice", "-ap", "secret", "-m", "1"])
    sipp_servers.append(caller)

    def waiting() -> dict[str, Any] | None:
        call = _find_call(api)
        if call and _instance_state(call, "inbound_call") == "fetching_script":
            return call
        return None

    wait_until(lambda: waiting() is not None, 10, "a call waiting for its CallHook")
    call = waiting()
    assert call is not None
    api.call("DELETE", f"/api/v1/calls/{call['call_id']}", expect=202,
             template="/api/v1/calls/{call_id}")
    assert caller.wait(20).rc == 0, caller.messages[-3000:]  # 480, not the script's 486
    wait_until(lambda: "api:hangup" in _events(webhooks), 10, "api:hangup StatusHook event")
    ended = api.call("GET", f"/api/v1/calls/{call['call_id']}",
                     template="/api/v1/calls/{call_id}").json()
    assert ended["outcome"] == "rejected (done)"


def test_unknown_call_is_404_everywhere(pbx: Pbx, api: ApiCheck) -> None:
    for method, suffix in (("GET", ""), ("GET", "/diagram.svg"), ("DELETE", "")):
        body = api.call(method, f"/api/v1/calls/no-such-call{suffix}", expect=404,
                        template="/api/v1/calls/{call_id}" + suffix).json()
        assert body["error"]["code"] == "not_found"
    result = cli(pbx, "hangup", "no-such-call")
    assert result.returncode == 1 and "404" in result.stderr


# --------------------------------------------------------------------------- metrics


def test_metrics_move_with_registrations(pbx: Pbx, api: ApiCheck) -> None:
    before = metrics(api)
    register(pbx, "carol")
    after = metrics(api)
    assert sample(after, "dragonpbx_sip_requests_total", method="REGISTER") >= \
        sample(before, "dragonpbx_sip_requests_total", method="REGISTER") + 2
    assert sample(after, "dragonpbx_sip_responses_total", method="REGISTER",
                  status_class="2xx") == sample(before, "dragonpbx_sip_responses_total",
                                                method="REGISTER", status_class="2xx") + 1
    assert sample(after, "dragonpbx_sip_responses_total", method="REGISTER",
                  status_class="4xx") >= sample(before, "dragonpbx_sip_responses_total",
                                                method="REGISTER", status_class="4xx") + 1
    total_before = sum(v for (n, _), v in before.items() if n == "dragonpbx_registrations_total")
    total_after = sum(v for (n, _), v in after.items() if n == "dragonpbx_registrations_total")
    assert total_after >= total_before + 2  # the challenged one and the accepted one
    for name in ("dragonpbx_calls_active", "dragonpbx_event_loop_lag_seconds",
                 "dragonpbx_redis_errors_total"):
        assert any(n == name for n, _ in after), name
    assert sample(after, "dragonpbx_dependency_up", dependency="redis") == 1.0


# --------------------------------------------------------------------------- reload, CLI


def test_reload_answers_versions_or_the_diagnostics(pbx: Pbx, api: ApiCheck,
                                                    machines: Path) -> None:
    ok = api.call("POST", "/api/v1/reload").json()
    assert "inbound_call" in ok["machines"]
    target = machines / "verbs" / "pause.yaml"
    original = target.read_text()
    try:
        target.write_text(original.replace("target: done", "target: nowhere", 1))
        refused = api.call("POST", "/api/v1/reload", expect=422).json()
        assert refused["error"]["code"] == "reload_refused"
        assert any("E020" in d and "pause.yaml" in d for d in refused["error"]["diagnostics"])
        result = cli(pbx, "reload")
        assert result.returncode == 1 and "E020" in result.stderr
        # the previous versions stay in use
        after = api.call("GET", "/api/v1/machines").json()["items"]
        assert {m["machine"]: m["version"] for m in after} == ok["machines"]
    finally:
        target.write_text(original)
    again = cli(pbx, "reload", "--json")
    assert again.returncode == 0, again.stderr
    assert json.loads(again.stdout)["machines"] == ok["machines"]


def test_cli_tables_and_json(pbx: Pbx, api: ApiCheck) -> None:
    regs = cli(pbx, "registrations", "--domain", DOMAIN)
    assert regs.returncode == 0, regs.stderr
    assert regs.stdout.splitlines()[0].split()[:3] == ["DOMAIN", "USER", "CONTACT"]
    assert "alice" in regs.stdout
    as_json = json.loads(cli(pbx, "registrations", "--json", "--user", "alice").stdout)
    assert {r["user"] for r in as_json["items"]} == {"alice"}
    trunks = cli(pbx, "trunks")
    assert trunks.returncode == 0 and "itsp" in trunks.stdout and "registered" in trunks.stdout
    trunk_json = json.loads(cli(pbx, "trunks", "--json").stdout)
    assert {t["id"] for t in trunk_json["items"]} == {3, 4}
    denied = cli(pbx, "calls", token="wrong")
    assert denied.returncode == 1 and "401" in denied.stderr
