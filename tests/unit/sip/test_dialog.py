"""Dialogs (RFC 3261 §12-§14): creation on both sides, route sets, CSeq,
target refresh, in-dialog requests with loose/strict routing, matching, 481."""

from __future__ import annotations

import pytest

from engine.sip.builders import make_request, make_response
from engine.sip.dialog import CONFIRMED, EARLY, TERMINATED, DialogTable, SipDialog, next_hop
from engine.sip.effects import RequestReceived, ResponseReceived
from engine.sip.errors import SipParseError
from engine.sip.message import SipRequest, SipResponse
from engine.sip.parser import parse_message
from tests.unit.sip._harness import PEER_UDP, Harness, uac_request


def our_invite() -> SipRequest:
    return make_request(
        "INVITE", "sip:bob@biloxi.example.com",
        via="SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKinv1;rport",
        from_='"PBX" <sip:pbx@192.0.2.1>;tag=ourtag', to="<sip:bob@biloxi.example.com>",
        call_id="dlg-1@pbx", cseq=100, contact="<sip:pbx@192.0.2.1:5060>",
        body=b"v=0\r\n", content_type="application/sdp")


def their_answer(req: SipRequest, status: int, *, tag: str = "bobtag",
                 contact: str | None = "<sip:bob@192.0.2.50:5062>",
                 rr: tuple[str, ...] = ("<sip:p2.example.com;lr>", "<sip:p1.example.com;lr>"),
                 ) -> SipResponse:
    if not req.has("via"):  # a request the dialog built: the core would add this
        req.add_header("Via", "SIP/2.0/UDP 192.0.2.1:5060;branch=z9hG4bKind", first=True)
    headers = [("Record-Route", r) for r in rr]
    if contact:
        headers.append(("Contact", contact))
    # round-trip through bytes: the dialog sees what the network delivers
    resp = make_response(req, status, headers=headers, to_tag=tag)
    out = parse_message(resp.to_bytes())
    assert isinstance(out, SipResponse)
    return out


# ------------------------------------------------------------------ UAC


def test_uac_early_then_confirmed_recomputes_route_and_target() -> None:
    inv = our_invite()
    d = SipDialog.from_uac(inv, their_answer(inv, 180, contact="<sip:bob@early.example.com>"))
    assert d.state == EARLY and d.role == "uac"
    assert d.id == "dlg-1@pbx;from-tag=ourtag"
    assert d.key == ("dlg-1@pbx", "ourtag", "bobtag")
    assert d.route_set == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]  # reversed
    assert d.remote_target == "sip:bob@early.example.com"
    d.provisional(their_answer(inv, 183, contact="<sip:bob@later.example.com>"))
    assert d.remote_target == "sip:bob@later.example.com"
    ok = their_answer(inv, 200, rr=("<sip:p3.example.com;lr>",))
    d.receive_response(inv, ok)
    assert d.state == CONFIRMED
    assert d.route_set == ["<sip:p3.example.com;lr>"]
    assert d.remote_target == "sip:bob@192.0.2.50:5062"


def test_uac_early_dialog_without_contact_targets_request_uri() -> None:
    inv = our_invite()
    d = SipDialog.from_uac(inv, their_answer(inv, 180, contact=None, rr=()))
    assert d.remote_target == "sip:bob@biloxi.example.com"
    d.receive_response(inv, their_answer(inv, 486, contact=None, rr=()))
    assert d.state == TERMINATED


