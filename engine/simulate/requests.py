"""SIP requests a script sends: raw text, or a few fields filled out like a phone would."""

from __future__ import annotations

from typing import Any

from engine.ports import Peer
from engine.sip.digest import DigestClient, parse_challenge

DEFAULT_SOURCE = Peer("192.0.2.10", 5072, "udp")


class ScriptError(Exception):
    """A script step that cannot be carried out (reported with its JSON path)."""

    def __init__(self, path: tuple[str | int, ...], message: str):
        self.path = path
        super().__init__(message)


def parse_source(text: str | None) -> Peer:
    if not text:
        return DEFAULT_SOURCE
    hostport, _, transport = text.partition("/")
    host, _, port = hostport.rpartition(":")
    return Peer(host, int(port), transport or "udp")


def _bare(uri: str) -> str:
    return uri if uri.startswith("<") or '"' in uri else f"<{uri}>"


def build_request(spec: dict[str, Any], n: int, challenge: tuple[str, str] | None,
                  digest: DigestClient, path: tuple[str | int, ...]) -> str:
    """The text of request number ``n``; ``challenge`` is (header name, value) of the last
    401/407 sent, which ``auth`` answers."""
    method = spec["method"]
    uri = spec["uri"]
    source = parse_source(spec.get("source"))
    from_ = spec.get("from", f"sip:anonymous@{source.host}")
    to = spec.get("to", uri)
    lines = [
        f"{method} {uri} SIP/2.0",
        f"Via: SIP/2.0/{source.transport.upper()} {source.host}:{source.port}"
        f";branch=z9hG4bK-sim{n}",
        f"From: {_bare(from_)};tag=sim{n}",
        f"To: {_bare(to)}",
        f"Call-ID: {spec.get('call_id', f'sim-{n}@{source.host}')}",
        f"CSeq: {n} {method}",
        "Max-Forwards: 70",
    ]
    if "contact" in spec:
        lines.append(f"Contact: {_bare(spec['contact'])}")
    if "expires" in spec:
        lines.append(f"Expires: {spec['expires']}")
    auth = spec.get("auth")
    if auth is not None:
        if challenge is None:
            raise ScriptError((*path, "auth"), "no 401/407 challenge was sent before this "
                              "request, so there is nothing to answer")
        header, value = challenge
        answer = digest.authorization(parse_challenge(value), method=method, uri=uri,
                                      username=auth["username"], password=auth["password"])
        name = "Proxy-Authorization" if header.lower() == "proxy-authenticate" \
            else "Authorization"
        lines.append(f"{name}: {answer}")
    for name, value in spec.get("headers", {}).items():
        lines.append(f"{name}: {value}")
    body = spec.get("body", "")
    if body:
        if not any(k.lower() == "content-type" for k in spec.get("headers", {})):
            lines.append("Content-Type: application/sdp")
        body = body.replace("\r\n", "\n").replace("\n", "\r\n")
    lines.append(f"Content-Length: {len(body.encode())}")
    return "\r\n".join(lines) + "\r\n\r\n" + body


def raw_request(text: str) -> str:
    """Raw SIP from a YAML block: lines end in CRLF, one blank line ends the headers."""
    head, _, body = text.replace("\r\n", "\n").partition("\n\n")
    head = head.strip("\n").replace("\n", "\r\n")
    return head + "\r\n\r\n" + body.replace("\n", "\r\n")
