"""The ng request bodies the MediaPort sends (pure: dicts in, dicts out).

Keeping them here, away from the socket code, makes "what exactly do we send
to RTPEngine in case X" a table test. Choices, all checked against
rtpengine 10.5 (environment.md §4):

* ``offer`` and ``answer`` carry ``flags: [<address flag>, "inject-DTMF"]``,
  ``replace: ["origin", "session-connection"]`` and ``ICE: "remove"``.
  ``inject-DTMF`` must be on both for ``play DTMF`` to work later (it also
  routes audio through the transcoder). The offer adds ``transport-protocol:
  RTP/AVP``: B legs are plain RTP endpoints (no SRTP/WebRTC support, §15).
* Address flag: ``trust-address`` (use the SDP's c= address; the daemon's
  default, but explicit so a ``--sip-source`` daemon behaves the same) unless
  the caller passes ``received_from`` *and* the SDP advertises a
  non-routable address (RFC 1918, CGNAT, link-local, ULA, loopback) while the
  SIP source is routable: then the SDP address is a NATed phone's private
  one and ``SIP-source-address`` with ``received-from`` makes RTPEngine send
  to the NAT's public address (the port still comes from the SDP; RTPEngine's
  default symmetric-RTP learning then latches onto the real source port).
  ``SIP-source-address`` without ``received-from`` is an error on this build.
* Forked calls (D-34): each branch's offer and answer carry ``via-branch``.
  On this build a new via-branch for the same call-id/from-tag creates a
  separate callee-side monologue (own ports, own codec handlers), so the codec
  policy of one branch no longer overwrites another's. The answer must carry
  the *same* via-branch: without it rtpengine attaches the answer to the most
  recent branch and, with differing codecs, returns an empty ``m=`` format list.
"""

from __future__ import annotations

import functools
import ipaddress
import random
import re
import time
from collections.abc import Mapping
from typing import Any

from engine.rtpengine.errors import InvalidMediaRequest

OFFER_ANSWER_COMMON: dict[str, Any] = {
    "replace": ["origin", "session-connection"],
    "ICE": "remove",
}
DTMF_CODES = frozenset("0123456789*#ABCD")
DTMF_MIN_MS, DTMF_MAX_MS = 40, 5000

_CONNECTION = re.compile(rb"^c=IN IP[46] ([^\s/]+)", re.MULTILINE)


def _as_bytes(sdp: bytes | str) -> bytes:
    return sdp if isinstance(sdp, bytes) else sdp.encode("utf-8", "surrogateescape")


def _routable(address: ipaddress.IPv4Address | ipaddress.IPv6Address) -> bool:
    # is_global is False for RFC 1918, CGNAT 100.64/10, loopback, link-local, ULA,
    # unspecified and reserved ranges: exactly the addresses a NATed phone leaks.
    return address.is_global


def address_options(sdp: bytes | str, received_from: str | None) -> dict[str, Any]:
    """``flags`` entry and optional ``received-from`` for where media should go."""
    if received_from:
        source = _source_ip(received_from)
        advertised = []
        for raw in _CONNECTION.findall(_as_bytes(sdp)):
            address = _sdp_ip(raw)
            if address is None:  # a hostname: leave it to the daemon
                return {"flag": "trust-address"}
            advertised.append(address)
        if (advertised and _routable(source)
                and not any(a.is_unspecified for a in advertised)
                and not any(_routable(a) for a in advertised)):
            family = "IP6" if source.version == 6 else "IP4"
            return {"flag": "SIP-source-address", "received-from": [family, str(source)]}
    return {"flag": "trust-address"}


# Every offer and answer parses the SIP source and the SDP's c= addresses, and they are
# the same few addresses call after call: parsing each once saves ~20 µs per command.
@functools.lru_cache(maxsize=4096)
def _source_ip(text: str) -> ipaddress.IPv4Address | ipaddress.IPv6Address:
    try:
        return ipaddress.ip_address(text.strip("[]"))
    except ValueError:
        raise InvalidMediaRequest(f"received_from {text!r} is not an IP") from None


@functools.lru_cache(maxsize=4096)
def _sdp_ip(raw: bytes) -> ipaddress.IPv4Address | ipaddress.IPv6Address | None:
    try:
        return ipaddress.ip_address(raw.decode("ascii"))
    except (ValueError, UnicodeDecodeError):
        return None


def _media_common(sdp: bytes | str, received_from: str | None) -> dict[str, Any]:
    addr = address_options(sdp, received_from)
    body: dict[str, Any] = {"flags": [addr["flag"], "inject-DTMF"], **OFFER_ANSWER_COMMON}
    if "received-from" in addr:
        body["received-from"] = addr["received-from"]
    return body


