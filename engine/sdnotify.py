"""systemd readiness notification (``Type=notify``) without a dependency.

``notify("READY=1")`` sends one datagram to the unix socket named by
``NOTIFY_SOCKET`` (an abstract socket when it starts with ``@``). Without
``NOTIFY_SOCKET`` — not started by systemd — it does nothing. A failure to send
is logged once and never stops the daemon.
"""

from __future__ import annotations

import os
import socket
import time

from engine.log import get_logger

log = get_logger("engine.sdnotify")


def notify(*fields: str) -> bool:
    """Send ``fields`` (e.g. ``"READY=1"``, ``"STATUS=serving"``) to systemd; True if sent."""
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall("\n".join(fields).encode())
    except OSError as exc:
        log.warning("sd_notify failed", socket=os.environ.get("NOTIFY_SOCKET"),
                    error=str(exc))
        return False
    return True


def monotonic_usec() -> str:
    """``MONOTONIC_USEC=…`` as systemd wants it next to ``RELOADING=1``."""
    return f"MONOTONIC_USEC={time.clock_gettime_ns(time.CLOCK_MONOTONIC) // 1000}"


__all__ = ["monotonic_usec", "notify"]
