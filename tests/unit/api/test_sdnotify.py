"""sd_notify over a real unix datagram socket (path and abstract)."""

from __future__ import annotations

import os
import socket
import tempfile
from pathlib import Path

import pytest

from engine.sdnotify import monotonic_usec, notify


def test_without_notify_socket_nothing_is_sent(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("NOTIFY_SOCKET", raising=False)
    assert notify("READY=1") is False


def test_ready_reaches_a_path_socket(monkeypatch: pytest.MonkeyPatch) -> None:
    folder = Path(tempfile.mkdtemp(dir="/tmp"))
    address = str(folder / "n")
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind(address)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", address)
        assert notify("READY=1", "STATUS=serving") is True
        assert sock.recv(100) == b"READY=1\nSTATUS=serving"
        assert notify("RELOADING=1", monotonic_usec())
        fields = sock.recv(100).decode().split("\n")
        assert fields[0] == "RELOADING=1" and int(fields[1].split("=")[1]) > 0
    os.unlink(address)
    folder.rmdir()


def test_abstract_socket_and_a_missing_one(monkeypatch: pytest.MonkeyPatch) -> None:
    name = f"dragonpbx-test-{os.getpid()}"
    with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM) as sock:
        sock.bind("\0" + name)
        sock.settimeout(2)
        monkeypatch.setenv("NOTIFY_SOCKET", "@" + name)
        assert notify("STOPPING=1")
        assert sock.recv(100) == b"STOPPING=1"
    monkeypatch.setenv("NOTIFY_SOCKET", "/nonexistent/notify")
    assert notify("READY=1") is False  # logged, never raised
