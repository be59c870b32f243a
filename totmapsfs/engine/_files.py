"""Per-mapping walks (MOUNT/files): a process's smaps summed by mapping key, cached and held like totmaps.

These walks read the whole smaps (``parse_smaps_mappings``), the expensive
kind whatever the engine's source: ``show_smaps`` (fs/proc/task_mmu.c) walks
every VMA's page tables under the mmap lock, as smaps_rollup does, and prints
~1 KiB per mapping besides. So they go through a cache of their own keyed
and invalidated as the totmaps cache (pid and start time; the memory
generation; max-age), under the same walk duty and the views' walk budget.
The duty is the process's, not the cache's (Engine.shares_duty): a process
whose totmaps walk still holds it (walked less than ``walk / duty`` ago) is
not walked for its mappings either; it gets its last mappings answer, or,
when it has none yet, is left out of this read (``NotDue``, counted in the
view) rather than walked beyond its duty. The other way round, a process a
files walk holds gets its last totmaps answer (Engine.resolve), and is walked
only for its first.
"""

from __future__ import annotations

import sys
from collections.abc import Callable

from ..errors import TotmapsError
from ..parser import parse_smaps_mappings
from ..proc import Process
from ._cache import Budget, Cache, Key
from ._engine import Checked, Engine, Totmaps


class NotDue(TotmapsError):
    """The process was walked too recently for its duty and has no mappings answer yet: left out, counted."""


# What files keeps per key (kB), in this order: a cache of thousands of processes
# holds these five numbers a key, not the ~20 fields smaps prints for it.
FILE_SUMS = ("Rss", "Pss", "USS", "Swap", "SwapPss")
FileSums = tuple[int, int, int, int, int]


class Mapped(Totmaps):
    """A totmaps answer that also has, per mapping key, its FILE_SUMS (``fields`` is the sum of all fields)."""

    __slots__ = ("by_key",)

    def __init__(self, parsed: dict[str, dict[str, int]], at: float, walk: float) -> None:
        fields: dict[str, int] = {}
        by_key: dict[str, FileSums] = {}
        for key, sums in parsed.items():
            for name, value in sums.items():
                fields[name] = fields.get(name, 0) + value
            g = sums.get
            uss = g("Private_Clean", 0) + g("Private_Dirty", 0) + g("Private_Hugetlb", 0)  # views.USS_PARTS
            # Interned: the same library's path, in every process's answer, is one string.
            by_key[sys.intern(key)] = (g("Rss", 0), g("Pss", 0), uss, g("Swap", 0), g("SwapPss", 0))
        super().__init__(fields, at=at, walk=walk)
        self.by_key = by_key


_EMPTY = Mapped({}, 0.0, 0.0)


class FileWalks:
    """The mappings of processes checked by ``engine``; thread-safe."""

    def __init__(
        self,
        engine: Engine,
        parse: Callable[[bytes | memoryview], dict[str, dict[str, int]]] = parse_smaps_mappings,
    ) -> None:
        self.engine = engine
        self._parse = parse
        self.cache: Cache[Mapped] = Cache(
            engine.max_age, duty=engine.duty, clock=engine.clock, capacity=engine.cache.capacity
        )
        self.not_due = 0  # reads left out for the duty (see NotDue); unsynchronized, a statistic
        engine.shares_duty(self.cache)  # and a files walk holds the process's totmaps for its duty

    def resolve(
        self, checked: Checked, *, patience: float | None = None, budget: Budget | None = None, strict: bool = False
    ) -> Mapped:
        """The process's mappings: cached, held, or walked now, as Engine.resolve.

        ``strict`` (a whole-system pass): a process not due has its last
        answer or raises NotDue (see the module docstring); else (one
        process's file, asked for by name) its first answer is walked
        whatever the duty, as Engine.resolve walks a first totmaps.
        """
        key = checked.key
        if key is None:
            return _EMPTY
        if self.engine.held_elsewhere(key, self.cache):
            held = self.cache.lookup(key, checked.signature) or self.cache.last(key)
            if held is None and strict:
                self.not_due += 1
                raise NotDue(f"process {key[0]}: walked less than its walk duty allows ago")
            if held is not None:
                return held
        return self.cache.get_or_compute(
            key, checked.signature, lambda: self._compute(checked, key), patience=patience, budget=budget
        )

    def _compute(self, checked: Checked, key: Key) -> tuple[Mapped, bool, float]:
        by_key, started, walk, keep = self.engine.walked(checked.proc, key, self._read)
        return Mapped(by_key, started, walk), keep, walk

    def _read(self, proc: Process) -> tuple[dict[str, dict[str, int]], bool]:
        """The process's smaps summed per mapping key, and whether the text was empty (parsed in the pooled buffer)."""
        with proc.memory_view() as raw:
            return self._parse(raw), not raw
