"""The answer cache: one entry per process identity, valid while its memory generation holds and for max-age.

An answer is served from the cache only when it was computed for the same key
(pid *and* start time, so a reused pid never sees its predecessor's numbers),
no more than ``max_age`` seconds ago on the injected clock, and the process's
signature (its memory generation, see ``_engine``) is unchanged since.
Concurrent readers of one key in one state share one computation: the first
computes, the others join its *flight* and take its answer.

A computation also says whether its answer may be kept at all (the first-tick
rule in ``_engine``): one that may not is served to its own reader only, never
stored or handed to those who joined, who then compute for themselves.
"""

from __future__ import annotations

import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Hashable, Iterable
from dataclasses import dataclass
from typing import Generic, TypeVar

from ..errors import Busy

V = TypeVar("V")
Key = tuple[int, int]  # (pid, start time in clock ticks)

DEFAULT_CAPACITY = 8192


@dataclass(slots=True)
class _Entry(Generic[V]):
    signature: Hashable
    at: float  # when it was computed, on the cache's clock
    value: V


@dataclass(slots=True)
class _Flight(Generic[V]):
    """A computation in progress that concurrent readers of the same state may join."""

    signature: Hashable
    started: float  # on the cache's clock
    done: bool = False  # set, under the cache's lock, when the computation ended (its waiters are notified)
    value: V | None = None
    keep: bool = False  # the computation said its answer may be kept and shared


@dataclass(slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    joined: int = 0


class Cache(Generic[V]):
    """Answers by key; thread-safe (readers call it from worker threads)."""

    def __init__(
        self, max_age: float, *, clock: Callable[[], float] = time.monotonic, capacity: int = DEFAULT_CAPACITY
    ) -> None:
        self.max_age = max_age
        self.capacity = capacity
        self.counters = Counters()
        self._clock = clock
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
        compute: Callable[[], tuple[V, bool]],
        *,
        patience: float | None = None,
    ) -> V:
        """The answer for ``key`` in state ``signature``: cached, joined, or ``compute()``'d.

        ``compute`` returns the answer and whether it may be kept. With
        ``patience``, a key whose computation has been under way that long
        raises Busy instead of being waited for, whatever its signature: a new
        computation would block the same way (see ``_engine``).
        """
        now = self._clock()
        with self._lock:
            hit = self._hit(key, signature, now)
            if hit is not None:
                return hit
            flight = self._flights.get(key)
            if flight is not None and patience is not None and now - flight.started >= patience:
                raise Busy(key[0])
            owner = flight is None or flight.signature != signature
            if owner:
                flight = self._flights[key] = _Flight(signature, now)
                self.counters.misses += 1
            else:
                self.counters.joined += 1
        assert flight is not None
        if owner:
            return self._fly(key, flight, compute)
        return self._join(key, flight, compute, now, patience)

    def lookup(self, key: Key, signature: Hashable) -> V | None:
        """The cached answer for ``key`` in state ``signature``, or None; never waits, never computes."""
        now = self._clock()
        with self._lock:
            return self._hit(key, signature, now)

    def _hit(self, key: Key, signature: Hashable, now: float) -> V | None:
        # Lock held.
        entry = self._entries.get(key)
        if entry is not None and entry.signature == signature and now - entry.at < self.max_age:
            self.counters.hits += 1
            return entry.value
        return None

    def _fly(self, key: Key, flight: _Flight[V], compute: Callable[[], tuple[V, bool]]) -> V:
        try:
            value, flight.keep = compute()
            flight.value = value
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                if flight.value is not None and flight.keep and self.max_age > 0:
                    self._store(key, _Entry(flight.signature, flight.started, flight.value))
                flight.done = True
                self._landed.notify_all()
        return value

    def _join(
        self, key: Key, flight: _Flight[V], compute: Callable[[], tuple[V, bool]], now: float, patience: float | None
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
        # Lock held. Oldest first: expired entries can never be served again,
        # so they go before the capacity bound bites.
        self._entries[key] = entry
        self._entries.move_to_end(key)
        horizon = entry.at - self.max_age
        while self._entries:
            oldest = next(iter(self._entries.values()))
            if oldest.at >= horizon and len(self._entries) <= self.capacity:
                break
            self._entries.popitem(last=False)

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
