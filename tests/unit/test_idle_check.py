"""peer_gone on real socket pairs: quiet → usable; bytes, EOF, reset, closed → gone."""

from __future__ import annotations

import socket
import struct
from collections.abc import Iterator

import pytest

from engine.idle_check import peer_gone


class _Transport:
    """The two transport methods peer_gone uses, over a real socket."""

    def __init__(self, sock: socket.socket | None, closing: bool = False):
        self.sock = sock
        self.closing = closing

    def is_closing(self) -> bool:
        return self.closing

    def get_extra_info(self, name: str) -> socket.socket | None:
        assert name == "socket"
        return self.sock


@pytest.fixture
def pair() -> Iterator[tuple[socket.socket, socket.socket]]:
    """A connected TCP pair on loopback: (ours, the server's). Loopback delivers
    synchronously: what one side sends or closes is visible to the other at once."""
    with socket.create_server(("127.0.0.1", 0)) as listener:
        ours = socket.create_connection(listener.getsockname())
        theirs, _ = listener.accept()
    yield ours, theirs
    ours.close()
    theirs.close()


def test_a_quiet_connection_is_usable(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    assert peer_gone(_Transport(ours)) is False


def test_unsolicited_bytes_mean_gone_and_are_not_consumed(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.sendall(b"x")
    assert peer_gone(_Transport(ours)) is True
    assert ours.recv(1) == b"x"


def test_eof_means_gone(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.shutdown(socket.SHUT_WR)
    assert peer_gone(_Transport(ours)) is True


def test_reset_means_gone(pair: tuple[socket.socket, socket.socket]) -> None:
    ours, theirs = pair
    theirs.setsockopt(socket.SOL_SOCKET, socket.SO_LINGER, struct.pack("ii", 1, 0))
    theirs.close()  # linger 0: RST instead of FIN
    assert peer_gone(_Transport(ours)) is True


def test_closed_descriptor_closing_or_missing_transport(
        pair: tuple[socket.socket, socket.socket]) -> None:
    ours, _ = pair
    assert peer_gone(_Transport(ours, closing=True)) is True
    assert peer_gone(None) is True
    assert peer_gone(_Transport(None)) is False  # not a socket transport: nothing to see
    ours.close()  # fileno() is -1 now
    assert peer_gone(_Transport(ours)) is True
