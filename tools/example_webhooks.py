"""An example webhook application for DragonPBX: RegHook, CallHook and StatusHook.

Run it next to the PBX (scripts/run-example.sh does) and point a configuration
at it. It shows the three contracts at work:

* ``POST /reghook`` — verifies the phone's digest response itself against its
  own user table (the RegHook sees the nonce, uri, response… never a password)
  and grants a dialplan and codecs;
* ``POST /callhook`` — returns a CallScript: a 4-digit extension rings that
  registered phone for 20 s; when the script ends unanswered the PBX asks
  again with ``count: 1`` and gets an announcement and a 480; 600 plays a test
  announcement; everything else is refused;
* ``POST /statushook`` — prints call events.

Requests are checked against DRAGONPBX_WEBHOOK_SECRET when it is set.

    python tools/example_webhooks.py --port 8088 [--users users.json]
"""

from __future__ import annotations

import argparse
import hashlib
import hmac
import json
import logging
import os
import time
from typing import Any

from aiohttp import web

log = logging.getLogger("example-webhooks")

DEFAULT_USERS = {"2000": "secret2000", "2001": "secret2001", "2002": "secret2002"}


def _h(algorithm: str, text: str) -> str:
    fn = hashlib.sha256 if algorithm.upper().startswith("SHA-256") else hashlib.md5
    return fn(text.encode()).hexdigest()


def digest_ok(body: dict[str, Any], password: str) -> bool:
    """RFC 2617/7616 check of the credentials the PBX forwarded."""
    alg = body.get("algorithm", "MD5")
    ha1 = _h(alg, f"{body['username']}:{body['realm']}:{password}")
    ha2 = _h(alg, f"{body['method']}:{body['uri']}")
    if body.get("qop"):
        expected = _h(alg, f"{ha1}:{body['nonce']}:{body['nc']}:{body['cnonce']}:"
                           f"{body['qop']}:{ha2}")
    else:
        expected = _h(alg, f"{ha1}:{body['nonce']}:{ha2}")
    return hmac.compare_digest(expected, str(body.get("response", "")).lower())


def signature_ok(request: web.Request, raw: bytes) -> bool:
    secret = os.environ.get("DRAGONPBX_WEBHOOK_SECRET")
    if not secret:
        return True
    stamp = request.headers.get("X-DragonPBX-Timestamp", "")
    given = request.headers.get("X-DragonPBX-Signature", "")
    if not stamp.isdigit() or abs(time.time() - int(stamp)) > 300:
        return False
    mac = hmac.new(secret.encode(), stamp.encode() + b"." + raw, hashlib.sha256).hexdigest()
    return hmac.compare_digest(given, f"v1={mac}")


def make_app(users: dict[str, str], base_url: str) -> web.Application:
    async def reghook(request: web.Request) -> web.Response:
        raw = await request.read()
        if not signature_ok(request, raw):
            return web.Response(status=401, text="bad signature")
        body = json.loads(raw)
        password = users.get(body.get("username", ""))
        if password is None or not digest_ok(body, password):
            log.info("reghook: refused %s", body.get("username"))
            return web.json_response({"status": "fail"})
        log.info("reghook: %s %s ok", body["method"], body["username"])
        return web.json_response({
            "status": "ok", "expires": 300, "codecs": ["PCMU", "PCMA", "G722"],
            "dialplan": {
                "2???": {"callHook": f"{base_url}/callhook",
                         "statusHook": f"{base_url}/statushook"},
                "600": {"callHook": f"{base_url}/callhook",
                        "statusHook": f"{base_url}/statushook"},
                "*": f"{base_url}/callhook",
            },
        })

    async def callhook(request: web.Request) -> web.Response:
        raw = await request.read()
        if not signature_ok(request, raw):
            return web.Response(status=401, text="bad signature")
        call = json.loads(raw)
        to, count = call.get("to", ""), call.get("count", 0)
        log.info("callhook: %s -> %s (count %s)", call.get("from"), to, count)
        if to == "600":
            script = [{"verb": "announce", "url": "file:announcement.wav"},
                      {"verb": "response", "code": 480, "reason": "Demo Over"}]
        elif len(to) == 4 and to.isdigit() and count == 0:
            script = [{"verb": "connect", "dest": {"type": "client", "address": to,
                                                   "timeout": 20},
                       "statusLabel": "ring-extension"}]
        elif len(to) == 4 and to.isdigit():
            script = [{"verb": "announce", "url": "file:announcement.wav"},
                      {"verb": "response", "code": 480, "reason": "No Answer"}]
        else:
            script = [{"verb": "response", "code": 404, "reason": "No Such Extension"}]
        return web.json_response(script)

    async def statushook(request: web.Request) -> web.Response:
        raw = await request.read()
        event = json.loads(raw)
        log.info("status: %s %s", event.get("callId"), event.get("event"))
        return web.json_response({"ok": True})

    app = web.Application()
    app.router.add_post("/reghook", reghook)
    app.router.add_post("/callhook", callhook)
    app.router.add_post("/statushook", statushook)
    return app


def main() -> None:
    ap = argparse.ArgumentParser(description="DragonPBX example webhooks")
    ap.add_argument("--host", default="127.0.0.1")
    ap.add_argument("--port", type=int, default=8088)
    ap.add_argument("--users", help="JSON file {username: password}")
    args = ap.parse_args()
    users = DEFAULT_USERS
    if args.users:
        with open(args.users) as fh:
            users = json.load(fh)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s webhooks %(message)s")
    web.run_app(make_app(users, f"http://{args.host}:{args.port}"), host=args.host,
                port=args.port, print=None)


if __name__ == "__main__":
    main()
