"""Every message kind of the spec, parsed and built from the frames it quotes (§2–§4, §8)."""

from __future__ import annotations

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from engine.drachtio.wire import (
    AppSipFrame,
    AuthenticateFrame,
    CdrFrame,
    DrachtioProtocolError,
    InvalidToken,
    Meta,
    PingFrame,
    ProxyFrame,
    ResponseFrame,
    RouteFrame,
    SipFrame,
    UnknownFrame,
    build_authenticate,
    build_ping,
    build_proxy,
    build_remove_route,
    build_route,
    build_sip,
    encode_frame,
    parse_app_frame,
    parse_server_frame,
    server_info,
)
from tests.unit.drachtio import spec_frames as spec
from tests.unit.drachtio.fakes import build_response, build_server_sip


def server(text: str) -> object:
    return parse_server_frame(spec.wire_text(text))


def app(text: str) -> object:
    return parse_app_frame(spec.wire_text(text))


# ----------------------------------------------------------------- authenticate, route, ping


def test_authenticate_request() -> None:
    frame = parse_app_frame(spec.AUTH_FRAME.split("#", 1)[1].encode())
    assert frame == AuthenticateFrame("1234", "cymru", ())
    with_tags = parse_app_frame(build_authenticate("7", "s", ["a", "b-c"]).split(b"#", 1)[1])
    assert with_tags == AuthenticateFrame("7", "s", ("a", "b-c"))


def test_authenticate_ok_reports_host_ports_and_version() -> None:
    frame = server(spec.AUTH_OK)
    assert isinstance(frame, ResponseFrame)
    assert frame.msg_id == "bf72e034-a662-4a9b-b159-888868821309"
    assert frame.request_id == "fc29c6d0-d163-4b12-ba5a-72ecc67b1c61"
    assert frame.ok and frame.meta is None and not frame.is_continue
    info = server_info(frame)
    assert info.version == "v0.9.10-1-g9c2dd4cb6a"
    assert info.hostports == (("tcp", "127.0.0.1", 5080), ("udp", "127.0.0.1", 5080))
    assert info.local_hostports == info.hostports


def test_authenticate_refused() -> None:
    frame = server(spec.AUTH_NO)
    assert isinstance(frame, ResponseFrame)
    assert frame.request_id == "<id>"
    assert frame.status == "NO" and not frame.ok
    assert frame.reason == "incorrect secret"


def test_route_remove_route_and_their_answer() -> None:
    assert app(spec.ROUTE) == RouteFrame("<id>", "<verb>")
    assert app(spec.REMOVE_ROUTE) == RouteFrame("<id>", "<verb>", remove=True)
    assert build_route("r1", "REGISTER") == encode_frame("r1|route|register")
    assert build_remove_route("r2", "Options") == encode_frame("r2|remove_route|options")
    answer = server(spec.ROUTE_OK)
    assert isinstance(answer, ResponseFrame) and answer.ok and answer.fields == ()


def test_ping_and_pong() -> None:
    assert app(spec.PING) == PingFrame("<id>")
    assert build_ping("<id>") == encode_frame(spec.PING)
    pong = server(spec.PONG)
    assert isinstance(pong, ResponseFrame)
    assert (pong.msg_id, pong.request_id, pong.ok, pong.fields) == ("<sid>", "<id>", True,
                                                                     ("pong",))


# ----------------------------------------------------------------- sip, server → app


