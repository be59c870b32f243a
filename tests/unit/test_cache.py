"""The cache as pure logic: keys, signatures, max-age on an injected clock, patience, the keep rule.

(Readers sharing one computation: unit/test_engine.py, on a real process.)
"""

from __future__ import annotations

import contextlib
import threading
from collections.abc import Iterator

import pytest

from totmapsfs.engine import Cache, WalkBudget
from totmapsfs.errors import Busy


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def counting(value: object = "answer", keep: bool = True):
    calls: list[int] = []

    def compute() -> tuple[object, bool, float]:
        calls.append(1)
        return value, keep, 0.0

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


@contextlib.contextmanager
def computing(cache: Cache[object], key: tuple[int, int], signature: str, answer: str) -> Iterator[None]:
    """Another reader's computation of ``key`` under way (in its own thread) for the with-block; ``answer`` after."""
    entered, release = threading.Event(), threading.Event()

    def held() -> tuple[object, bool, float]:
        entered.set()
        release.wait(10)
        return answer, True, 0.0

    owner = threading.Thread(target=cache.get_or_compute, args=(key, signature, held))
    owner.start()
    try:
        assert entered.wait(10), "the computation did not begin"
        yield
    finally:
        release.set()
        owner.join(10)
    assert not owner.is_alive()


def test_patience_leaves_a_stuck_computation_behind() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(60, clock=clock)
    with computing(cache, (5, 1), "s", "late"):
        clock.now += 1.0
        with pytest.raises(Busy):  # under way for the whole patience: not waited for
            cache.get_or_compute((5, 1), "s", counting()[0], patience=1.0)
        with pytest.raises(Busy):  # whatever the signature: a new read would block the same way
            cache.get_or_compute((5, 1), "new", counting()[0], patience=1.0)
    assert cache.get_or_compute((5, 1), "s", counting()[0]) == "late"


def test_a_failed_computation_is_not_shared() -> None:
    cache: Cache[object] = Cache(60, clock=Clock())

    def broken() -> tuple[object, bool, float]:
        raise OSError("planted")

    with pytest.raises(OSError):
        cache.get_or_compute((1, 1), "s", broken)
    compute, calls = counting()
    assert cache.get_or_compute((1, 1), "s", compute) == "answer" and len(calls) == 1


# -- the walk duty and the budget ------------------------------------------------------


def walking(clock: Clock, seconds: float, value: object = "answer"):
    """A computation that takes ``seconds`` on the cache's clock, and says it walked that long."""
    calls: list[int] = []

    def compute() -> tuple[object, bool, float]:
        calls.append(1)
        clock.now += seconds
        return f"{value}{len(calls)}", True, seconds

    return compute, calls


def test_a_process_walked_recently_is_held_until_its_duty_allows() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(1, duty=0.05, clock=clock)
    compute, calls = walking(clock, 0.010)  # 10 ms: not due again for 200 ms after it began
    assert cache.get_or_compute((1, 1), "s1", compute) == "answer1"
    clock.now += 0.150  # 160 ms after the walk began; the process changed
    assert cache.get_or_compute((1, 1), "s2", compute) == "answer1" and cache.counters.held_not_due == 1
    assert cache.lookup((1, 1), "s3") == "answer1"  # the event loop's look gets it too
    clock.now += 0.045  # 205 ms: due
    assert cache.get_or_compute((1, 1), "s2", compute) == "answer2"
    clock.now += 5  # past max-age, and far past the duty: walked again, even if unchanged
    assert cache.get_or_compute((1, 1), "s2", compute) == "answer3" and len(calls) == 3


def test_light_targets_and_duty_one_are_never_held_however_slow_the_walk() -> None:
    """A light target's answer is never held, however long its walk took (a slow or emulated machine), below heavy."""
    for duty, seconds, light in ((0.05, 0.5, True), (1.0, 0.5, False), (0.05, 0.0005, True)):
        clock = Clock()
        cache: Cache[object] = Cache(0, duty=duty, clock=clock, heavy=1.0)
        compute, calls = walking(clock, seconds)
        for sig in ("a", "b", "c"):
            cache.get_or_compute((1, 1), sig, compute, light=light)
        assert (len(calls), cache.counters.held_not_due, len(cache)) == (3, 0, 0), (duty, seconds)


