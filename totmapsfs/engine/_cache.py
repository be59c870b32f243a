"""The answer cache: one entry per process identity, valid while its memory generation holds and for max-age.

An answer is *fresh* when it was computed for the same key (pid *and* start
time, so a reused pid never sees its predecessor's numbers), no more than
``max_age`` seconds ago on the injected clock, and the process's signature
(its memory generation, see ``_engine``) is unchanged since. Concurrent
readers of one key in one state share one computation: the first computes,
the others join its *flight* and take its answer.

The walk duty bounds how much of the time any one process is
walked: computing an answer reads smaps, which holds the target's mmap lock
for as long as the walk takes. With a duty D below 1, a key whose last
computation began at ``t`` and took ``w`` seconds (of the computing thread's
CPU: the walk, not the time it spent preempted) is not computed again
before ``t + w / D``, however it changed and whatever ``max_age`` says:
until then its last answer is *held*, served at once. So is it while another
reader's computation of it is under way: no reader waits behind a walk that
is not its own, except when there is no answer yet. A *light* target (the
caller says so: ``_engine`` judges it by the size of its page tables, which is
what the walk costs it, whatever the machine's speed) is not held at all,
unless its walk took ``heavy`` or more: a process that touches new memory
shows it on the very next read (tests/mount's "very next read"), on a slow or
loaded machine too, for a walk that costs the target less than a fault. A
``WalkBudget`` passed in adds a bound across processes: when it is spent, a key with an answer gets
that answer rather than a walk (once a budget has been passed, answers are
kept for that, past max-age and the duty, for up to ``BUDGET_KEEP``).

A computation also says whether its answer may be kept at all (the first-tick
rule in ``_engine``): one that may not is served to its own reader only, never
stored or handed to those who joined, who then compute for themselves.
"""

from __future__ import annotations

import math
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

from ..errors import Busy

V = TypeVar("V")
Key = tuple[int, int]  # (pid, start time in clock ticks)

DEFAULT_CAPACITY = 8192
BUDGET_KEEP = 3600.0  # seconds an answer is kept for a spent walk budget to give (capacity permitting)


@dataclass(slots=True)
class _Entry(Generic[V]):
    signature: Hashable
    at: float  # when its computation began, on the cache's clock
    value: V
    walk: float = 0.0  # how long the computation took
    until: float = 0.0  # no use after this: fresh no longer, and held no longer (the duty)
    held: bool = False  # subject to the duty (not a light target's short walk)


@dataclass(slots=True)
class _Flight(Generic[V]):
    """A computation in progress that concurrent readers of the same state may join."""

    signature: Hashable
    started: float  # on the cache's clock
    done: bool = False  # set, under the cache's lock, when the computation ended (its waiters are notified)
    value: V | None = None
    keep: bool = False  # the computation said its answer may be kept and shared
    joined: bool = False  # a reader joined it (set under the cache's lock, before it waits)


@dataclass(slots=True)
class Counters:
    hits: int = 0  # fresh answers served
    misses: int = 0  # computations begun
    joined: int = 0  # readers that waited for another's computation
    # Older answers served ("held"), by reason (the metric's reason label):
    held_not_due: int = 0  # the process was walked too recently (the duty)
    held_walk_in_flight: int = 0  # another reader's walk of it was under way
    held_budget: int = 0  # the walk budget was spent
    walks: int = 0  # computations finished
    walk_seconds: float = 0.0  # their time in all


class Budget(Protocol):
    """A walk budget shared by many reads (engine.WalkBudget): may one more walk begin, and what it cost."""

    def allow(self) -> bool: ...
    def spend(self, seconds: float) -> None: ...