def test_new_options_request_with_meta_and_received_on() -> None:
    frame = server(spec.NEW_OPTIONS)
    assert isinstance(frame, SipFrame)
    assert frame.msg_id == "70443442-d74b-4133-9591-ad4800ea5ff4"
    assert frame.meta == Meta("network", 262, "udp", "127.0.0.1", 16000, "08:42:15.477168")
    assert frame.transaction_id == "4626d75f-8785-44b3-921c-9f9854a2f889"
    assert frame.dialog_id == ""
    assert frame.received_on == ("127.0.0.1", 5080)
    assert not frame.unsolicited
    msg = frame.message
    assert msg.is_request and msg.method == "OPTIONS"
    assert msg.request_uri == "sip:app@127.0.0.1:5080"
    assert msg.header("call-id") == "opt-a0dffd4c"
    assert msg.header("CSEQ") == "1 OPTIONS" and msg.cseq_method == "OPTIONS"
    assert msg.header("From") == "<sip:alice@127.0.0.1:16000>;tag=a1"
    assert [name for name, _ in msg.headers] == ["Via", "Max-Forwards", "From", "To",
                                                 "Call-ID", "CSeq", "Content-Length"]
    assert msg.body == ""


def test_in_dialog_bye() -> None:
    frame = server(spec.IN_DIALOG_BYE)
    assert isinstance(frame, SipFrame)
    assert frame.transaction_id == "ae41d441-b663-4d96-8b62-e6dc979627cd"
    assert frame.dialog_id == "inv-2d443ffa;from-tag=atag1"
    assert frame.received_on is None
    assert frame.message.method == "BYE"


def test_ack_has_an_empty_protocol_and_the_invite_transaction() -> None:
    frame = server(spec.ACK)
    assert isinstance(frame, SipFrame)
    assert frame.meta.protocol == ""
    assert frame.meta.address == "127.0.0.1" and frame.meta.port == 16000
    assert frame.transaction_id == "826bfc90-8929-427e-aa6f-3abe67723c42"
    assert frame.message.method == "ACK"


def test_quick_cancel_has_no_dialog_and_no_received_on() -> None:
    frame = server(spec.QUICK_CANCEL)
    assert isinstance(frame, SipFrame)
    assert frame.message.method == "CANCEL"
    assert frame.transaction_id == "2dc55af5-cd08-44a0-832e-770d44bd0bf3"
    assert frame.dialog_id == "" and frame.received_on is None


def test_response_to_our_invite_carries_the_dialog_id() -> None:
    frame = server(spec.INVITE_407)
    assert isinstance(frame, SipFrame)
    assert not frame.message.is_request
    assert frame.message.status == 407
    assert frame.message.reason == "Proxy Authentication Required"
    assert frame.message.method is None
    assert frame.dialog_id == "1f70f337-6418-1240-75bb-02365959d547;from-tag=S1NH98t2QHrmN"


def test_unsolicited_bye_is_flagged() -> None:
    frame = server(spec.UNSOLICITED_BYE)
    assert isinstance(frame, SipFrame)
    assert frame.unsolicited
    assert frame.meta.source == "application"
    assert frame.dialog_id == "noack-37b3e595;from-tag=atag3"
    assert frame.message.header("Reason") == 'SIP;cause=200;text="ACK timeout"'


def test_flow_frames_of_section_8() -> None:
    invite = server(spec.FLOW_INVITE)
    assert isinstance(invite, SipFrame)
    assert invite.received_on == ("127.0.0.1", 5080) and invite.transaction_id == "826bfc90-…"
    sent_180 = server(spec.FLOW_SENT_180)
    assert isinstance(sent_180, ResponseFrame)
    assert sent_180.meta is not None and sent_180.meta.time == "…"
    assert sent_180.dialog_id == "inv-2d443ffa;from-tag=atag1"
    sent_info = server(spec.FLOW_SENT_INFO)
    assert isinstance(sent_info, ResponseFrame)
    assert (sent_info.transaction_id, sent_info.dialog_id) == ("712e4001-…", "")
    bye_200 = server(spec.FLOW_SENT_BYE_200)
    assert isinstance(bye_200, ResponseFrame) and bye_200.meta is not None
    assert bye_200.meta.protocol == "" and bye_200.dialog_id == ""
    nok = server(spec.FLOW_ACK_NOK)
    assert isinstance(nok, ResponseFrame) and nok.status == "NOK"
    assert nok.reason.startswith("Server error: ACK for non-success")


