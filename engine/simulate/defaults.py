"""The configuration a simulation sees when its script has no ``config``.

One domain with a static-password client, a RegHook client and a trunk — the
same shape the unit tests of the machines use.
"""

from __future__ import annotations

from typing import Any

DEFAULT_CONFIG: dict[str, Any] = {
    "domains": {
        "pbx.test": {
            "domain_id": 1,
            "clients": [
                {"username": "alice", "password": "secret", "codecs": ["PCMU"],
                 "dialplan": {"1???": "http://hooks/call"}, "expires": 600},
                {"username": "2*", "reghook": "http://hooks/reg"},
            ],
            "trunks": [
                {"id": 7, "name": "carrier", "inbound": ["203.0.113.0/24"],
                 "outbound": {"host": "sip.carrier.test"}, "codecs": ["PCMA"],
                 "dialplan": {"44*": "http://hooks/did", "99*": "file:script.json"}},
            ],
        }
    }
}
