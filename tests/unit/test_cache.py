"""The cache as pure logic: keys, signatures, max-age on an injected clock, patience, the keep rule.

(Readers sharing one computation: unit/test_engine.py, on a real process.)
"""

from __future__ import annotations

import threading

import pytest

from totmapsfs.engine import Cache
from totmapsfs.errors import Busy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(value: object = "answer", keep: bool = True):
    calls: list[int] = []

    def compute() -> tuple[object, bool]:
        calls.append(1)
        return value, keep

    return compute, calls


def test_hit_needs_same_key_same_signature_and_age_below_max_age() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(5, clock=clock)
    compute, calls = counting()
    assert cache.get_or_compute((7, 100), "sig", compute) == "answer"
    clock.now += 4.9
    cache.get_or_compute((7, 100), "sig", compute)  # hit
    cache.get_or_compute((7, 99), "sig", compute)  # same pid, other start time: another process
    cache.get_or_compute((7, 100), "other", compute)  # the process changed
    assert (len(calls), cache.counters.hits, cache.counters.misses) == (3, 1, 3)
    clock.now += 5.0
    cache.get_or_compute((7, 100), "other", compute)  # too old
    assert len(calls) == 4


def test_max_age_zero_stores_nothing() -> None:
    cache: Cache[object] = Cache(0, clock=Clock())
    compute, calls = counting()
    for _ in range(3):
        cache.get_or_compute((1, 1), "s", compute)
    assert (len(calls), len(cache)) == (3, 0)


def test_an_answer_that_may_not_be_kept_is_served_once() -> None:
    cache: Cache[object] = Cache(60, clock=Clock())
    compute, calls = counting(keep=False)
    cache.get_or_compute((1, 1), "s", compute)
    cache.get_or_compute((1, 1), "s", compute)
    assert (len(calls), len(cache)) == (2, 0)


def test_bounded_and_expired_first() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(60, clock=clock, capacity=3)
    for pid in range(4):
        cache.get_or_compute((pid, 1), "s", counting()[0])
    assert sorted(cache.keys()) == [(1, 1), (2, 1), (3, 1)]
    cache.forget_dead([3])
    assert cache.keys() == [(3, 1)]
    clock.now += 61
    cache.get_or_compute((9, 1), "s", counting()[0])
    assert cache.keys() == [(9, 1)]  # the expired entry went when a new one came


def test_patience_leaves_a_stuck_computation_behind() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(60, clock=clock)
    entered, release = threading.Event(), threading.Event()

    def stuck() -> tuple[object, bool]:
        entered.set()
        release.wait(10)
        return "late", True

    owner = threading.Thread(target=cache.get_or_compute, args=((5, 1), "s", stuck))
    owner.start()
    try:
        assert entered.wait(10)
        clock.now += 1.0
        with pytest.raises(Busy):  # under way for the whole patience: not waited for
            cache.get_or_compute((5, 1), "s", counting()[0], patience=1.0)
        with pytest.raises(Busy):  # whatever the signature: a new read would block the same way
            cache.get_or_compute((5, 1), "new", counting()[0], patience=1.0)
    finally:
        release.set()
        owner.join(10)
    assert cache.get_or_compute((5, 1), "s", counting()[0]) == "late"


def test_a_failed_computation_is_not_shared() -> None:
    cache: Cache[object] = Cache(60, clock=Clock())

    def broken() -> tuple[object, bool]:
        raise OSError("planted")

    with pytest.raises(OSError):
        cache.get_or_compute((1, 1), "s", broken)
    compute, calls = counting()
    assert cache.get_or_compute((1, 1), "s", compute) == "answer" and len(calls) == 1
