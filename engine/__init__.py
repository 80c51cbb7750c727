"""DragonPBX engine: a generic interpreter of YAML state machines bound to SIP,
RTPEngine, Redis and webhooks."""

__version__ = "0.1.0"
