// DragonPBX live page: polls the HTTP API and draws calls, registrations and trunks.
//
// Security rules for this file (the page must not weaken the API):
// * every value from the API reaches the DOM through textContent / element
//   properties, never through innerHTML or string-built markup;
// * the call diagram is fetched with the token and shown through an <img> whose
//   src is a blob: URL — an SVG inside <img> never runs scripts;
// * the token lives in sessionStorage: it survives reloads of this tab but is
//   forgotten when the tab closes and is not shared with other tabs or written
//   to the browser profile for later, which limits what a stolen profile or a
//   forgotten open session exposes (the token can hang up calls and reload).
"use strict";

(() => {
  const TOKEN_KEY = "dragonpbx.apiToken";
  const POLL_MS = 1500; // lists and the selected call's diagram
  const MAX_REG_PAGES = 20; // registrations: at most this many pages of 500 per refresh

  let token = sessionStorage.getItem(TOKEN_KEY);
  let timer = null;
  let running = false;
  let busy = false; // a refresh is in flight
  let selected = null; // {callId, instance, live, finalDrawn}
  let lastSvg = null;
  let objectUrl = null;

  const $ = (id) => document.getElementById(id);

  class ApiError extends Error {
    constructor(status, code, message) {
      super(message);
      this.status = status;
      this.code = code;
    }
  }

  async function api(path) {
    const headers = { Accept: "application/json" };
    if (token) headers.Authorization = "Bearer " + token;
    let reply;
    try {
      reply = await fetch(path, { headers, cache: "no-store", credentials: "same-origin" });
    } catch (err) {
      throw new ApiError(0, "unreachable", "cannot reach the daemon (" + err.message + ")");
    }
    if (!reply.ok) {
      let code = "http_" + reply.status;
      let message = reply.statusText || "error";
      try {
        const body = await reply.json();
        if (body && body.error) {
          code = String(body.error.code);
          message = String(body.error.message);
        }
      } catch (_) { /* not JSON: keep the status line */ }
      throw new ApiError(reply.status, code, message);
    }
    return reply;
  }

  // ------------------------------------------------------------------ formatting
  const dash = "—";

  function clock(epochSecs) {
    if (epochSecs == null) return dash;
    return new Date(epochSecs * 1000).toLocaleTimeString([], { hour12: false });
  }

  function duration(secs) {
    if (secs == null || !isFinite(secs)) return dash;
    const s = Math.max(0, Math.round(secs));
    const m = Math.floor(s / 60);
    return m ? m + " min " + String(s % 60).padStart(2, "0") + " s" : s + " s";
  }

  function cell(value, className) {
    const td = document.createElement("td");
    td.textContent = value == null || value === "" ? dash : String(value);
    if (className) td.className = className;
    return td;
  }

  function fill(tableId, emptyId, countId, items, makeRow) {
    const table = $(tableId);
    table.tBodies[0].replaceChildren(...items.map(makeRow));
    table.hidden = items.length === 0;
    $(emptyId).hidden = items.length > 0;
    $(countId).textContent = "(" + items.length + ")";
  }

  // ------------------------------------------------------------------ messages
  function showMessage(text, kind) {
    const box = $("error");
    box.textContent = text;
    box.className = kind === "info" ? "info" : "error";
    box.hidden = false;
  }

  function clearMessage() {
    $("error").hidden = true;
  }

  function setStatus(text, kind) {
    const s = $("status");
    s.textContent = text;
    s.className = "status " + (kind || "");
  }

  // ------------------------------------------------------------------ calls
  function callState(call) {
    // the inbound_call state, then the states of the machines still running under it
    const live = call.instances.filter((i, n) => n > 0 && i.status === "running"
      && i.machine !== "call_leg");
    return [call.instances[0].state, ...live.map((i) => i.machine + ": " + i.state)].join(" · ");
  }

  function legsText(call) {
    return call.legs.map((l) => l.role + " " + l.state
      + (l.destination ? " (" + l.destination + ")" : "")).join(", ");
  }

  function callRow(call, ended) {
    const tr = document.createElement("tr");
    tr.dataset.callId = call.call_id;
    tr.tabIndex = 0;
    tr.title = "show this call's diagram";
    if (selected && selected.callId === call.call_id) tr.classList.add("selected");
    tr.append(cell(call.call_id, "mono"), cell(call.from), cell(call.to), cell(call.domain),
      cell(clock(call.started)));
    if (ended) {
      tr.append(cell(clock(call.ended)), cell(duration(call.ended - call.started)),
        cell(call.outcome, "outcome"));
    } else {
      tr.append(cell(duration(Date.now() / 1000 - call.started)), cell(callState(call), "mono"),
        cell(legsText(call)));
    }
    const pick = () => select(call);
    tr.addEventListener("click", pick);
    tr.addEventListener("keydown", (e) => { if (e.key === "Enter") pick(); });
    return tr;
  }

  function showCalls(calls) {
    const live = calls.filter((c) => c.live);
    // an INVITE answered 401 and re-sent keeps its Call-ID: while the call runs, the
    // challenged attempt is not listed beside it (the API shows the live one for that id)
    const liveIds = new Set(live.map((c) => c.call_id));
    const ended = calls.filter((c) => !c.live && !liveIds.has(c.call_id));
    fill("live-calls", "live-empty", "live-count", live, (c) => callRow(c, false));
    fill("recent-calls", "recent-empty", "recent-count", ended, (c) => callRow(c, true));
    if (selected) {
      const call = calls.find((c) => c.call_id === selected.callId);
      if (call) {
        updateSelected(call);
      } else { // dropped from the recent calls (API_RECENT_CALLS_SECS): keep the last drawing
        selected.live = false;
        selected.finalDrawn = true;
        $("diagram-note").textContent = "no longer kept by the daemon";
      }
    }
  }

  // ------------------------------------------------------------------ the diagram
  function select(call) {
    selected = { callId: call.call_id, instance: call.instances[0].id, live: call.live,
      finalDrawn: false };
    lastSvg = null;
    $("selected-call").textContent = call.call_id;
    document.querySelectorAll("tr.selected").forEach((tr) => tr.classList.remove("selected"));
    document.querySelectorAll("tr[data-call-id]").forEach((tr) => {
      if (tr.dataset.callId === call.call_id) tr.classList.add("selected");
    });
    updateSelected(call);
    refreshDiagram().catch(handleError);
  }

  function updateSelected(call) {
    selected.live = call.live;
    const pickList = $("instance");
    const current = selected.instance;
    pickList.replaceChildren(...call.instances.map((i) => {
      const opt = document.createElement("option");
      opt.value = i.id;
      opt.textContent = i.machine + " — " + i.state + (i.status === "running" ? "" : " (" + i.status + ")");
      return opt;
    }));
    pickList.value = current;
    $("diagram-controls").hidden = false;
    $("diagram-note").textContent = call.live
      ? "live: redrawn every " + POLL_MS / 1000 + " s"
      : "ended: " + (call.outcome || dash);
  }

  async function refreshDiagram() {
    if (!selected) return;
    const wanted = selected;
    const path = "/api/v1/calls/" + encodeURIComponent(wanted.callId) + "/diagram.svg"
      + "?instance=" + encodeURIComponent(wanted.instance);
    const svg = await (await api(path)).blob();
    if (selected !== wanted) return; // another call was picked meanwhile
    if (!wanted.live) wanted.finalDrawn = true;
    const text = await svg.text();
    if (text === lastSvg) return;
    lastSvg = text;
    const url = URL.createObjectURL(new Blob([text], { type: "image/svg+xml" }));
    const img = $("diagram");
    const previous = objectUrl;
    objectUrl = url;
    img.onload = () => {
      img.hidden = false;
      if (previous) URL.revokeObjectURL(previous);
    };
    img.src = url;
  }

  // Toggle between fitted and actual size; at actual size scroll so that the point at
  // fractions (fx, fy) of the drawing is in the middle of the box.
  function zoom(fx, fy) {
    const box = $("diagram-box");
    const img = $("diagram");
    const actual = box.classList.toggle("actual");
    $("zoom").textContent = actual ? "Fit to panel" : "Actual size";
    if (actual) {
      box.scrollLeft = fx * img.naturalWidth - box.clientWidth / 2;
      box.scrollTop = fy * img.naturalHeight - box.clientHeight / 2;
    }
  }

  // ------------------------------------------------------------------ registrations, trunks
  async function registrations() {
    const items = [];
    let cursor = "";
    for (let page = 0; page < MAX_REG_PAGES; page++) {
      const q = "?limit=500" + (cursor ? "&cursor=" + encodeURIComponent(cursor) : "");
      const body = await (await api("/api/v1/registrations" + q)).json();
      items.push(...body.items);
      if (!body.next) break;
      cursor = body.next;
    }
    const seen = new Set(); // SCAN may repeat a key while Redis rehashes
    return items.filter((r) => {
      const key = r.domain + "\u0000" + r.user;
      if (seen.has(key)) return false;
      seen.add(key);
      return true;
    }).sort((a, b) => (a.domain + a.user).localeCompare(b.domain + b.user));
  }

  function registrationRow(r) {
    const tr = document.createElement("tr");
    tr.dataset.user = r.user + "@" + r.domain;
    tr.append(cell(r.user), cell(r.domain), cell(r.contact, "mono"), cell(r.transport),
      cell(duration(r.ttl)), cell(r.user_agent));
    return tr;
  }

  function trunkRow(t) {
    const tr = document.createElement("tr");
    tr.dataset.trunkId = t.id;
    const reg = t.registration;
    const state = cell(reg ? reg.state : "no registration", reg ? "state-" + reg.state : "muted");
    tr.append(cell(t.id), cell(t.name), cell(t.domain), cell(t.auth_type), state,
      cell(reg && reg.last_status), cell(reg && reg.last_error),
      cell(reg && reg.next_refresh ? "in " + duration(reg.next_refresh - Date.now() / 1000) : null));
    return tr;
  }

  // ------------------------------------------------------------------ polling
  async function ready() {
    try {
      const body = await (await fetch("/ready", { cache: "no-store" })).json();
      return body.ready ? "ready" : "not ready: " + body.problems.join(", ");
    } catch (_) {
      return "readiness unknown";
    }
  }

  async function tick() {
    const [calls, regs, trunks, readiness] = await Promise.all([
      api("/api/v1/calls?status=all&limit=1000").then((r) => r.json()),
      registrations(),
      api("/api/v1/trunks?limit=1000").then((r) => r.json()),
      ready(),
    ]);
    showCalls(calls.items);
    fill("registrations", "reg-empty", "reg-count", regs, registrationRow);
    fill("trunks", "trunk-empty", "trunk-count", trunks.items, trunkRow);
    if (selected && (selected.live || !selected.finalDrawn)) await refreshDiagram();
    clearMessage();
    setStatus("connected · " + readiness + " · " + clock(Date.now() / 1000),
      readiness === "ready" ? "ok" : "warn");
    $("forget").hidden = !token;
  }

  function handleError(err, usedToken = token) {
    if (usedToken !== token) return; // answered for a token replaced meanwhile
    if (err instanceof ApiError && err.status === 401) {
      stop();
      setStatus(token ? "token refused" : "token needed", "bad");
      if (token) {
        showMessage("The API refused the token (401 " + err.code + ": " + err.message
          + "). Enter the API_TOKEN the daemon runs with.", "error");
        sessionStorage.removeItem(TOKEN_KEY);
        token = null;
      } else {
        showMessage("This daemon's API needs its token: enter API_TOKEN above.", "info");
      }
      $("token").focus();
      return;
    }
    setStatus("error", "bad");
    showMessage("Could not refresh: " + (err instanceof ApiError
      ? (err.status ? err.status + " " : "") + err.code + ": " + err.message
      : String(err)) + " — retrying.", "error");
  }

  async function loop() {
    timer = null;
    if (!running || busy) return;
    busy = true;
    const usedToken = token;
    try {
      await tick();
    } catch (err) {
      handleError(err, usedToken);
    } finally {
      busy = false;
    }
    if (running && !document.hidden && timer === null) timer = setTimeout(loop, POLL_MS);
  }

  function start() {
    running = true;
    if (timer === null) loop();
  }

  function stop() {
    running = false;
    if (timer !== null) clearTimeout(timer);
    timer = null;
  }

  // ------------------------------------------------------------------ wiring
  document.addEventListener("DOMContentLoaded", () => {
    $("token-form").addEventListener("submit", (e) => {
      e.preventDefault();
      const given = $("token").value.trim();
      $("token").value = "";
      token = given || null;
      if (token) sessionStorage.setItem(TOKEN_KEY, token);
      clearMessage();
      setStatus("connecting…");
      stop();
      start();
    });
    $("forget").addEventListener("click", () => {
      sessionStorage.removeItem(TOKEN_KEY);
      token = null;
      stop();
      setStatus("not connected");
      showMessage("Token forgotten: enter it again to continue.", "info");
      $("forget").hidden = true;
    });
    $("zoom").addEventListener("click", () => zoom(0.5, 0));
    // a click on the fitted drawing shows that spot at actual size; another click fits again
    $("diagram").addEventListener("click", (e) => {
      const img = e.currentTarget;
      zoom(e.offsetX / img.clientWidth, e.offsetY / img.clientHeight);
    });
    $("instance").addEventListener("change", (e) => {
      if (!selected) return;
      selected.instance = e.target.value;
      selected.finalDrawn = false;
      lastSvg = null;
      refreshDiagram().catch(handleError);
    });
    // no polling while the tab is hidden; catch up at once when it shows again
    document.addEventListener("visibilitychange", () => {
      if (document.hidden) {
        if (timer !== null) clearTimeout(timer);
        timer = null;
      } else if (running && timer === null) {
        loop();
      }
    });
    start(); // without a stored token: works when the daemon runs without API_TOKEN
  });
})();
