"""Which RTPEngine instance a call goes to (pure).

Rendezvous (highest-random-weight) hashing: every instance gets a score from
``blake2b(instance | call-id)`` and a new call goes to the best-scoring healthy
one. Compared with round-robin this needs no shared counter, spreads calls
evenly, is the same in every engine process (the hash is not salted per
process, unlike ``hash()``), and moves only the calls of an instance that goes
down. The client still remembers where each call was placed (the call's media
lives there; a health change must not move it); the ranking is what it falls
back to for a call it has no record of, e.g. after an engine restart.
"""

from __future__ import annotations

import hashlib
from collections.abc import Sequence


def score(instance: str, call_id: str) -> int:
    digest = hashlib.blake2b(f"{instance}|{call_id}".encode("utf-8", "surrogateescape"),
                             digest_size=8).digest()
    return int.from_bytes(digest, "big")


def rank(call_id: str, instances: Sequence[str]) -> list[int]:
    """Indices of ``instances`` from most to least preferred for ``call_id``."""
    return sorted(range(len(instances)), key=lambda i: score(instances[i], call_id),
                  reverse=True)


__all__ = ["rank", "score"]
