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
import select

# Readable (bytes or EOF), an error or a hang-up: each means "do not use it". A poll
# with no timeout is one system call; wrapping the descriptor in a socket object to
# peek at it took five (getsockopt/getsockname to build it, then recv) plus an
# exception for the usual "nothing there" — on every webhook request and Redis command.
_GONE = select.POLLIN | select.POLLPRI | select.POLLERR | select.POLLHUP | select.POLLNVAL


def peer_gone(transport: asyncio.BaseTransport | None) -> bool:
    """True when an idle connection must not carry a request: closed, closing, EOF
    from the peer, a socket error, or unread bytes from the peer."""
    if transport is None or transport.is_closing():
        return True
    raw = transport.get_extra_info("socket")
    if raw is None:
        return False  # not a socket transport (tests, pipes): nothing to look at
    poller = select.poll()
    try:
        poller.register(raw.fileno(), select.POLLIN | select.POLLPRI)
        ready = poller.poll(0)
    except (OSError, ValueError):
        return True  # the descriptor is already closed
    return any(events & _GONE for _fd, events in ready)
