"""Out-of-dialog requests from caller headers plus defaults (engine/sip/outgoing.py), the
rule both backends share."""

from __future__ import annotations

from engine.sip.builders import IdGenerator
from engine.sip.message import SipRequest
from engine.sip.outgoing import request_from_headers


def build(items: list[tuple[str, str]], *, contact: bool = False,
          take_route: bool = False) -> tuple[SipRequest, str | None]:
    return request_from_headers(
        "OPTIONS", "sip:bob@example.com", items, b"", None, ids=IdGenerator(),
        user_agent="DragonPBX", local_uri=lambda t: f"sip:10.0.0.1:5060;transport={t}",
        contact_transport="tcp", contact=contact, take_route=take_route)


def test_defaults_fill_what_the_caller_left_out() -> None:
    req, route = build([], contact=True)
    assert route is None
    assert req.header("from").startswith("<sip:10.0.0.1:5060;transport=udp>;tag=")
    assert req.header("to") == "<sip:bob@example.com>"
    assert req.header("contact") == "<sip:10.0.0.1:5060;transport=tcp>"
    assert req.header("max-forwards") == "70"
    assert req.header("user-agent") == "DragonPBX"
    assert req.call_id and req.cseq.method == "OPTIONS"


def test_caller_headers_win_and_a_tagless_from_gets_a_tag() -> None:
    req, _ = build([("From", "<sip:alice@x>"), ("Call-ID", "c1"), ("CSeq", "7 OPTIONS"),
                    ("User-Agent", "Mine"), ("Via", "SIP/2.0/UDP evil"), ("X-A", "1")])
    assert req.header("from").startswith("<sip:alice@x>;tag=")
    assert req.call_id == "c1" and req.cseq.seq == 7
    assert req.header_values("user-agent") == ["Mine"]
    assert req.header("via") is None  # Via is always ours (added when sent)
    assert req.header("x-a") == "1"


def test_routes_stay_headers_unless_taken() -> None:
    items = [("Route", "<sip:p1;lr>, <sip:p2;lr>"), ("Route", "<sip:p3;lr>")]
    kept, route = build(items)
    assert route is None and len(kept.header_values("route")) == 3
    taken, route = build(items, take_route=True)
    assert route == "<sip:p1;lr>" and taken.header("route") is None
