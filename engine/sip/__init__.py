"""The pure SIP core of the embedded backend (no sockets, no asyncio).

Modules, by responsibility:

* ``message``  — parse/serialise requests and responses, lazy header access
* ``headers``  — header names and compact forms, list splitting, params, Via, CSeq
* ``uri``      — sip/sips/tel URIs and name-addr values
* ``builders`` — make_request / make_response, tags/branches/Call-IDs
* ``framer``   — TCP stream framing (Content-Length, keep-alives)
* ``errors``   — SipParseError (a ProtocolError) with the reply context
"""