def offer_body(*, call_id: str, from_tag: str, sdp: bytes | str,
               codec: Mapping[str, list[str]] | None = None, branch: str | None = None,
               received_from: str | None = None, to_tag: str | None = None
               ) -> dict[str, Any]:
    body: dict[str, Any] = {"command": "offer", "call-id": call_id, "from-tag": from_tag,
                            "sdp": _as_bytes(sdp), **_media_common(sdp, received_from),
                            "transport-protocol": "RTP/AVP"}
    if to_tag:  # a re-offer inside an established call (re-INVITE from either side)
        body["to-tag"] = to_tag
    if codec:
        body["codec"] = {k: list(v) for k, v in codec.items()}
    if branch:
        body["via-branch"] = branch
    return body


def answer_body(*, call_id: str, from_tag: str, to_tag: str, sdp: bytes | str,
                branch: str | None = None, received_from: str | None = None
                ) -> dict[str, Any]:
    body: dict[str, Any] = {"command": "answer", "call-id": call_id, "from-tag": from_tag,
                            "to-tag": to_tag, "sdp": _as_bytes(sdp),
                            **_media_common(sdp, received_from)}
    if branch:
        body["via-branch"] = branch
    return body


def delete_body(*, call_id: str, from_tag: str | None = None) -> dict[str, Any]:
    body: dict[str, Any] = {"command": "delete", "call-id": call_id}
    if from_tag:
        body["from-tag"] = from_tag
    return body


def play_media_body(*, call_id: str, from_tag: str, file: str | None = None,
                    blob: bytes | None = None, repeat: int | None = None) -> dict[str, Any]:
    if (file is None) == (blob is None):
        raise InvalidMediaRequest("play media needs exactly one of file or blob")
    body: dict[str, Any] = {"command": "play media", "call-id": call_id, "from-tag": from_tag}
    if file is not None:
        if not file.startswith("/"):
            # the daemon resolves relative paths against its own working directory
            raise InvalidMediaRequest(f"play media needs an absolute path, not {file!r}")
        body["file"] = file
    else:
        if not blob:
            raise InvalidMediaRequest("play media blob is empty")
        body["blob"] = bytes(blob)
    if repeat is not None:
        if repeat < 1:
            raise InvalidMediaRequest(f"repeat must be ≥ 1, not {repeat}")
        body["repeat-times"] = int(repeat)
    return body


def stop_media_body(*, call_id: str, from_tag: str) -> dict[str, Any]:
    return {"command": "stop media", "call-id": call_id, "from-tag": from_tag}


def play_dtmf_body(*, call_id: str, from_tag: str, code: str | int, duration: int = 250
                   ) -> dict[str, Any]:
    """``play DTMF``: ``code`` is ``0-9 * # A-D`` (any case) or an event number 0-15.

    The duration comes from the network (SIP INFO ``Duration=``), so it is
    clamped to 40..5000 ms rather than refused.
    """
    if isinstance(code, int) and not isinstance(code, bool):
        if not 0 <= code <= 15:
            raise InvalidMediaRequest(f"DTMF event {code} is outside 0-15")
        digit: str | int = code
    elif isinstance(code, str) and len(code) == 1 and code.upper() in DTMF_CODES:
        digit = code.upper()
    else:
        raise InvalidMediaRequest(f"not a DTMF digit: {code!r}")
    ms = min(max(int(duration), DTMF_MIN_MS), DTMF_MAX_MS)
    return {"command": "play DTMF", "call-id": call_id, "from-tag": from_tag, "code": digit,
            "duration": ms}


def query_body(*, call_id: str) -> dict[str, Any]:
    return {"command": "query", "call-id": call_id}


def dummy_sdp(*, rng: random.Random | None = None, now: float | None = None,
              codec: tuple[int, str] = (0, "PCMU/8000"),
              telephone_event: int | None = None) -> bytes:
    """The placeholder answer SDP used for ringback/announce early media (spec §6c).

    ``codec`` is (payload type, rtpmap) of the codec the placeholder "accepts": pass the
    caller's first offered codec, so the early media (and the later real answer) keep the
    caller's preferred codec instead of forcing PCMU on it. ``telephone_event`` keeps
    DTMF negotiable on the caller's side.
    """
    pick = rng or random
    seconds = int(time.time() if now is None else now)
    pt, rtpmap = codec
    pts = f"{pt}" + (f" {telephone_event}" if telephone_event is not None else "")
    lines = [
        "v=0",
        f"o=- {pick.randint(0, 10**9)} {seconds} IN IP4 127.0.0.1",
        "s=Dummy Session",
        "c=IN IP4 127.0.0.1",
        "t=0 0",
        f"m=audio {50000 + 2 * pick.randint(0, 4999)} RTP/AVP {pts}",
        f"a=rtpmap:{pt} {rtpmap}",
    ]
    if telephone_event is not None:
        lines.append(f"a=rtpmap:{telephone_event} telephone-event/8000")
    lines.append("a=sendonly")
    return ("\r\n".join(lines) + "\r\n").encode("ascii")


__all__ = [
    "address_options",
    "answer_body",
    "delete_body",
    "dummy_sdp",
    "offer_body",
    "play_dtmf_body",
    "play_media_body",
    "query_body",
    "stop_media_body",
]
