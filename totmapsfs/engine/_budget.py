"""The host-wide walk budget: how many seconds of smaps walking per second the whole-system views may spend.

A token bucket on an injected clock: it fills at ``rate`` walk-seconds per
second (a share of one CPU: 0.25 is a quarter of one) up to ``rate * burst``,
and every walk a view begins spends its time from it. While the bucket is
empty (or in debt: a walk's cost is known only once it ends) processes that
have an answer are given that answer instead (engine._cache, "held_budget"), so
a scrape of ``metrics`` on a host of many large processes degrades to older
answers rather than to a CPU spent walking (the harm a monitor must not do). A process with no answer yet is
walked all the same: a sum must count it.
"""

from __future__ import annotations

import threading
import time
from collections.abc import Callable

DEFAULT_WALK_BUDGET = 0.25  # of one CPU
BURST = 10.0  # seconds of budget the bucket holds: a poll every 10 s may spend all of its share at once


class WalkBudget:
    """Walk-seconds available to the views; thread-safe."""

    def __init__(self, rate: float, *, burst: float = BURST, clock: Callable[[], float] = time.monotonic) -> None:
        if rate <= 0 or burst <= 0:
            raise ValueError("a walk budget is a positive share of one CPU")
        self.rate = rate
        self.depth = rate * burst
        self._clock = clock
        self._lock = threading.Lock()
        self._tokens = self.depth
        self._at = clock()

    def _refill(self) -> None:
        # Lock held.
        now = self._clock()
        self._tokens = min(self.depth, self._tokens + (now - self._at) * self.rate)
        self._at = now

    def allow(self) -> bool:
        """Whether one more walk may begin now."""
        with self._lock:
            self._refill()
            return self._tokens > 0

    def spend(self, seconds: float) -> None:
        """A walk that took ``seconds`` ended: its time comes off the bucket (into debt if need be)."""
        with self._lock:
            self._refill()
            self._tokens -= seconds

    @property
    def available(self) -> float:
        with self._lock:
            self._refill()
            return self._tokens
