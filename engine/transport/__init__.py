"""The embedded SIP backend: asyncio UDP/TCP drivers around the pure core in
``engine.sip`` and :class:`EmbeddedSipPort`, the ``SipPort`` built on them."""

from engine.transport.port import EmbeddedSipPort

__all__ = ["EmbeddedSipPort"]