# ----------------------------------------------------------------- sip, app → server


def test_response_to_a_received_request() -> None:
    frame = app(spec.RESPONSE_180)
    assert isinstance(frame, AppSipFrame)
    assert (frame.transaction_id, frame.dialog_id, frame.route_uri) == ("<txn>", "", "")
    assert frame.message.status == 180
    message = "SIP/2.0 180 Ringing\r\nContent-Length: 0\r\n\r\n"
    assert build_sip("<id>", message, transaction_id="<txn>") == encode_frame(
        spec.wire_text(spec.RESPONSE_180))


def test_answer_to_a_sent_response_gives_transaction_and_dialog() -> None:
    frame = server(spec.SENT_200)
    assert isinstance(frame, ResponseFrame)
    assert frame.meta == Meta("application", 442, "udp", "127.0.0.1", 16000, "08:42:15.479703")
    assert frame.transaction_id == "826bfc90-8929-427e-aa6f-3abe67723c42"
    assert frame.dialog_id == "inv-2d443ffa;from-tag=atag1"
    assert frame.message is not None and frame.message.status == 200
    assert frame.message.header("to") == "<sip:1000@127.0.0.1:5080>;tag=rrvr7DaZt811S"


def test_new_request_and_its_answer() -> None:
    frame = app(spec.NEW_INVITE)
    assert isinstance(frame, AppSipFrame)
    assert (frame.transaction_id, frame.dialog_id) == ("", "")
    assert frame.message.header("x-app") == "probe"
    assert frame.message.body == "v=0\r\n…"
    built = build_sip("<id>", spec.wire_text(spec.NEW_INVITE).decode().split("\r\n", 1)[1])
    assert built == encode_frame(spec.wire_text(spec.NEW_INVITE))
    answer = server(spec.SENT_INVITE)
    assert isinstance(answer, ResponseFrame)
    assert answer.transaction_id == "fda119a5-992e-4d50-ae31-b17db7975b50"
    assert answer.dialog_id == ""
    assert answer.message is not None
    assert answer.message.header("Call-ID") == "1f70f337-6418-1240-75bb-02365959d547"
    assert answer.message.header("Content-Type") == "application/sdp"


def test_in_dialog_requests_ack_and_cancel() -> None:
    bye = app(spec.IN_DIALOG_BYE_REQUEST)
    assert isinstance(bye, AppSipFrame) and bye.dialog_id == "<dialogId>"
    assert bye.message.request_uri == "sip:placeholder"
    ack = app(spec.ACK_REQUEST)
    assert isinstance(ack, AppSipFrame) and ack.message.method == "ACK"
    cancel = app(spec.CANCEL_REQUEST)
    assert isinstance(cancel, AppSipFrame)
    assert cancel.transaction_id == "<INVITE transaction id>" and cancel.dialog_id == ""
    info = app(spec.FLOW_INFO)
    assert isinstance(info, AppSipFrame)
    assert info.message.body == "Signal=5\r\nDuration=160"
    flow_cancel = app(spec.FLOW_CANCEL)
    assert isinstance(flow_cancel, AppSipFrame) and flow_cancel.transaction_id == "d65d8eff-…"
    text = spec.wire_text(spec.CANCEL_REQUEST).decode().split("\r\n", 1)[1]
    assert build_sip("<id>", text, transaction_id="<INVITE transaction id>") == encode_frame(
        spec.wire_text(spec.CANCEL_REQUEST))


def test_route_uri_field_for_new_requests() -> None:
    data = build_sip("m", "OPTIONS sip:a@b SIP/2.0\r\n\r\n", route_uri="sip:10.0.0.1;transport=tcp")
    frame = parse_app_frame(data.split(b"#", 1)[1])
    assert isinstance(frame, AppSipFrame) and frame.route_uri == "sip:10.0.0.1;transport=tcp"


# ----------------------------------------------------------------- proxy, cdr


