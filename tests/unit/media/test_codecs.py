"""Codec policy and DIRECT decision tables (spec §7.3/§7.5, D-3, D-6)."""

from __future__ import annotations

from typing import Any

import pytest

from engine.media.codecs import (
    LegCodecs,
    codec_options,
    direct_media,
    has_telephone_event,
    leg_codecs,
    parse_codec_list,
    split_direct,
)

DEFAULT = ("G722", "PCMA", "PCMU")

PARSE = [
    (None, ()),
    ("", ()),
    ("   ", ()),
    ('["PCMU","PCMA"]', ("PCMU", "PCMA")),
    (b'["G722"]', ("G722",)),
    ('"PCMU"', ("PCMU",)),
    ("null", ()),
    ("PCMU,PCMA", ("PCMU", "PCMA")),
    (" PCMU , PCMA ,", ("PCMU", "PCMA")),
    (["PCMU", " opus ", ""], ("PCMU", "opus")),
    (("DIRECT", "PCMU"), ("DIRECT", "PCMU")),
    ([], ()),
]


@pytest.mark.parametrize(("value", "expected"), PARSE)
def test_parse_codec_list(value: Any, expected: tuple[str, ...]) -> None:
    assert parse_codec_list(value) == expected


@pytest.mark.parametrize("value", ['["PCMU",', "[1, 2]", 7, {"a": 1}, ["PCMU", 3], '{"a":1}'])
def test_parse_codec_list_rejects(value: Any) -> None:
    with pytest.raises(ValueError):
        parse_codec_list(value)


SPLIT = [
    ((), LegCodecs((), False)),
    (("PCMU",), LegCodecs(("PCMU",), False)),
    (("DIRECT",), LegCodecs((), True)),
    # D-3: index 0 counts too
    (("DIRECT", "PCMU", "PCMA"), LegCodecs(("PCMU", "PCMA"), True)),
    (("PCMU", "DIRECT", "PCMA"), LegCodecs(("PCMU", "PCMA"), True)),
    (("PCMU", "PCMA", "DIRECT"), LegCodecs(("PCMU", "PCMA"), True)),
    (("direct", "PCMU"), LegCodecs(("PCMU",), True)),
    (("DIRECT", "PCMU", "DIRECT"), LegCodecs(("PCMU",), True)),
    (("DIRECTX", "PCMU"), LegCodecs(("DIRECTX", "PCMU"), False)),
]


@pytest.mark.parametrize(("codecs", "expected"), SPLIT)
def test_split_direct(codecs: tuple[str, ...], expected: LegCodecs) -> None:
    assert split_direct(codecs) == expected
    assert split_direct(list(codecs)) == expected


def test_caller_list_is_never_mutated() -> None:
    shared = ["PCMU", "DIRECT", "PCMA"]
    for _ in range(3):  # the original changed behaviour call by call (D-3)
        leg = leg_codecs(shared, DEFAULT)
        assert leg == LegCodecs(("PCMU", "PCMA"), True)
        assert isinstance(leg.codecs, tuple)
    assert shared == ["PCMU", "DIRECT", "PCMA"]
    options = codec_options(shared, shared, offer_sdp=b"", default=DEFAULT)
    assert shared == ["PCMU", "DIRECT", "PCMA"]
    options["mask"].append("X")  # the result is a fresh object, not a view
    assert codec_options(shared, shared, offer_sdp=b"", default=DEFAULT)["mask"] == \
        ["PCMU", "PCMA"]


LEGS = [
    (None, LegCodecs(DEFAULT, False)),  # D-6: trunk without codecs
    ([], LegCodecs(DEFAULT, False)),
    ('["DIRECT"]', LegCodecs(DEFAULT, True)),  # only DIRECT: defaults, direct allowed
    ('["PCMU","DIRECT"]', LegCodecs(("PCMU",), True)),
    ("PCMA", LegCodecs(("PCMA",), False)),
]


@pytest.mark.parametrize(("value", "expected"), LEGS)
def test_leg_codecs(value: Any, expected: LegCodecs) -> None:
    assert leg_codecs(value, DEFAULT) == expected


def test_default_list_may_itself_need_parsing() -> None:
    assert leg_codecs(None, '["PCMA","PCMU"]') == LegCodecs(("PCMA", "PCMU"))  # type: ignore[arg-type]


DIRECT_TABLE = [
    (False, False, False),
    (True, False, False),
    (False, True, False),
    (True, True, True),
]


@pytest.mark.parametrize(("caller", "callee", "expected"), DIRECT_TABLE)
def test_direct_media_needs_both(caller: bool, callee: bool, expected: bool) -> None:
    assert direct_media(LegCodecs(("PCMU",), caller), LegCodecs(("PCMU",), callee)) is expected


SDP_TE = b"m=audio 1 RTP/AVP 0 101\r\na=rtpmap:101 Telephone-Event/8000\r\n"
SDP_NO_TE = b"m=audio 1 RTP/AVP 0\r\na=rtpmap:0 PCMU/8000\r\n"

OPTIONS = [
    # source, dest, sdp, expected codec dict
    (["PCMU"], ["G722"], SDP_TE,
     {"mask": ["PCMU"], "transcode": ["G722"], "accept": ["telephone-event"]}),
    (["PCMU"], ["G722"], SDP_NO_TE,
     {"mask": ["PCMU"], "transcode": ["G722", "telephone-event"]}),
    (["PCMU", "PCMA"], ["PCMA", "G722"], SDP_NO_TE,
     {"mask": ["PCMU", "PCMA"], "transcode": ["PCMA", "G722", "telephone-event"]}),
    # DIRECT is not a codec for RTPEngine
    (["DIRECT", "PCMU"], ["PCMA", "DIRECT"], SDP_TE,
     {"mask": ["PCMU"], "transcode": ["PCMA"], "accept": ["telephone-event"]}),
    # empty lists fall back to DEFAULT_CODECS (D-6)
    ([], ["PCMA"], SDP_NO_TE,
     {"mask": list(DEFAULT), "transcode": ["PCMA", "telephone-event"]}),
    (["PCMU"], None, SDP_NO_TE,
     {"mask": ["PCMU"], "transcode": [*DEFAULT, "telephone-event"]}),
    # duplicates removed, telephone-event not appended twice
    (["PCMU", "pcmu"], ["PCMA", "telephone-event", "PCMA"], SDP_NO_TE,
     {"mask": ["PCMU"], "transcode": ["PCMA", "telephone-event"]}),
    ('["PCMU"]', "G722,PCMA", "a=rtpmap:101 telephone-event/8000",
     {"mask": ["PCMU"], "transcode": ["G722", "PCMA"], "accept": ["telephone-event"]}),
]


@pytest.mark.parametrize(("source", "dest", "sdp", "expected"), OPTIONS)
def test_codec_options(source: Any, dest: Any, sdp: bytes | str,
                       expected: dict[str, list[str]]) -> None:
    assert codec_options(source, dest, offer_sdp=sdp, default=DEFAULT) == expected


@pytest.mark.parametrize(("sdp", "expected"), [
    (SDP_TE, True), (SDP_NO_TE, False), ("TELEPHONE-EVENT", True), ("", False)])
def test_has_telephone_event(sdp: bytes | str, expected: bool) -> None:
    assert has_telephone_event(sdp) is expected
