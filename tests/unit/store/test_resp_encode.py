"""RESP encoding of commands (engine.store.resp.encode): every argument type the
stores pass, as Redis's protocol spells it."""

from __future__ import annotations

import pytest

from engine.store.codec import JsonText
from engine.store.resp import encode


@pytest.mark.parametrize(("args", "expected"), [
    (("PING",), b"*1\r\n$4\r\nPING\r\n"),
    (("GET", b"k"), b"*2\r\n$3\r\nGET\r\n$1\r\nk\r\n"),
    (("EXPIRE", "client:d:u", 300), b"*3\r\n$6\r\nEXPIRE\r\n$10\r\nclient:d:u\r\n$3\r\n300\r\n"),
    (("SET", "k", 2.5), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$3\r\n2.5\r\n"),
    (("SET", "k", True), b"*3\r\n$3\r\nSET\r\n$1\r\nk\r\n$4\r\nTrue\r\n"),
    # a str subclass (a config dialplan's cached JSON) is text, not repr'd
    (("HSET", "k", "dialplan", JsonText('{"*":"x"}')),
     b'*4\r\n$4\r\nHSET\r\n$1\r\nk\r\n$8\r\ndialplan\r\n$9\r\n{"*":"x"}\r\n'),
    # lengths count bytes, not characters
    (("SET", "é", ""), b"*3\r\n$3\r\nSET\r\n$2\r\n\xc3\xa9\r\n$0\r\n\r\n"),
])
def test_encode(args: tuple, expected: bytes) -> None:
    assert encode(*args) == expected