def test_proxy_request_and_its_answers() -> None:
    frame = app(spec.PROXY)
    assert isinstance(frame, ProxyFrame)
    assert frame.transaction_id == "<txn>" and frame.destinations == ("<dest1>", "<dest2>")
    built = build_proxy("p", "t1", ["127.0.0.1:16012", "sip:b@127.0.0.1"],
                        "INVITE sip:127.0.0.1:16012 SIP/2.0\r\nX-A: 1\r\nContent-Length: 0\r\n\r\n",
                        remain_in_dialog=True, simultaneous=True, provisional_timeout="2s")
    parsed = parse_app_frame(built.split(b"#", 1)[1])
    assert parsed == ProxyFrame("p", "t1", True, True, False, True, "2s", "",
                                ("sip:127.0.0.1:16012", "sip:b@127.0.0.1"),
                                parsed.message)  # type: ignore[union-attr]
    more = server(spec.PROXY_CONTINUE)
    assert isinstance(more, ResponseFrame) and more.is_continue
    assert more.meta == Meta("network", 558, "udp", "127.0.0.1", 16012, "08:43:05.841545")
    assert more.message is not None and more.message.status == 200
    done = server(spec.PROXY_DONE)
    assert isinstance(done, ResponseFrame)
    assert done.ok and not done.is_continue and done.fields == ("done",)
    assert done.request_id == more.request_id == "8db6d0b4-…"


def test_cdr_frames() -> None:
    start = server(spec.CDR_START)
    assert start == CdrFrame("3dc1e55f-…", "cdr:start", "application", "08:42:15.479726", "uas",
                             start.message)  # type: ignore[union-attr]
    assert start.message is not None and start.message.status == 200  # type: ignore[union-attr]
    stop = server(spec.CDR_STOP)
    assert isinstance(stop, CdrFrame) and stop.detail == "call-rejected"


def test_unknown_frame_types_are_kept_not_raised() -> None:
    frame = parse_server_frame(b"s1|cdr:future|x|y")
    assert frame == UnknownFrame("s1", "cdr:future", ("x", "y"), None)
    assert isinstance(parse_app_frame(b"x|foo"), UnknownFrame)


# ----------------------------------------------------------------- fake-server builders agree


def test_fake_server_builders_produce_the_spec_layout() -> None:
    meta = Meta("network", 262, "udp", "127.0.0.1", 16000, "08:42:15.477168")
    text = spec.wire_text(spec.NEW_OPTIONS).decode().split("\r\n", 1)[1]
    built = build_server_sip("70443442-d74b-4133-9591-ad4800ea5ff4", meta,
                             "4626d75f-8785-44b3-921c-9f9854a2f889", "", text,
                             received_on=("127.0.0.1", 5080))
    assert built == encode_frame(spec.wire_text(spec.NEW_OPTIONS), limit=None)
    assert build_response("<sid>", "<id>", "OK", ["pong"]) == encode_frame(spec.PONG)


# ----------------------------------------------------------------- malformed input


@pytest.mark.parametrize("payload", [
    b"",
    b"|response|x|OK",
    b"only-an-id",
    b"s|response",
    b"s|response|m",
    b"s|response||OK",
    b"s|response|m|MAYBE",
    b"s|response|m|OK|network|12|udp|127.0.0.1|16000|t|who-knows",
    b"s|response|m|OK|network|x12|udp|127.0.0.1|16000|t|txn|Msg sent:|",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn||",
    b"s|sip|elsewhere|262|udp|127.0.0.1|16000|t|txn||\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    b"s|sip|network|-1|udp|127.0.0.1|16000|t|txn||\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    b"s|sip|network|262|udp|127.0.0.1|port|t|txn||\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn||127.0.0.1|x|\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn||\r\ngarbage\r\n\r\n",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn||\r\nSIP/2.0 2000 OK\r\n\r\n",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn||\r\n INVITE sip:a SIP/2.0\r\n\r\n",
    b"s|sip|network|262|udp|127.0.0.1|16000|t|txn||\r\nINV1TE sip:a SIP/2.0\r\n\r\n",
    b"s|cdr:stop|network",
])
def test_malformed_server_frames_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(DrachtioProtocolError):
        parse_server_frame(payload)


