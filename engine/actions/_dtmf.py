"""SIP INFO DTMF → RTPEngine ``play DTMF`` (spec §9 with D-17 fixed).

Accepted bodies: ``application/dtmf-relay`` (``Signal=5`` / ``Duration=160``) and
``application/dtmf`` (a bare digit), content type compared case-insensitively
with parameters ignored; digits ``0-9 * # A-D``. The digit is injected from the
leg that sent the INFO (its own tag), so it reaches the other side. Unknown
content types get 415 with Accept; a body without a usable signal gets 400.
"""

from __future__ import annotations

import re

from engine.actions._context import Ctx
from engine.errors import MediaError
from engine.ports import IncomingRequest

_SIGNAL = re.compile(r"^\s*signal\s*=\s*([0-9A-Da-d*#]|1[0-5])\s*$", re.IGNORECASE | re.MULTILINE)
_DURATION = re.compile(r"^\s*duration\s*=\s*(\d+)\s*$", re.IGNORECASE | re.MULTILINE)
_BARE = re.compile(r"^\s*([0-9A-Da-d*#]|1[0-5])\s*$")
_CODES_10_15 = {"10": "*", "11": "#", "12": "A", "13": "B", "14": "C", "15": "D"}
ACCEPT = "application/dtmf-relay, application/dtmf"


def parse_dtmf(content_type: str | None, body: bytes) -> tuple[str, int] | str:
    """(digit, duration ms), or an error text for the reply."""
    ctype = (content_type or "").split(";", 1)[0].strip().lower()
    text = body.decode("utf-8", "replace")
    if ctype == "application/dtmf-relay":
        m = _SIGNAL.search(text)
        if not m:
            return "no Signal in dtmf-relay body"
        d = _DURATION.search(text)
        duration = int(d.group(1)) if d else 250
    elif ctype == "application/dtmf":
        m = _BARE.match(text)
        if not m:
            return "body is not a single DTMF digit"
        duration = 250
    else:
        return "unsupported"
    digit = m.group(1).upper()
    return _CODES_10_15.get(digit, digit), max(40, min(duration, 5000))


async def handle_info(ctx: Ctx[object], req: IncomingRequest, *, call_id: str,
                      from_tag: str) -> None:
    """Answer an INFO: play its digit through RTPEngine from ``from_tag``, or refuse it."""
    if req.final_sent:
        return
    parsed = parse_dtmf(req.header("content-type"), req.body)
    if parsed == "unsupported":
        if not req.body:
            await req.reply(200, "OK")  # an empty INFO is a keep-alive
            return
        await req.reply(415, "Unsupported Media Type", headers=[("Accept", ACCEPT)])
        return
    if isinstance(parsed, str):
        await req.reply(400, "Bad Request", headers=[("X-Reason", parsed)])
        return
    digit, duration = parsed
    try:
        await ctx.services.media.play_dtmf(call_id=call_id, from_tag=from_tag, code=digit,
                                           duration=duration)
    except MediaError as exc:
        ctx.log.warning("DTMF injection failed", error=str(exc), call_id=call_id)
        await req.reply(500, "Server Internal Error", headers=[("X-Reason", "DTMF failed")])
        return
    await req.reply(200, "OK")
