"""Cookies must never repeat: not within a process, not across processes, not after fork."""

from __future__ import annotations

import os
import subprocess
import sys

import pytest

from engine.rtpengine.ng import CookieFactory, cookies


def test_unique_within_a_process() -> None:
    factory = CookieFactory()
    made = [factory() for _ in range(50_000)]
    assert len(set(made)) == len(made)
    assert all(" " not in c and c.isascii() for c in made)


def test_format_is_prefix_and_counter() -> None:
    factory = CookieFactory("pfx")
    assert [factory() for _ in range(3)] == ["pfx_1", "pfx_2", "pfx_3"]


def test_each_factory_draws_its_own_random_prefix() -> None:
    prefixes = {CookieFactory().prefix for _ in range(200)}
    assert len(prefixes) == 200
    assert all(len(p) == 16 for p in prefixes)


def test_module_factory_is_shared() -> None:
    first, second = cookies(), cookies()
    assert first.split("_")[0] == second.split("_")[0]
    assert int(second.split("_")[1]) > int(first.split("_")[1])


@pytest.mark.parametrize("prefix", ["", "a b", "é"])
def test_bad_prefixes_are_refused(prefix: str) -> None:
    with pytest.raises(ValueError):
        CookieFactory(prefix)


def test_unique_across_processes() -> None:
    code = ("from engine.rtpengine.ng import cookies\n"
            "print('\\n'.join(cookies() for _ in range(2000)))")
    procs = [subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.PIPE, text=True)
             for _ in range(4)]
    outputs = [p.communicate(timeout=30)[0].split() for p in procs]
    assert all(len(o) == 2000 for o in outputs)
    everything = [c for o in outputs for c in o]
    assert len(set(everything)) == len(everything)
    # and the processes did not share a prefix
    assert len({o[0].split("_")[0] for o in outputs}) == 4


@pytest.mark.skipif(not hasattr(os, "fork"), reason="needs fork")
def test_forked_child_gets_a_fresh_prefix() -> None:
    factory = CookieFactory()
    parent_first = factory()
    read_end, write_end = os.pipe()
    pid = os.fork()
    if pid == 0:  # child: report its next cookie and leave without running pytest's atexit
        try:
            os.write(write_end, factory().encode())
        finally:
            os._exit(0)
    os.close(write_end)
    child = os.read(read_end, 200).decode()
    os.close(read_end)
    os.waitpid(pid, 0)
    parent_next = factory()
    assert child.split("_")[0] != parent_first.split("_")[0]
    assert child != parent_next
    assert parent_next.split("_")[0] == parent_first.split("_")[0]
