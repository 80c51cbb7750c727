"""The one exception tree of the engine.

Adapters translate foreign exceptions at their edge (``raise X from exc``) so
that actions, machines and the CLI only ever see these types.
"""

from __future__ import annotations

from dataclasses import dataclass


class EngineError(Exception):
    """Base of every error the engine raises on purpose."""


@dataclass(frozen=True)
class Diagnostic:
    """One finding about a definition or configuration file.

    Rendered as ``file:line:col CODE $.json.path: message`` so that editors
    and CI logs can jump to the spot.
    """

    file: str
    line: int
    col: int
    code: str
    path: str
    message: str
    severity: str = "error"  # "error" | "warning"

    def __str__(self) -> str:
        return f"{self.file}:{self.line}:{self.col} {self.code} {self.path}: {self.message}"


class DefinitionError(EngineError):
    """A machine definition failed to load; carries every diagnostic found."""

    def __init__(self, diagnostics: list[Diagnostic]):
        self.diagnostics = list(diagnostics)
        super().__init__("\n".join(str(d) for d in self.diagnostics))


class ConfigError(EngineError):
    """Bad settings or configuration data. ``str()`` names the variable/path."""

    def __init__(self, message: str, diagnostics: list[Diagnostic] | None = None):
        self.diagnostics = list(diagnostics or [])
        super().__init__(message)


class ProtocolError(EngineError):
    """A peer sent something that violates its protocol (SIP, ng, drachtio)."""


class SipError(EngineError):
    """A SIP failure with the status that should answer (or did answer) it."""

    def __init__(self, status: int, reason: str = "", response: object | None = None):
        self.status = status
        self.reason = reason
        self.response = response
        super().__init__(f"SIP {status} {reason}".rstrip())


class TransportError(EngineError):
    """I/O towards a peer failed (timeout, connection refused, …)."""


class SipTransportError(TransportError):
    """The SIP transport could not send or lost the connection."""


class MediaError(TransportError):
    """RTPEngine failed: timeout, unreachable, or an error reply."""


class MediaTimeout(MediaError):
    """RTPEngine did not answer within the command's time budget."""


class StoreError(TransportError):
    """The state store (Redis) failed."""


class HookError(TransportError):
    """A webhook call failed (HTTP status, timeout, bad body)."""

    def __init__(self, message: str, *, status: int | None = None, kind: str = "error",
                 retryable: bool = False):
        self.status = status
        # retryable: the request provably never left (the connection was found
        # closed before anything was written); safe to send on another connection.
        self.retryable = retryable
        # kind: "timeout" | "connect" | "status" | "json" | "schema" | "url" | "too_large"
        #       | "payload" | "closed" | "error"
        self.kind = kind
        super().__init__(message)
