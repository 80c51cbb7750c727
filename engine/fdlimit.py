"""The daemon's file-descriptor limit (RLIMIT_NOFILE), raised at start-up.

systemd and most shells start services with a soft limit of 1,024 while the hard
limit is far higher; every SIP TCP connection, webhook connection, Redis and
RTPEngine socket needs a descriptor. The daemon raises its soft limit to the hard
limit before anything opens sockets and warns when the result stays low (raise
``LimitNOFILE=`` in the unit, or ``ulimit -n``, then).
"""

from __future__ import annotations

import resource
from pathlib import Path

from engine.log import get_logger

log = get_logger("engine.fdlimit")

LOW_NOFILE = 4096  # below this, warn: a connection flood and outbound sockets share little


def _nr_open() -> int:
    """The kernel's ceiling for a process's descriptor limit (Linux ``fs.nr_open``)."""
    try:
        return int(Path("/proc/sys/fs/nr_open").read_text().strip())
    except (OSError, ValueError):
        return 1 << 20


def raise_nofile_limit(low: int = LOW_NOFILE) -> int:
    """Raise the soft RLIMIT_NOFILE to the hard limit; return the soft limit now in
    force. Logs the change at info and a warning when the limit stays below ``low``."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    target = _nr_open() if hard == resource.RLIM_INFINITY else hard
    if soft != resource.RLIM_INFINITY and soft < target:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (target, hard))
            log.info("file-descriptor limit raised", soft_was=soft, soft=target,
                     hard="unlimited" if hard == resource.RLIM_INFINITY else hard)
            soft = target
        except (ValueError, OSError) as exc:
            log.warning("cannot raise the file-descriptor limit", soft=soft, hard=hard,
                        error=str(exc))
    if soft != resource.RLIM_INFINITY and soft < low:
        log.warning("file-descriptor limit is low: a TCP connection flood and outbound "
                    "sockets (webhooks, Redis, RTPEngine) share few descriptors; raise the "
                    "hard limit (systemd LimitNOFILE=, ulimit -Hn)", limit=soft,
                    recommended=low)
    return soft
