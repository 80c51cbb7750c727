"""Is an idle client connection still usable? A look at its socket before writing.

Why: a server may close an idle keep-alive connection (an HTTP server's keep-alive
timer, Redis's ``timeout``, a restart) at any moment. If its FIN is already here
but the event loop has not run ``connection_lost`` yet, a request written now
reaches a closed socket and fails *after* the write, when nobody can prove it was
not processed — so it must not be re-sent. Peeking at the socket first settles
the common case while the request provably has not left: EOF, an error, or bytes
nobody asked for all mean "do not use this connection, open another".
"""

from __future__ import annotations

import asyncio
import socket

_PEEK_FLAGS = socket.MSG_PEEK | socket.MSG_DONTWAIT


def peer_gone(transport: asyncio.BaseTransport | None) -> bool:
    """True when an idle connection must not carry a request: closed, closing, EOF
    from the peer, a socket error, or unread bytes from the peer."""
    if transport is None or transport.is_closing():
        return True
    raw = transport.get_extra_info("socket")
    if raw is None:
        return False  # not a socket transport (tests, pipes): nothing to look at
    # Wrap the transport's descriptor without duplicating it, peek, and let go: the
    # transport keeps ownership (asyncio's TransportSocket has no recv of its own).
    try:
        sock = socket.socket(fileno=raw.fileno())
    except (OSError, ValueError):
        return True  # the descriptor is already closed
    try:
        sock.recv(1, _PEEK_FLAGS)
    except (BlockingIOError, InterruptedError):
        return False  # nothing to read: the connection is open and quiet
    except OSError:
        return True  # reset or another error
    finally:
        sock.detach()
    return True  # EOF (b"") or unsolicited bytes
