"""Typed errors of the pure SIP core.

A malformed message must never take down the transport: the parser raises
only :class:`SipParseError` (a :class:`~engine.errors.ProtocolError`), and the
error carries what the transport needs to decide between answering (400/505/513
with the precise reason) and dropping silently (responses, ACKs, messages whose
Via could not be recovered).
"""

from __future__ import annotations

from engine.errors import EngineError, ProtocolError

# The headers a 400 must echo (RFC 3261 §8.2.6.2); kept in the error so the
# transport can answer without re-parsing the broken message.
REPLY_HEADERS = ("via", "from", "to", "call-id", "cseq")


class SipParseError(ProtocolError):
    """A SIP message (or one of its header fields) is malformed.

    ``reason`` is a short human text fit for a reason phrase ("Bad CSeq").
    ``status`` is the response code that would answer it (400, 505, 513).
    ``context`` holds the raw ``(name, value)`` lines of Via/From/To/Call-ID/
    CSeq salvaged from the message, ``is_request`` / ``method`` what the start
    line said, when it could be read at all.
    """

    def __init__(
        self,
        reason: str,
        *,
        status: int = 400,
        context: list[tuple[str, str]] | None = None,
        is_request: bool | None = None,
        method: str | None = None,
    ):
        self.reason = reason
        self.status = status
        self.context = context or []
        self.is_request = is_request
        self.method = method
        super().__init__(reason)

    @property
    def can_reply(self) -> bool:
        """True if a response can be sent: a request (not ACK) with at least a Via.

        Responses and ACKs are never answered (RFC 3261 §17.2.1/§18.1.2), and
        without a Via there is nowhere meaningful to send a response.
        """
        if not self.is_request or self.method == "ACK":
            return False
        return any(_key(name) == "via" for name, _ in self.context)

    @property
    def action(self) -> str:
        """``"reply"`` or ``"drop"`` — what the transport should do."""
        return "reply" if self.can_reply else "drop"


def _key(name: str) -> str:
    n = name.strip().lower()
    return "via" if n == "v" else n


class TransactionStateError(EngineError):
    """The transaction user asked for something the transaction's state forbids
    (a second final response, a response to an unknown or finished transaction,
    CANCEL of a non-INVITE). A programming/race error, never a peer's fault."""