def test_uac_in_dialog_requests_loose_routing() -> None:
    inv = our_invite()
    d = SipDialog.from_uac(inv, their_answer(inv, 200))
    bye = d.create_request("BYE", headers=[("Reason", 'SIP;cause=16;text="normal"')])
    assert bye.uri == "sip:bob@192.0.2.50:5062"
    assert bye.header_values("route") == ["<sip:p1.example.com;lr>", "<sip:p2.example.com;lr>"]
    assert (bye.cseq.seq, bye.cseq.method) == (101, "BYE")
    assert bye.from_tag == "ourtag" and bye.to_tag == "bobtag"
    assert bye.from_.display_name == "PBX"
    assert bye.call_id == "dlg-1@pbx"
    assert not bye.has("contact") and not bye.has("via")
    assert bye.header("reason") == 'SIP;cause=16;text="normal"'
    assert next_hop(bye).host == "p1.example.com"
    assert d.next_hop().host == "p1.example.com"
    reinv = d.create_request("INVITE", body=b"v=0\r\n", content_type="application/sdp")
    assert reinv.cseq.seq == 102 and reinv.header("contact") == "<sip:pbx@192.0.2.1:5060>"
    ack = d.create_ack(body=b"v=0\r\n", content_type="application/sdp")  # late-offer answer
    assert (ack.cseq.seq, ack.cseq.method) == (102, "ACK")
    assert ack.body == b"v=0\r\n" and ack.uri == reinv.uri
    first_ack = d.create_ack(100)
    assert first_ack.cseq.seq == 100
    for method in ("INFO", "REFER", "NOTIFY", "UPDATE", "OPTIONS", "MESSAGE"):
        r = d.create_request(method)
        assert r.cseq.method == method
        assert r.has("contact") == (method in ("REFER", "NOTIFY", "UPDATE"))
    # serialisable and parseable once the core adds a Via
    bye.add_header("Via", "SIP/2.0/UDP 192.0.2.1;branch=z9hG4bKbye", first=True)
    assert parse_message(bye.to_bytes()).cseq.seq == 101
    with pytest.raises(ValueError):
        d.create_request("ACK")


def test_strict_route_set() -> None:
    inv = our_invite()
    strict = "<sip:p1.example.com;method=INVITE;maddr=10.0.0.1>"
    d = SipDialog.from_uac(inv, their_answer(inv, 200, rr=("<sip:p2.example.com;lr>", strict)))
    bye = d.create_request("BYE")
    # first route is strict: it becomes the Request-URI (minus 'method'), target goes last
    assert bye.uri == "sip:p1.example.com;maddr=10.0.0.1"
    assert bye.header_values("route") == ["<sip:p2.example.com;lr>",
                                          "<sip:bob@192.0.2.50:5062>"]
    assert str(next_hop(bye, strict=True)) == "sip:p1.example.com;maddr=10.0.0.1"
    assert str(d.next_hop()) == "sip:p1.example.com;method=INVITE;maddr=10.0.0.1"


def test_no_route_set_next_hop_is_request_uri() -> None:
    inv = our_invite()
    d = SipDialog.from_uac(inv, their_answer(inv, 200, rr=()))
    bye = d.create_request("BYE")
    assert not bye.has("route")
    assert str(next_hop(bye)) == "sip:bob@192.0.2.50:5062"
    assert str(d.next_hop()) == "sip:bob@192.0.2.50:5062"


def test_target_refresh_from_responses_and_termination() -> None:
    inv = our_invite()
    d = SipDialog.from_uac(inv, their_answer(inv, 200))
    reinv = d.create_request("INVITE")
    d.receive_response(reinv, their_answer(reinv, 200, contact="<sip:bob@moved.example.com>"))
    assert d.remote_target == "sip:bob@moved.example.com"
    info = d.create_request("INFO")
    d.receive_response(info, their_answer(info, 200, contact="<sip:bob@ignored.example.com>"))
    assert d.remote_target == "sip:bob@moved.example.com"  # INFO is no target refresh
    d.receive_response(reinv, their_answer(reinv, 491))
    assert d.state == CONFIRMED  # a failed re-INVITE leaves the dialog alone
    opt = d.create_request("OPTIONS")
    d.receive_response(opt, their_answer(opt, 481))
    assert d.state == TERMINATED
    d2 = SipDialog.from_uac(inv, their_answer(inv, 200))
    bye = d2.create_request("BYE")
    d2.receive_response(bye, their_answer(bye, 200))
    assert d2.state == TERMINATED


def test_uac_dialog_needs_tags() -> None:
    inv = our_invite()
    with pytest.raises(SipParseError):
        SipDialog.from_uac(inv, their_answer(inv, 180, tag=""))


