"""drachtio-server application protocol (spec: ../shared/spec/drachtio-protocol.md).

* :mod:`engine.drachtio.wire` — pure: framing, message ids, parsing and building of
  every frame kind, request/response correlation. No asyncio, no sockets.
* :mod:`engine.drachtio.client` — the asyncio client in inbound-connection mode
  (dial, authenticate, route, ping, reconnect with capped backoff).
* :mod:`engine.drachtio.port` — ``DrachtioSipPort``, the ``SipPort`` of
  ``SIP_BACKEND=drachtio``, with :mod:`~engine.drachtio.requests` (incoming requests),
  :mod:`~engine.drachtio.dialogs` (INVITE dialogs) and :mod:`~engine.drachtio.legs`
  (our requests and INVITE legs).
* :mod:`engine.drachtio.peers` — engines sharing one server find each other in Redis;
  a draining engine withdraws its routes while another one is there.
"""
