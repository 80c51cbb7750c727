"""The live page at ``/`` in a real headless browser (Playwright driving Debian's
chromium) against the real daemon, Redis, RTPEngine and SIPp: the token entered
once, registrations, trunks, a live call selected and drawn with its path while
it runs, then listed as recent with its outcome; a wrong token; polling stops
while the tab is hidden; the page's security headers and no CORS on the API.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import httpx
import pytest

from engine.api.page import STATIC_DIR
from tests.fixtures.daemon import Pbx
from tests.fixtures.procs import require_binary
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

DOMAIN = "page.test"
TOKEN = "e2e-page-token"
REGISTRAR = free_udp_port()
CHROMIUM_ARGS = ["--headless", "--no-sandbox", "--disable-gpu", "--disable-quic",
                 "--no-first-run", "--disable-background-networking",
                 "--disable-component-update", "--disable-sync"]
HOLD_MS = 7000  # the live call lasts long enough to be watched being redrawn


def config(hooks: WebhookServer) -> dict[str, Any]:
    plan = {"1???": {"callHook": hooks.url("/pagecall"), "statusHook": hooks.url("/pagestatus")}}
    clients = [{"username": u, "password": "secret", "codecs": ["PCMA", "PCMU"],
                "dialplan": plan} for u in ("alice", "bob")]
    trunks = [{"id": 7, "label": "itsp", "authType": "registration",
               "regHost": f"127.0.0.1:{REGISTRAR}", "regUser": "pbxuser", "regPass": "regpass",
               "dialplan": {"*": "http://127.0.0.1:9/x"}}]
    return {"domains": {DOMAIN: {"domain_id": 1, "clients": clients, "trunks": trunks}}}


@pytest.fixture(scope="module")
def registrar() -> Iterator[SippServer]:
    server = start_sipp(scenario("registrar_loop"), port=REGISTRAR, timeout=300,
                        keys={"user": "pbxuser", "pass": "regpass", "grant": "60"})
    yield server
    server.stop()


@pytest.fixture(scope="module")
def pbx(pbx_factory: Callable[..., Pbx], webhook_server: WebhookServer,
        registrar: SippServer) -> Pbx:
    return pbx_factory(config(webhook_server), WEBPORT="auto", API_TOKEN=TOKEN)


@pytest.fixture(scope="module")
def browser() -> Iterator[Any]:
    chromium = require_binary("chromium")
    from playwright.sync_api import sync_playwright

    with sync_playwright() as pw:
        # never `playwright install`: the machine's own chromium, no downloads
        browser = pw.chromium.launch(executable_path=chromium, args=CHROMIUM_ARGS,
                                     headless=True, timeout=60_000)
        yield browser
        browser.close()


class Watched:
    """A page with its uncaught errors, console errors and API requests recorded."""

    def __init__(self, browser: Any, pbx: Pbx):
        self.context = browser.new_context(viewport={"width": 1600, "height": 1000})
        self.page = self.context.new_page()
        self.page.set_default_timeout(20_000)
        self.errors: list[str] = []
        self.console: list[str] = []
        self.requests: list[tuple[float, str]] = []
        self.diagrams: list[Any] = []
        self.page.on("pageerror", lambda exc: self.errors.append(str(exc)))
        self.page.on("console", lambda m: self.console.append(m.text) if m.type == "error"
                     else None)
        self.page.on("request", lambda r: self.requests.append((time.monotonic(), r.url)))
        self.page.on("response", lambda r: self.diagrams.append(r)
                     if "/diagram.svg" in r.url else None)
        self.page.goto(pbx.api_url + "/")

    def enter_token(self, token: str) -> None:
        self.page.fill("#token", token)
        self.page.click("#token-form button[type=submit]")

    def unexpected_console(self) -> list[str]:
        # a refused token is logged by Chrome as a failed load; anything else is a fault
        return [m for m in self.console if "status of 401" not in m]

    def close(self) -> None:
        self.context.close()


@pytest.fixture
def watched(browser: Any, pbx: Pbx) -> Iterator[Watched]:
    w = Watched(browser, pbx)
    yield w
    w.close()


def pump_until(page: Any, check: Callable[[], bool], timeout: float, what: str) -> None:
    """wait_until for page events: Playwright's sync API delivers them (requests,
    responses, console) only while it runs, so wait inside the page, not in sleep()."""
    end = time.monotonic() + timeout
    while not check():
        if time.monotonic() > end:
            raise TimeoutError(f"timed out waiting for {what}")
        page.wait_for_timeout(100)


def register(pbx: Pbx, user: str, port: int | None = None) -> None:
    result = run_sipp(scenario_with("reg_auth", code=200), pbx.address,
                      port=port or free_udp_port(), keys={"domain": DOMAIN, "expires": "300"},
                      extra=["-s", user, "-au", user, "-ap", "secret", "-m", "1"], timeout=15)
    assert result.rc == 0, result.explain()


def api_get(pbx: Pbx, path: str, **params: str) -> Any:
    reply = httpx.get(pbx.api_url + path, params=params, timeout=10,
                      headers={"Authorization": f"Bearer {TOKEN}"})
    assert reply.status_code == 200, reply.text
    return reply.json()


# --------------------------------------------------------------------------- headers


def test_page_is_served_with_a_strict_policy_and_the_api_stays_closed(pbx: Pbx) -> None:
    page = httpx.get(pbx.api_url + "/", timeout=10)
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    csp = page.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "default-src 'none'" in csp
    assert "frame-ancestors 'none'" in csp and "img-src 'self' blob:" in csp
    assert page.headers["x-content-type-options"] == "nosniff"
    assert '<script src="/static/app.js"' in page.text and "<script>" not in page.text
    for asset in ("/static/app.js", "/static/style.css", "/static/favicon.svg"):
        reply = httpx.get(pbx.api_url + asset, timeout=10)
        assert reply.status_code == 200 and "content-security-policy" in reply.headers
    # only the named files: no directory walking
    for probe in ("/static/", "/static/../page.py", "/static/%2e%2e/page.py", "/static/x.js"):
        assert httpx.get(pbx.api_url + probe, timeout=10).status_code == 404, probe
    # the page opens no CORS: a foreign origin gets no Access-Control-* answer
    origin = {"Origin": "http://evil.example"}
    for reply in (httpx.get(pbx.api_url + "/api/v1/calls", timeout=10,
                            headers={**origin, "Authorization": f"Bearer {TOKEN}"}),
                  httpx.options(pbx.api_url + "/api/v1/calls", timeout=10,
                                headers={**origin, "Access-Control-Request-Method": "GET",
                                         "Access-Control-Request-Headers": "authorization"}),
                  httpx.get(pbx.api_url + "/", headers=origin, timeout=10)):
        assert not [h for h in reply.headers if h.lower().startswith("access-control-")]
    # the page still needs the token for every API call
    assert httpx.get(pbx.api_url + "/api/v1/calls", timeout=10).status_code == 401
    # values reach the DOM as text only (the CSP is the second line of defence)
    script = (STATIC_DIR / "app.js").read_text()
    for sink in (".innerHTML", ".outerHTML", "insertAdjacentHTML", "document.write", "eval("):
        assert sink not in script, sink


# --------------------------------------------------------------------------- wrong token


def test_wrong_token_shows_an_error_not_a_blank_page(watched: Watched) -> None:
    page = watched.page
    page.wait_for_selector("#error:not([hidden])")
    assert "needs its token" in page.text_content("#error")
    watched.enter_token("not-the-token")
    page.wait_for_function(
        "() => document.getElementById('error').textContent.includes('refused the token')")
    message = page.text_content("#error")
    assert "401" in message and "unauthorized" in message
    assert page.is_visible("#error") and page.is_visible("#token")
    assert page.text_content("#status") == "token refused"
    # the refused token is not kept
    assert page.evaluate("sessionStorage.getItem('dragonpbx.apiToken')") is None
    assert not watched.errors and not watched.unexpected_console(), \
        (watched.errors, watched.console)


# --------------------------------------------------------------------------- hidden tab


def test_polling_stops_while_the_tab_is_hidden(watched: Watched) -> None:
    page = watched.page
    watched.enter_token(TOKEN)
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('connected')")
    assert page.evaluate("sessionStorage.getItem('dragonpbx.apiToken')") == TOKEN

    def api_requests_since(t: float) -> int:
        return sum(1 for at, url in watched.requests if at >= t and "/api/v1/calls" in url)

    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => true});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    page.wait_for_timeout(1000)  # a refresh in flight when the tab was hidden may finish
    quiet_from = time.monotonic()
    page.wait_for_timeout(4000)
    assert api_requests_since(quiet_from) == 0
    page.evaluate("""() => {
        Object.defineProperty(document, 'hidden', {configurable: true, get: () => false});
        document.dispatchEvent(new Event('visibilitychange'));
    }""")
    back = time.monotonic()
    pump_until(page, lambda: api_requests_since(back) >= 2, 10, "polling resumed")
    # the token was entered once: a reload of the tab keeps it
    page.reload()
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('connected')")
    assert not watched.errors and not watched.unexpected_console(), \
        (watched.errors, watched.console)


# --------------------------------------------------------------------------- a live call


HIGHLIGHTED_PIXELS = """() => {
    const img = document.getElementById('diagram');
    const canvas = document.createElement('canvas');
    canvas.width = img.naturalWidth;
    canvas.height = img.naturalHeight;
    const g = canvas.getContext('2d');
    g.drawImage(img, 0, 0);
    const px = g.getImageData(0, 0, canvas.width, canvas.height).data;
    let n = 0;
    for (let i = 0; i < px.length; i += 4) {
        if (px[i] === 0x98 && px[i + 1] === 0xfb && px[i + 2] === 0x98) n++;
    }
    return n;
}"""


def _row_text(page: Any, selector: str) -> str:
    return page.text_content(selector) or ""


def test_live_call_registrations_and_trunks(pbx: Pbx, watched: Watched,
                                            webhooks: WebhookServer,
                                            sipp_servers: list[SippServer],
                                            tmp_path: Path) -> None:
    page = watched.page
    watched.enter_token(TOKEN)
    page.wait_for_function("() => document.getElementById('status').textContent"
                           ".startsWith('connected')")

    # a registration made by SIPp appears
    bob_port = free_udp_port()
    register(pbx, "alice")
    register(pbx, "bob", bob_port)
    row = page.wait_for_selector(f"#registrations tr[data-user='alice@{DOMAIN}']")
    assert DOMAIN in (row.text_content() or "") and "udp" in (row.text_content() or "")
    page.wait_for_selector(f"#registrations tr[data-user='bob@{DOMAIN}']")

    # the registration trunk, registered with the SIPp registrar
    trunk = page.wait_for_selector("#trunks tr[data-trunk-id='7'] td.state-registered",
                                   timeout=30_000)
    assert trunk.text_content() == "registered"
    assert "itsp" in _row_text(page, "#trunks tr[data-trunk-id='7']")

    # a live call: SIPp caller alice → 1001 → bob (SIPp callee); alice hangs up after HOLD_MS
    webhooks.reply("/pagestatus", json={"ok": True})
    webhooks.reply("/pagecall", json=[{"verb": "connect",
                                       "dest": {"type": "client", "address": "bob"}}])
    callee = start_sipp(scenario("call_uas"), port=bob_port, media=True, timeout=90,
                        extra=["-rtp_echo", "-m", "1", "-d", "200"])
    sipp_servers.append(callee)
    caller = start_sipp(scenario("call_uac"), remote=pbx.address, media=True, timeout=90,
                        keys={"domain": DOMAIN, "caller": "alice"},
                        extra=["-s", "1001", "-au", "alice", "-ap", "secret", "-m", "1",
                               "-d", str(HOLD_MS)])
    sipp_servers.append(caller)
    live_row = page.wait_for_selector("#live-calls tbody tr[data-call-id]")
    call_id = live_row.get_attribute("data-call-id")
    assert call_id
    pump_until(page, lambda: "verb_connect: connected" in _row_text(page, "#live-calls tbody tr"),
               15, "the call connected on the page")
    text = _row_text(page, "#live-calls tbody tr")
    assert "alice" in text and "1001" in text and "running_verb" in text
    assert "B connected" in text or "B answered" in text or " B " in f" {text} "

    # select it: the diagram (fetched with the token, shown from a blob: URL) loads
    selected_at = len(watched.diagrams)
    page.click(f"#live-calls tbody tr[data-call-id='{call_id}']")
    page.wait_for_function("() => document.getElementById('diagram').naturalWidth > 0")
    assert page.get_attribute("#diagram", "src").startswith("blob:")
    assert page.text_content("#selected-call") == call_id
    assert "live" in page.text_content("#diagram-note")
    assert "inbound_call" in page.eval_on_selector("#instance", "s => s.selectedOptions[0]"
                                                   ".textContent")
    # redrawn while the call runs: more diagram fetches arrive, each with the path so far
    pump_until(page, lambda: len(watched.diagrams) - selected_at >= 3, 10,
               "diagram refreshes")
    assert all(r.status == 200 for r in watched.diagrams[selected_at:])
    assert all("Bearer" not in r.url for r in watched.diagrams)  # the token is a header
    # the image the page shows has the path drawn: visited states filled palegreen (#98fb98)
    first_drawing = page.evaluate(HIGHLIGHTED_PIXELS)
    assert first_drawing > 100
    assert page.is_visible("#live-calls tbody tr.selected")
    # the challenged first INVITE (same Call-ID) is not listed as recent beside the live call
    assert page.locator(f"#recent-calls tbody tr[data-call-id='{call_id}']").count() == 0
    page.screenshot(path=str(tmp_path / "live-call.png"), full_page=True)
    # a click on the drawing shows that spot at actual size (scrolled there); again: fitted
    box = page.locator("#diagram").bounding_box()
    page.mouse.click(box["x"] + box["width"] * 0.1, box["y"] + box["height"] * 0.85)
    assert page.eval_on_selector("#diagram", "i => i.clientWidth === i.naturalWidth")
    assert page.eval_on_selector("#diagram-box", "b => b.scrollTop > 0")
    page.screenshot(path=str(tmp_path / "live-call-actual-size.png"))
    page.click("#zoom")
    assert page.eval_on_selector("#diagram", "i => i.clientWidth < i.naturalWidth")

    # the caller hangs up: the call moves to "recent" with its outcome
    assert caller.wait(40).rc == 0, caller.messages[-3000:]
    assert callee.wait(30).rc == 0, callee.messages[-3000:]
    recent = page.wait_for_selector(f"#recent-calls tbody tr[data-call-id='{call_id}']")
    ended = next(c for c in api_get(pbx, "/api/v1/calls", status="ended")["items"]
                 if c["call_id"] == call_id)
    assert ended["outcome"] == "ending (done)"
    assert page.locator("#recent-calls tbody tr").count() == 1
    assert recent.eval_on_selector("td.outcome", "td => td.textContent") == "ending (done)"
    assert "alice" in (recent.text_content() or "")
    assert recent.get_attribute("class") == "selected"
    pump_until(page, lambda: _row_text(page, "#live-calls tbody") == "", 10, "no live call listed")
    assert page.is_visible("#live-empty")
    page.wait_for_function("() => document.getElementById('diagram-note').textContent"
                           ".startsWith('ended')")
    # the last drawing is the final path; then the diagram is no longer fetched
    page.wait_for_timeout(2000)
    settled = len(watched.diagrams)
    page.wait_for_timeout(3500)
    assert len(watched.diagrams) == settled
    # the final drawing has more of the path filled in than the live one had
    assert page.evaluate(HIGHLIGHTED_PIXELS) > first_drawing
    page.screenshot(path=str(tmp_path / "ended-call.png"), full_page=True)
    assert not watched.errors and not watched.unexpected_console(), \
        (watched.errors, watched.console)
    csp_violations = [m for m in watched.console if "Content Security Policy" in m]
    assert not csp_violations
