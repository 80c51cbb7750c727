"""Control commands talking to a running daemon's HTTP API.

``dragonpbx calls | call CALL_ID [--svg FILE] | registrations | trunks | reload |
hangup CALL_ID``. ``--url`` (default ``http://127.0.0.1:$WEBPORT``) names the
daemon; the token is ``API_TOKEN`` from the environment, as the daemon reads it.
Human tables by default, ``--json`` for the API's JSON as-is. Exit codes: 0 ok,
1 the API refused (e.g. 404, 409, 422), 2 usage or the daemon not reachable.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Sequence
from pathlib import Path
from typing import Any

TIMEOUT = 15.0


class ApiError(Exception):
    def __init__(self, status: int, message: str):
        super().__init__(message)
        self.status = status


class ApiClient:
    """A small blocking client of the daemon's /api/v1/."""

    def __init__(self, url: str, token: str | None):
        self.url = url.rstrip("/")
        self.token = token

    def request(self, method: str, path: str, query: dict[str, str] | None = None) -> Any:
        body = self.raw(method, path, query)
        return json.loads(body) if body else None

    def raw(self, method: str, path: str, query: dict[str, str] | None = None) -> bytes:
        url = self.url + path
        if query:
            url += "?" + urllib.parse.urlencode({k: v for k, v in query.items() if v})
        req = urllib.request.Request(url, method=method)
        if self.token:
            req.add_header("Authorization", f"Bearer {self.token}")
        try:
            with urllib.request.urlopen(req, timeout=TIMEOUT) as resp:
                return bytes(resp.read())
        except urllib.error.HTTPError as exc:
            raise ApiError(exc.code, _error_text(exc.read(), exc.code)) from None
        except (urllib.error.URLError, OSError) as exc:
            reason = getattr(exc, "reason", exc)
            raise ApiError(0, f"cannot reach {self.url}: {reason}") from None

    def pages(self, path: str, query: dict[str, str] | None = None) -> list[Any]:
        """Every item of a paginated list (follows ``next``)."""
        items: list[Any] = []
        cursor = ""
        for _ in range(10_000):
            page = self.request("GET", path, {**(query or {}), "cursor": cursor})
            items += page["items"]
            if not page["next"]:
                break
            cursor = page["next"]
        return items


def _error_text(body: bytes, status: int) -> str:
    try:
        err = json.loads(body)["error"]
    except (ValueError, KeyError, TypeError):
        return f"HTTP {status}"
    lines = [f"HTTP {status} {err.get('code', '')}: {err.get('message', '')}"]
    lines += [f"  {d}" for d in err.get("diagnostics", [])]
    return "\n".join(lines)


def default_url() -> str:
    return f"http://127.0.0.1:{os.environ.get('WEBPORT') or '2999'}"


# ---------------------------------------------------------------------- output


def table(rows: Sequence[Sequence[Any]], headers: Sequence[str]) -> str:
    cells = [[_cell(v) for v in row] for row in rows]
    widths = [max([len(h), *(len(r[i]) for r in cells)]) for i, h in enumerate(headers)]
    lines = ["  ".join(h.upper().ljust(w) for h, w in zip(headers, widths, strict=True))]
    lines += ["  ".join(c.ljust(w) for c, w in zip(r, widths, strict=True)) for r in cells]
    return "\n".join(line.rstrip() for line in lines)


def _cell(value: Any) -> str:
    return "-" if value is None else str(value)


def _when(ts: float | None) -> str | None:
    return time.strftime("%H:%M:%S", time.localtime(ts)) if ts else None


def _states(call: dict[str, Any]) -> str:
    return ", ".join(f"{i['machine']}@{i['version'].partition('+')[0]}:{i['state']}"
                     for i in call["instances"] if i["status"] == "running" or not call["live"])


# ---------------------------------------------------------------------- commands


def cmd_calls(args: argparse.Namespace, api: ApiClient) -> int:
    calls = api.pages("/api/v1/calls", {"status": args.status})
    if args.json:
        print(json.dumps({"items": calls}, indent=2))
        return 0
    print(table([(c["call_id"], c["domain"], c["from"], c["to"], _when(c["started"]),
                   "live" if c["live"] else c["outcome"], _states(c)) for c in calls],
                ("call-id", "domain", "from", "to", "started", "status", "machines")))
    return 0