# ------------------------------------------------------------------ UAS


def received_invite() -> SipRequest:
    req = parse_message(make_request(
        "INVITE", "sip:2000@192.0.2.1", via="SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKa",
        from_='"Alice" <sip:alice@example.com>;tag=alicetag', to="<sip:2000@192.0.2.1>",
        call_id="uas-1@alice", cseq=7, contact="<sip:alice@198.51.100.7:5070;transport=udp>",
        headers=[("Record-Route", "<sip:edge1.example.com;lr>"),
                 ("Record-Route", "<sip:edge2.example.com;lr>")]).to_bytes())
    assert isinstance(req, SipRequest)
    return req


def test_uas_dialog_creation_and_requests() -> None:
    inv = received_invite()
    ok = make_response(inv, 200, headers=[("Contact", "<sip:2000@192.0.2.1:5060>")],
                       to_tag="pbxtag")
    d = SipDialog.from_uas(inv, ok, initial_local_seq=5000)
    assert d.role == "uas" and d.state == CONFIRMED
    assert d.id == "uas-1@alice;from-tag=alicetag"
    assert d.key == ("uas-1@alice", "pbxtag", "alicetag")
    assert d.route_set == ["<sip:edge1.example.com;lr>", "<sip:edge2.example.com;lr>"]
    assert d.remote_target == "sip:alice@198.51.100.7:5070;transport=udp"
    assert d.remote_seq == 7 and d.local_seq is None
    bye = d.create_request("BYE")
    assert bye.cseq.seq == 5000
    assert bye.from_tag == "pbxtag" and bye.to_tag == "alicetag"
    assert bye.to.display_name == "Alice"
    assert bye.header_values("route")[0] == "<sip:edge1.example.com;lr>"
    assert d.create_request("INFO").cseq.seq == 5001
    early = SipDialog.from_uas(inv, make_response(inv, 180, to_tag="pbxtag"))
    assert early.state == EARLY


def test_uas_incoming_requests_cseq_and_target_refresh() -> None:
    inv = received_invite()
    d = SipDialog.from_uas(inv, make_response(inv, 200, to_tag="pbxtag"))

    def incoming(method: str, cseq: int, contact: str | None = None) -> SipRequest:
        r = make_request(method, "sip:2000@192.0.2.1", from_="<sip:alice@example.com>;tag=alicetag",
                         to="<sip:2000@192.0.2.1>;tag=pbxtag", call_id="uas-1@alice", cseq=cseq,
                         contact=contact, via="SIP/2.0/UDP 198.51.100.7:5070;branch=z9hG4bKx")
        return r

    assert d.receive_request(incoming("ACK", 7)) is None
    assert d.receive_request(incoming("INFO", 8)) is None and d.remote_seq == 8
    assert d.receive_request(incoming("INFO", 6)) == 500  # out of order
    assert d.remote_seq == 8
    assert d.receive_request(incoming("INVITE", 9, "<sip:alice@10.9.9.9>")) is None
    assert d.remote_target == "sip:alice@10.9.9.9"
    assert d.receive_request(incoming("UPDATE", 10, "<sip:alice@10.9.9.10>")) is None
    assert d.remote_target == "sip:alice@10.9.9.10"
    assert d.receive_request(incoming("INFO", 11, "<sip:alice@nope>")) is None
    assert d.remote_target == "sip:alice@10.9.9.10"
    assert d.receive_request(incoming("BYE", 12)) is None
    assert d.state == TERMINATED


def test_uas_dialog_needs_contact() -> None:
    inv = received_invite()
    inv.remove_header("contact")
    with pytest.raises(SipParseError, match="Contact"):
        SipDialog.from_uas(inv, make_response(inv, 200, to_tag="x"))


# ------------------------------------------------------------------ table