def test_a_heavy_target_is_held_however_short_its_walk_and_a_light_one_past_heavy() -> None:
    for seconds, light in ((0.0001, False), (1.0, True)):
        clock = Clock()
        cache: Cache[object] = Cache(0, duty=0.05, clock=clock, heavy=1.0)
        compute, calls = walking(clock, seconds)
        cache.get_or_compute((1, 1), "a", compute, light=light)
        clock.now += seconds  # half way to its next turn (a walk of w is due w / 0.05 after it began)
        assert cache.get_or_compute((1, 1), "b", compute, light=light) == "answer1"
        assert (len(calls), cache.counters.held_not_due) == (1, 1), (seconds, light)
        clock.now += 20 * seconds
        assert cache.get_or_compute((1, 1), "b", compute, light=light) == "answer2"


def test_a_reader_never_waits_behind_a_walk_that_has_an_answer_before_it() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(0, duty=0.05, clock=clock)
    first, _ = walking(clock, 0.002)
    cache.get_or_compute((1, 1), "a", first)
    clock.now += 1  # due again
    with computing(cache, (1, 1), "b", "new"):
        assert cache.get_or_compute((1, 1), "c", counting()[0]) == "answer1"  # at once, the last answer
        assert cache.counters.held_walk_in_flight == 1 and cache.counters.joined == 0


class Bucket:
    def __init__(self, allowed: bool) -> None:
        self.allowed, self.spent = allowed, 0.0

    def allow(self) -> bool:
        return self.allowed

    def spend(self, seconds: float) -> None:
        self.spent += seconds


def test_a_spent_budget_gives_the_last_answer_but_never_none() -> None:
    clock = Clock()
    cache: Cache[object] = Cache(1, clock=clock)
    compute, calls = walking(clock, 0.25)
    empty = Bucket(False)
    assert cache.get_or_compute((1, 1), "a", compute, budget=empty) == "answer1"  # no answer yet: walked anyway
    assert empty.spent == 0.25
    assert cache.get_or_compute((1, 1), "b", compute, budget=empty) == "answer1" and cache.counters.held_budget == 1
    assert cache.get_or_compute((1, 1), "b", compute, budget=Bucket(True)) == "answer2" and len(calls) == 2


def test_walk_budget_fills_at_its_rate_up_to_its_depth() -> None:
    clock = Clock()
    budget = WalkBudget(0.25, burst=10, clock=clock)
    assert budget.available == 2.5 and budget.allow()
    budget.spend(3.0)  # a long walk: into debt
    assert not budget.allow()
    clock.now += 1.0  # +0.25
    assert not budget.allow()
    clock.now += 1.1
    assert budget.allow() and abs(budget.available - 0.025) < 1e-9
    clock.now += 1000
    assert budget.available == 2.5
    with pytest.raises(ValueError):
        WalkBudget(0)


def test_the_budget_defers_to_answers_older_than_max_age() -> None:
    """A scrape every 15 s with max-age 1: the last pass's answers are long expired, and still given (review)."""
    clock = Clock()
    cache: Cache[object] = Cache(1, duty=0.05, clock=clock)
    spent, room = Bucket(False), Bucket(True)
    computes = {pid: walking(clock, 0.5, value=f"p{pid}-") for pid in range(10)}
    for pid, (compute, _) in computes.items():
        cache.get_or_compute((pid, 1), "a", compute, budget=room)
    clock.now += 15
    for pid, (compute, _) in computes.items():
        assert cache.get_or_compute((pid, 1), "b", compute, budget=spent) == f"p{pid}-1"
    assert cache.counters.held_budget == 10 and all(len(calls) == 1 for _, calls in computes.values())