def cmd_call(args: argparse.Namespace, api: ApiClient) -> int:
    path = "/api/v1/calls/" + urllib.parse.quote(args.call_id, safe="")
    call = api.request("GET", path)
    if args.svg:
        Path(args.svg).write_bytes(api.raw("GET", path + "/diagram.svg"))
    if args.json:
        print(json.dumps(call, indent=2))
        return 0
    print(f"call {call['call_id']}  {call['from']} -> {call['to']}@{call['domain']}  "
          f"started {_when(call['started'])}  "
          f"{'live' if call['live'] else 'ended: ' + str(call['outcome'])}")
    print(table([(leg["role"], leg["instance"], leg["state"], leg["destination"])
                 for leg in call["legs"]], ("leg", "instance", "state", "destination")))
    for inst in call["instances"]:
        print(f"\n{inst['machine']}@{inst['version']} {inst['id']}: {inst['state']} "
              f"({inst['status']})")
        for step in inst.get("trace", []):
            acts = ", ".join(a["action"] + ("" if a["outcome"] == "ok" else f" ({a['outcome']})")
                             for a in step.get("actions", []))
            note = f"  ({step['note']})" if step.get("note") else ""
            print(f"  {_when(step['time'])} {step['from'] or '(start)'} --{step['event']}--> "
                  f"{step['to']}{' / ' + acts if acts else ''}{note}")
    if args.svg:
        print(f"\ndiagram written to {args.svg}")
    return 0


def cmd_registrations(args: argparse.Namespace, api: ApiClient) -> int:
    regs = api.pages("/api/v1/registrations", {"domain": args.domain, "user": args.user})
    if args.json:
        print(json.dumps({"items": regs}, indent=2))
        return 0
    print(table([(r["domain"], r["user"], r["contact"], r["transport"], r["ttl"],
                  r.get("user_agent")) for r in regs],
                ("domain", "user", "contact", "transport", "expires in", "user agent")))
    return 0


def cmd_trunks(args: argparse.Namespace, api: ApiClient) -> int:
    trunks = api.pages("/api/v1/trunks")
    if args.json:
        print(json.dumps({"items": trunks}, indent=2))
        return 0
    rows = []
    for t in trunks:
        reg = t["registration"] or {}
        rows.append((t["domain"], t["id"], t["name"], t["auth_type"], reg.get("state"),
                     reg.get("last_status"), reg.get("last_error"),
                     _when(reg.get("next_refresh")), reg.get("owner")))
    print(table(rows, ("domain", "id", "name", "auth", "registration", "last status",
                       "last error", "next refresh", "owner")))
    return 0


def cmd_reload(args: argparse.Namespace, api: ApiClient) -> int:
    result = api.request("POST", "/api/v1/reload")
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print("reloaded; machines now in use:")
    print(table(sorted(result["machines"].items()), ("machine", "version")))
    return 0


def cmd_hangup(args: argparse.Namespace, api: ApiClient) -> int:
    result = api.request("DELETE", "/api/v1/calls/" + urllib.parse.quote(args.call_id, safe=""))
    if args.json:
        print(json.dumps(result, indent=2))
        return 0
    print(f"hanging up {result['call_id']} (instance {result['instance']}, "
          f"was in {result['state']})")
    return 0


def _run(func: Any) -> Any:
    def run(args: argparse.Namespace) -> int:
        api = ApiClient(args.url or default_url(), os.environ.get("API_TOKEN") or None)
        try:
            return int(func(args, api))
        except ApiError as exc:
            print(f"dragonpbx: {exc}", file=sys.stderr)
            return 2 if exc.status == 0 else 1

    return run


def register(sub: Any) -> None:
    """Add the control commands to the ``dragonpbx`` parser."""

    def add(name: str, help_text: str, func: Any) -> argparse.ArgumentParser:
        p: argparse.ArgumentParser = sub.add_parser(
            name, help=help_text, description=f"{help_text[0].upper()}{help_text[1:]}, "
            "through the daemon's HTTP API (token: API_TOKEN from the environment).")
        p.add_argument("--url", help="the daemon's API (default http://127.0.0.1:$WEBPORT)")
        p.add_argument("--json", action="store_true", help="print the API's JSON")
        p.set_defaults(func=_run(func))
        return p

    p = add("calls", "list live calls (--status ended|all: also recently ended)", cmd_calls)
    p.add_argument("--status", choices=("live", "ended", "all"), default="live")
    p = add("call", "show one call with every machine instance's trace", cmd_call)
    p.add_argument("call_id", help="the A leg's SIP Call-ID")
    p.add_argument("--svg", help="also write its machine diagram, path highlighted")
    p = add("registrations", "list registered users", cmd_registrations)
    p.add_argument("--domain", help="only this domain")
    p.add_argument("--user", help="only this user")
    add("trunks", "list trunks and their registration state", cmd_trunks)
    add("reload", "reload configuration and machines (as SIGHUP)", cmd_reload)
    p = add("hangup", "hang up a live call (BYE/CANCEL both sides)", cmd_hangup)
    p.add_argument("call_id", help="the A leg's SIP Call-ID")


__all__ = ["ApiClient", "ApiError", "register"]