def test_dialog_table_matching_and_481() -> None:
    table = DialogTable()
    inv = received_invite()
    uas = table.add(SipDialog.from_uas(inv, make_response(inv, 200, to_tag="pbxtag")))
    ours = our_invite()
    fork_a = table.add(SipDialog.from_uac(ours, their_answer(ours, 180, tag="a")))
    fork_b = table.add(SipDialog.from_uac(ours, their_answer(ours, 180, tag="b")))
    assert len(table) == 3
    assert {d.remote_tag for d in table.early_dialogs("dlg-1@pbx", "ourtag")} == {"a", "b"}
    assert table.by_id("dlg-1@pbx;from-tag=ourtag") == [fork_a, fork_b]

    def req(from_tag: str, to_tag: str | None, method: str = "BYE",
            call_id: str = "uas-1@alice") -> SipRequest:
        return make_request(method, "sip:2000@192.0.2.1", from_=f"<sip:a@x>;tag={from_tag}",
                            to="<sip:2000@192.0.2.1>" + (f";tag={to_tag}" if to_tag else ""),
                            call_id=call_id, cseq=9)

    assert table.match_request(req("alicetag", "pbxtag")) is uas
    assert table.match_request(req("alicetag", "other")) is None
    assert table.needs_481(req("alicetag", "other"))
    assert not table.needs_481(req("alicetag", None, "INVITE"))  # out of dialog
    assert not table.needs_481(req("alicetag", "other", "ACK"))
    assert not table.needs_481(req("alicetag", "pbxtag"))
    assert table.match_response(their_answer(ours, 200, tag="b")) is fork_b
    assert table.match_response(their_answer(ours, 200, tag="c")) is None
    table.remove(fork_a)
    table.remove(fork_a)
    assert len(table.dialogs()) == 2


# ------------------------------------------------------------------ with the endpoint core


def test_uac_flow_through_the_core_with_ack_resend() -> None:
    h = Harness()
    inv = make_request("INVITE", "sip:bob@198.51.100.7:5070", from_="<sip:pbx@192.0.2.1>;tag=t1",
                       to="<sip:bob@198.51.100.7>", call_id="flow-1", cseq=1,
                       contact="<sip:pbx@192.0.2.1:5060>")
    tx, effects = h.core.send_request(inv, PEER_UDP)
    h.run(effects)
    sent_inv = parse_message(h.take_sent()[0][1].data)
    assert isinstance(sent_inv, SipRequest)
    ok = make_response(sent_inv, 200, headers=[("Contact", "<sip:bob@198.51.100.7:5070>")],
                       to_tag="b1")
    h.recv(ok)
    [ev] = h.take_events(ResponseReceived)
    d = SipDialog.from_uac(inv, ev.response)
    ack = d.create_ack()
    h.run(h.core.send_ack(ack, PEER_UDP, invite_tx=tx))
    [(_, ack_send)] = h.take_sent()
    sent_ack = parse_message(ack_send.data)
    assert sent_ack.method == "ACK" and sent_ack.top_via.branch != sent_inv.top_via.branch  # type: ignore[union-attr]
    h.recv(ok)  # 2xx retransmitted: the core re-sends the same ACK by itself
    assert [s.data for _, s in h.take_sent()] == [ack_send.data]


def test_uas_flow_through_the_core_bye_and_481() -> None:
    h = Harness()
    table = DialogTable()
    h.recv(uac_request("INVITE"))
    [ev] = h.take_events(RequestReceived)
    ok, effects = h.core.respond(ev.tx, 200, headers=[("Contact", "<sip:bob@192.0.2.1>")])
    h.run(effects)
    table.add(SipDialog.from_uas(ev.request, ok))
    bye = uac_request("BYE", branch="z9hG4bKbye", cseq=2, to_tag=ok.to_tag)
    h.recv(bye)
    [bev] = h.take_events(RequestReceived)
    d = table.match_request(bev.request)
    assert d is not None and d.receive_request(bev.request) is None
    assert d.state == TERMINATED
    stray = uac_request("BYE", branch="z9hG4bKbye2", cseq=3, to_tag="unknown")
    h.recv(stray)
    [sev] = h.take_events(RequestReceived)
    assert table.needs_481(sev.request)
    resp, _ = h.core.respond(sev.tx, 481)
    assert resp.reason == "Call/Transaction Does Not Exist"