class Cache(Generic[V]):
    """Answers by key; thread-safe (readers call it from worker threads)."""

    def __init__(
        self,
        max_age: float,
        *,
        duty: float = 1.0,
        clock: Callable[[], float] = time.monotonic,
        capacity: int = DEFAULT_CAPACITY,
        heavy: float = math.inf,
    ) -> None:
        """``heavy``: a walk this long is held for the duty even if its target is light (settable)."""
        if not 0 < duty <= 1:
            raise ValueError("the walk duty is a share of the time: above 0, at most 1")
        self.max_age = max_age
        self.duty = duty
        self.capacity = capacity
        self.heavy = heavy
        self.counters = Counters()
        self._clock = clock
        self._budgeted = False  # a budget has been passed: answers are kept for it past their use (BUDGET_KEEP)
        self._lock = threading.Lock()
        # Readers that joined a flight wait here: one condition for the cache,
        # not an Event per computation (most have no one joining them).
        self._landed = threading.Condition(self._lock)
        self._entries: OrderedDict[Key, _Entry[V]] = OrderedDict()
        self._flights: dict[Key, _Flight[V]] = {}

    def get_or_compute(
        self,
        key: Key,
        signature: Hashable,
        compute: Callable[[], tuple[V, bool, float]],
        *,
        patience: float | None = None,
        budget: Budget | None = None,
        light: bool = False,
    ) -> V:
        """The answer for ``key`` in state ``signature``: cached, held, joined, or ``compute()``'d.

        ``compute`` returns the answer, whether it may be kept, and what its
        walk cost in seconds (measured by the one who walks: see
        Engine._compute), which the duty and the budget count. With
        ``patience``, a key whose computation has been under way that long
        raises Busy instead of being waited for, whatever its signature: a new
        computation would block the same way (see ``_engine``). With
        ``budget``, a key that has an answer is computed only if the budget
        allows, and the computation's time is spent from it. ``light``: the
        target is light, so its answer is not held for the duty (see above).
        """
        now = self._clock()
        with self._lock:
            if budget is not None:
                self._budgeted = True
            hit = self._hit(key, signature, now)
            if hit is not None:
                return hit
            flight = self._flights.get(key)
            entry = self._entries.get(key)
            if entry is not None and budget is not None and flight is None and not budget.allow():
                self.counters.held_budget += 1
                return entry.value
            if flight is not None and patience is not None and now - flight.started >= patience:
                raise Busy(key[0])
            owner = flight is None or flight.signature != signature
            if flight is None or owner:
                flight = self._flights[key] = _Flight(signature, now)
                self.counters.misses += 1
            else:
                self.counters.joined += 1
                flight.joined = True
        if owner:
            return self._fly(key, flight, compute, budget, light)
        return self._join(key, flight, compute, now, patience)

    def lookup(self, key: Key, signature: Hashable) -> V | None:
        """The answer for ``key`` in state ``signature`` if it is fresh or held, else None; never waits or computes."""
        now = self._clock()
        with self._lock:
            return self._hit(key, signature, now)

    def _hit(self, key: Key, signature: Hashable, now: float) -> V | None:
        """A fresh answer, or a held one (see the module docstring). Lock held."""
        entry = self._entries.get(key)
        if entry is None:
            return None
        if entry.signature == signature and now - entry.at < self.max_age:
            self.counters.hits += 1
            return entry.value
        if entry.held:
            if now < entry.at + entry.walk / self.duty:
                self.counters.held_not_due += 1
                return entry.value
            if key in self._flights:
                self.counters.held_walk_in_flight += 1
                return entry.value
        return None

    def _fly(
        self,
        key: Key,
        flight: _Flight[V],
        compute: Callable[[], tuple[V, bool, float]],
        budget: Budget | None,
        light: bool,
    ) -> V:
        walk = 0.0  # a computation that failed counts as no walk (it is not held for the duty either)
        try:
            value, flight.keep, walk = compute()
            flight.value = value
            walk = max(0.0, walk)
        finally:
            if budget is not None:
                budget.spend(walk)
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                self.counters.walks += 1
                self.counters.walk_seconds += walk
                held = self.duty < 1 and (not light or walk >= self.heavy)
                until = flight.started + max(self.max_age, walk / self.duty if held else 0.0)
                if self._budgeted:
                    # A walk budget gives the last answer when it is spent, however
                    # old: so answers stay until capacity, death or BUDGET_KEEP.
                    until = max(until, flight.started + BUDGET_KEEP)
                if flight.value is not None and flight.keep and until > flight.started:
                    self._store(key, _Entry(flight.signature, flight.started, flight.value, walk, until, held))
                flight.done = True
                if flight.joined:  # a Condition's notify costs its Python-level bookkeeping even with no waiter
                    self._landed.notify_all()
        return value

    def _join(
        self,
        key: Key,
        flight: _Flight[V],
        compute: Callable[[], tuple[V, bool, float]],
        now: float,
        patience: float | None,
    ) -> V:
        timeout = None if patience is None else flight.started + patience - now
        with self._lock:
            if not self._landed.wait_for(lambda: flight.done, timeout):
                raise Busy(key[0])
        if flight.value is not None and flight.keep:
            return flight.value
        # The computation failed, or its answer may belong to a same-tick
        # predecessor: compute for the process this reader pinned.
        return compute()[0]

    def _store(self, key: Key, entry: _Entry[V]) -> None:
        # Lock held. Oldest first: entries past their use can never be served
        # again, so they go before the capacity bound bites.
        self._entries[key] = entry
        self._entries.move_to_end(key)
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.until > entry.at and len(self._entries) <= self.capacity:
                break
            self._entries.popitem(last=False)

    def last(self, key: Key) -> V | None:
        """The answer kept for ``key`` whatever its state or age, counted as held for the duty, or None.

        For a process another kind of walk holds (Engine.held_elsewhere): the
        duty is the process's, whichever cache its last walk went to.
        """
        with self._lock:
            entry = self._entries.get(key)
            if entry is None:
                return None
            self.counters.held_not_due += 1
            return entry.value

    def holds(self, key: Key) -> bool:
        """Whether the last walk of ``key`` kept here is within its duty still (``walk / duty`` not yet past)."""
        now = self._clock()
        with self._lock:
            entry = self._entries.get(key)
            if entry is None or self.duty >= 1 or not entry.held:  # a light target's short walk holds nothing
                return False
            return now < entry.at + entry.walk / self.duty

    def forget_dead(self, live: Iterable[int]) -> None:
        """Drop the entries of pids that are no longer listed."""
        alive = set(live)
        with self._lock:
            for key in [k for k in self._entries if k[0] not in alive]:
                del self._entries[key]

    def keys(self) -> list[Key]:
        with self._lock:
            return list(self._entries)

    def __len__(self) -> int:
        return len(self._entries)
