"""Pure helpers of the RTPEngine fault handling (issue 10, defect 7)."""

from __future__ import annotations

import pytest

from engine.media.cleanup import retry_pauses
from engine.media.restore import media_moved, media_target
from engine.rtpengine.client import call_is_gone, uptime_of
from engine.rtpengine.errors import NgUnknownCall

SDP = (b"v=0\r\no=- 1 1 IN IP4 127.0.0.1\r\ns=-\r\nc=IN IP4 127.0.0.1\r\nt=0 0\r\n"
       b"m=audio 30000 RTP/AVP 8 101\r\na=rtpmap:8 PCMA/8000\r\na=sendrecv\r\n")


@pytest.mark.parametrize(("total", "pauses"), [
    (120, [1, 2, 4, 8, 16, 30, 30, 29]),
    (2, [1, 1]),
    (0.5, [0.5]),
    (0, []),
])
def test_retry_pauses_double_up_to_a_cap_and_add_up_to_the_total(total: float,
                                                                 pauses: list[float]) -> None:
    assert retry_pauses(total) == pauses
    assert sum(retry_pauses(total)) == pytest.approx(total)


def test_only_a_changed_address_or_media_line_counts_as_moved() -> None:
    assert media_target(SDP) == (b"c=IN IP4 127.0.0.1", b"m=audio 30000 RTP/AVP 8 101")
    assert not media_moved(SDP.replace(b"o=- 1 1", b"o=- 9 9"), SDP)  # version only
    assert not media_moved(SDP.replace(b"\r\n", b"\n"), SDP)  # line ends only
    assert media_moved(SDP.replace(b"30000", b"30002"), SDP)
    assert media_moved(SDP.replace(b"IN IP4 127.0.0.1\r\nt", b"IN IP4 127.0.0.2\r\nt"), SDP)
    assert media_moved(SDP, None) and not media_moved(None, b"")


def test_uptime_comes_from_the_statistics_reply() -> None:
    assert uptime_of({"statistics": {"totalstatistics": {"uptime": "42"}}}) == 42.0
    for reply in ({}, {"statistics": "x"}, {"statistics": {"totalstatistics": {}}},
                  {"statistics": {"totalstatistics": {"uptime": "soon"}}}):
        assert uptime_of(reply) is None


def test_only_an_unknown_call_id_means_the_call_is_gone() -> None:
    assert call_is_gone(NgUnknownCall("query", "Unknown call-id"))
    assert call_is_gone(NgUnknownCall("delete", "Call-ID not found or tags didn't match"))
    assert not call_is_gone(NgUnknownCall("answer", "Unknown to-tag"))
