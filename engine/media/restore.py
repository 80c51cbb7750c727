"""What re-creating a lost RTPEngine session means for each side of a call (pure).

After RTPEngine lost a bridged call's session (issue 10) the session is created
again from both sides' last SDP. RTPEngine picks new ports at random, so the SDP
it returns for a side usually differs from the one that side already has: that
side must get a re-INVITE with the new SDP. A difference only in the ``o=`` line
(RTPEngine's session version) or in attribute order does not move media, so the
comparison looks at what does: connection addresses and each ``m=`` line.
"""

from __future__ import annotations

import re

_MEDIA_LINES = re.compile(rb"^(?:c=[^\r\n]*|m=[^\r\n]*)", re.MULTILINE)


def media_target(sdp: bytes | None) -> tuple[bytes, ...]:
    """The lines that say where media goes: every ``c=`` and ``m=`` line, in order."""
    if not sdp:
        return ()
    return tuple(line.strip() for line in _MEDIA_LINES.findall(sdp))


def media_moved(new: bytes | None, current: bytes | None) -> bool:
    """True when a side holding ``current`` must be told about ``new`` (re-INVITE)."""
    return media_target(new) != media_target(current)


__all__ = ["media_moved", "media_target"]