def test_malformed_authenticate_answer() -> None:
    frame = parse_server_frame(b"s|response|m|OK|tcp-no-slash|v1|")
    assert isinstance(frame, ResponseFrame)
    with pytest.raises(DrachtioProtocolError):
        server_info(frame)


@pytest.mark.parametrize("payload", [
    b"m|sip|\r\nSIP/2.0 200 OK\r\n\r\n",  # both id fields are mandatory (§10.2)
    b"m|sip||",
    b"m|authenticate",
    b"m|route|",
    b"m|proxy|t|||||||",
])
def test_malformed_app_frames_are_protocol_errors(payload: bytes) -> None:
    with pytest.raises(DrachtioProtocolError):
        parse_app_frame(payload)


@pytest.mark.parametrize("build", [
    lambda: build_authenticate("m", "se|cret"),
    lambda: build_authenticate("m", "s", ["a,b"]),
    lambda: build_authenticate("m|x", "s"),
    lambda: build_route("m", "invite\r\n"),
    lambda: build_sip("m", "BYE sip:placeholder SIP/2.0\r\n\r\n", dialog_id="d|1"),
    lambda: build_sip("m", "BYE sip:x SIP/2.0\r\n\r\n", transaction_id="t1"),
    lambda: build_proxy("m", "t", [], "INVITE sip:x SIP/2.0\r\n\r\n"),
])
def test_builders_refuse_what_the_server_cannot_parse(build: object) -> None:
    with pytest.raises(InvalidToken):
        build()  # type: ignore[operator]


# ----------------------------------------------------------------- fuzz: a ProtocolError or a frame

_PIECES = st.sampled_from(["|", "\r\n", "sip", "response", "OK", "NO", "NOK", "network",
                           "application", "udp", "127.0.0.1", "5080", "²", "٣", "Msg sent:",
                           "continue", "", "SIP/2.0 200 OK", "INVITE sip:a SIP/2.0", "done",
                           "tcp/127.0.0.1:5٠80", "cdr:stop", "proxy", "authenticate"])


@settings(max_examples=500, deadline=None)
@given(st.lists(st.one_of(_PIECES, st.text(max_size=6)), max_size=30))
def test_any_payload_parses_or_is_a_protocol_error(pieces: list[str]) -> None:
    payload = "".join(pieces).encode("utf-8", "surrogatepass")
    for parse in (parse_server_frame, parse_app_frame):
        try:
            frame = parse(payload)
        except DrachtioProtocolError:
            continue
        if isinstance(frame, ResponseFrame) and frame.ok:
            try:
                server_info(frame)
            except DrachtioProtocolError:
                pass
        message = getattr(frame, "message", None)
        if message is not None:  # the lazy SIP view never raises either
            _ = (message.status, message.reason, message.method, message.headers,
                 message.body, message.cseq_method, message.request_uri)


@pytest.mark.parametrize("payload", [
    "s|sip|network|²|udp|h|1|t|x||\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    "s|sip|network|1|udp|h|٣|t|x||\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    "s|sip|network|1|udp|h|1|t|x||h|²|\r\nOPTIONS sip:a SIP/2.0\r\n\r\n",
    "s|sip|network|1|udp|h|1|t|x||\r\nSIP/2.0 ²00 OK\r\n\r\n",
])
def test_non_ascii_digits_are_protocol_errors_not_crashes(payload: str) -> None:
    with pytest.raises(DrachtioProtocolError):
        parse_server_frame(payload.encode())
    with pytest.raises(DrachtioProtocolError):
        server_info(parse_server_frame(b"s|response|m|OK|tcp/127.0.0.1:\xc2\xb2|v|"))  # type: ignore[arg-type]
