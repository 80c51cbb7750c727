"""Typed RTPEngine failures (all are ``engine.errors.MediaError``).

Callers catch ``MediaError`` for "media did not work"; the subclasses let a
call flow tell apart what it can react to: an unknown call (already gone — a
``delete`` treats it as success), an SDP the daemon refused (answer the caller
488), a playback file the daemon could not open (``playback:failed``), or no
reachable instance at all (fail the call fast instead of waiting).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from engine.errors import MediaError, MediaTimeout, ProtocolError

__all__ = [
    "InvalidMediaRequest",
    "MediaError",
    "MediaTimeout",
    "MediaUnavailable",
    "NgError",
    "NgLoadLimit",
    "NgPlaybackError",
    "NgProtocolError",
    "NgSdpError",
    "NgUnknownCall",
]


class NgError(MediaError):
    """RTPEngine answered ``result: error`` (or another non-ok result)."""

    def __init__(self, command: str, reason: str, reply: Mapping[str, Any] | None = None):
        self.command = command
        self.reason = reason
        self.reply: Mapping[str, Any] = reply if reply is not None else {}
        super().__init__(f"rtpengine {command}: {reason}")


class NgUnknownCall(NgError):
    """The call-id (or the tags given) is not known to the instance."""


class NgSdpError(NgError):
    """The SDP was missing, incomplete or unparsable for the daemon."""


class NgPlaybackError(NgError):
    """``play media`` could not open or decode the file/blob."""


class NgLoadLimit(NgError):
    """The instance refuses new work because it is at its configured load limit."""


class NgProtocolError(MediaError, ProtocolError):
    """A datagram from RTPEngine was not a valid ng message."""


class MediaUnavailable(MediaError):
    """No RTPEngine instance able to take the command is up (fail fast, D-30)."""


class InvalidMediaRequest(MediaError, ValueError):
    """The caller asked for something the ng protocol cannot express (bad digit, …)."""
