"""Server-side frame builders for fake drachtio servers in tests (pure, no sockets)."""

from __future__ import annotations

from collections.abc import Sequence

from engine.drachtio.wire import STATUSES, InvalidToken, Meta, encode_frame

CRLF = "\r\n"


def _field(value: str) -> str:
    if "|" in value or "\r" in value or "\n" in value:
        raise InvalidToken("a field must not contain '|', CR or LF")
    return value


def _payload(tokens: Sequence[str], message: str | None) -> str:
    head = "|".join(_field(t) for t in tokens)
    return head if message is None else head + CRLF + message


def build_response(server_msg_id: str, request_id: str, status: str,
                   fields: Sequence[str] = (), message: str | None = None) -> bytes:
    """A server → app ``response`` frame."""
    if status not in STATUSES:
        raise InvalidToken(f"status must be one of {sorted(STATUSES)}")
    return encode_frame(_payload([server_msg_id, "response", request_id, status, *fields],
                                 message), limit=None)


def build_server_sip(server_msg_id: str, meta: Meta, transaction_id: str, dialog_id: str,
                     message: str, received_on: tuple[str, int] | None = None) -> bytes:
    """A server → app ``sip`` frame in the server's layout (trailing empty field)."""
    tokens = [server_msg_id, "sip", meta.source, str(meta.size), meta.protocol, meta.address,
              "" if meta.port is None else str(meta.port), meta.time, transaction_id, dialog_id]
    if received_on is not None:
        tokens += [received_on[0], str(received_on[1])]
    tokens.append("")
    return encode_frame(_payload(tokens, message), limit=None)
