"""Rendezvous placement of calls on instances."""

from __future__ import annotations

from collections import Counter

from engine.rtpengine.selection import rank, score

INSTANCES = ["10.0.0.1:2223", "10.0.0.2:2223", "10.0.0.3:2223"]


def test_rank_is_a_permutation_and_deterministic() -> None:
    for n in range(50):
        order = rank(f"call-{n}", INSTANCES)
        assert sorted(order) == [0, 1, 2]
        assert order == rank(f"call-{n}", INSTANCES)


def test_score_is_stable_across_processes() -> None:
    # blake2b, not the salted built-in hash(): this value never changes
    assert score("127.0.0.1:2223", "call-1") == 0xBBD6E5AA848255FA


def test_calls_spread_evenly() -> None:
    firsts = Counter(rank(f"call-{n}", INSTANCES)[0] for n in range(3000))
    assert set(firsts) == {0, 1, 2}
    assert all(800 < count < 1200 for count in firsts.values())


def test_removing_an_instance_moves_only_its_calls() -> None:
    before = {n: INSTANCES[rank(f"c{n}", INSTANCES)[0]] for n in range(500)}
    remaining = INSTANCES[:2]
    after = {n: remaining[rank(f"c{n}", remaining)[0]] for n in range(500)}
    for n in range(500):
        if before[n] != INSTANCES[2]:
            assert after[n] == before[n]


def test_second_choice_is_where_a_call_fails_over() -> None:
    for n in range(100):
        order = rank(f"c{n}", INSTANCES)
        without_first = [i for i in INSTANCES if i != INSTANCES[order[0]]]
        assert without_first[rank(f"c{n}", without_first)[0]] == INSTANCES[order[1]]
