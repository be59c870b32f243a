"""The engine: a process's totmaps, access-checked, cached per (pid, start time) by mm generation.

The cache guarantee (also in README.md): an answer is served from the cache only
when it was computed for the same process (pid *and* start time, so a reused
pid never sees its predecessor's numbers), no more than ``max_age`` seconds ago,
and the process's *memory generation* is unchanged since. The generation is the
process's minor and major fault counts from /proc/<pid>/stat plus the memory
counter block of /proc/<pid>/status (VmSize, VmLck, VmRSS, RssAnon, RssFile,
RssShmem, VmSwap, VmPTE, …). Mapping, unmapping, mlock, faulting pages in and
losing them to reclaim or swap all move one of these, so a process that
touches new memory shows it on the very next read. What they do not see is
other processes changing how a shared page is split (Pss) or the referenced
bit ageing: those are bounded by ``max_age``.

Start times have the resolution of a clock tick (10 ms), and a pid can be
handed out again within one (a small pid namespace, ns_last_pid): a successor
running the same program then has the same key *and* often the same
generation. So an answer is kept, or shared with concurrent readers, only when
it was computed after the process's start tick had ended: its successor, if
any, started later and has another key.
"""

from __future__ import annotations

import os
import threading
import time
from collections import OrderedDict
from dataclasses import dataclass, field
from enum import Enum
from typing import Callable, Iterable, Mapping

from . import _access
from ._access import Caller
from ._errors import Busy, NoSuchProcess, UserError
from ._parser import format_totmaps, parse_smaps
from ._procfs import Process, ProcReader, Status


class Source(str, Enum):
    AUTO = "auto"
    ROLLUP = "rollup"
    SMAPS = "smaps"


Key = tuple[int, int]  # (pid, start time in clock ticks)
Signature = tuple[int, int, bytes]  # (minflt, majflt, status memory block)

# /proc/<pid>/stat gives start times in clock ticks (USER_HZ) of CLOCK_BOOTTIME.
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def boot_tick() -> int:
    """Now, in the clock ticks since boot that /proc/<pid>/stat counts start times in."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // _TICK_NS


@dataclass(slots=True)
class Totmaps:
    """One computed answer: the summed fields and their file text."""

    fields: dict[str, int]
    text: bytes


@dataclass(slots=True)
class _Entry:
    signature: Signature
    at: float
    value: Totmaps


@dataclass(slots=True)
class _Flight:
    """A computation in progress that concurrent readers of the same state may join."""

    signature: Signature
    done: threading.Event = field(default_factory=threading.Event)
    value: Totmaps | None = None
    error: BaseException | None = None
    settled: bool = False  # computed after the start tick: surely this process's (see _compute)
    started: float = 0.0  # on the engine's clock


@dataclass(slots=True)
class Counters:
    hits: int = 0
    misses: int = 0
    joined: int = 0


class Engine:
    """Computes totmaps; thread-safe, meant to be called from worker threads."""

    def __init__(
        self,
        reader: ProcReader | None = None,
        source: Source | str = Source.AUTO,
        max_age: float = 1.0,
        *,
        clock: Callable[[], float] = time.monotonic,
        tick: Callable[[], int] = boot_tick,
        capacity: int = 8192,
        parse: Callable[[bytes | memoryview], dict[str, int]] = parse_smaps,
    ) -> None:
        self.reader = reader or ProcReader()
        source = Source(source)
        has_rollup = self.reader.has_rollup()
        if source is Source.ROLLUP and not has_rollup:
            raise UserError(f"--source rollup: {self.reader.root}/self/smaps_rollup does not exist "
                            "(the kernel is older than 4.14); use --source smaps or auto")
        self.rollup = has_rollup if source is Source.AUTO else source is Source.ROLLUP
        self.max_age = max_age
        self.capacity = capacity
        self.counters = Counters()
        self._clock = clock
        self._tick = tick
        self._parse = parse
        self._lock = threading.Lock()
        self._cache: OrderedDict[Key, _Entry] = OrderedDict()
        self._flights: dict[Key, _Flight] = {}

    @property
    def source(self) -> Source:
        return Source.ROLLUP if self.rollup else Source.SMAPS

    def totmaps(self, pid: int, caller: Caller | None = None) -> Totmaps:
        """The totmaps of ``pid``; ``caller`` None means "as the daemon itself" (no check)."""
        with self.reader.open(pid) as proc:
            return self.totmaps_of(proc, caller)[1]

    def totmaps_of(
        self, proc: Process, caller: Caller | None = None, *, patience: float | None = None
    ) -> tuple[Status, Totmaps]:
        """As ``totmaps``, for a process already pinned, with the status it was checked against.

        For the whole-system views: they pin each process once (to read its
        cgroup first) and need its name and uid, which this status already holds.
        With ``patience``, a process whose memory another reader has been reading
        for that long raises Busy instead of being waited for: a view must not
        hang on the one process whose mmap lock is held (fs/proc/task_mmu.c
        takes it for every smaps read), only the reader that met it first does.
        """
        status = proc.status()
        if not status.memory:
            # No address space (kernel thread, zombie): anyone may read it, as in
            # /proc (may_read), and it is empty. Nothing more is read, so a kernel
            # thread that execs a usermode helper right now (call_usermodehelper)
            # cannot show its new memory to a caller never checked against it.
            return status, Totmaps({}, b"")
        # A caller with CAP_SYS_PTRACE may read anything (may_read): skipping
        # the owner's stat for it saves a syscall per process in the views.
        if caller is not None and not caller.has_ptrace_cap:
            st = proc.smaps_stat()
            _access.check(caller, status, st.st_uid, st.st_gid)
        stat = proc.stat()
        key = (proc.pid, stat.starttime)
        signature = (stat.minflt, stat.majflt, status.memory)
        return status, self._cached(key, signature, proc, patience)

    def _cached(self, key: Key, signature: Signature, proc: Process, patience: float | None = None) -> Totmaps:
        now = self._clock()
        with self._lock:
            entry = self._cache.get(key)
            if entry is not None and entry.signature == signature and now - entry.at < self.max_age:
                self.counters.hits += 1
                return entry.value
            flight = self._flights.get(key)
            if flight is not None and patience is not None and now - flight.started >= patience:
                raise Busy(key[0])  # whatever its signature: a new read would block the same way
            if flight is not None and flight.signature == signature:
                self.counters.joined += 1
                owner = False
            else:
                flight = self._flights[key] = _Flight(signature, started=now)
                self.counters.misses += 1
                owner = True
        if not owner:
            if not flight.done.wait(None if patience is None else flight.started + patience - now):
                raise Busy(key[0])
            if flight.value is not None and flight.settled:
                return flight.value
            # A failure, or an answer that may be a same-tick predecessor's:
            # compute for the process this reader pinned.
            return self._compute(proc, key)[0]
        try:
            flight.value, flight.settled = self._compute(proc, key)
        except BaseException as exc:
            flight.error = exc
            raise
        finally:
            with self._lock:
                if self._flights.get(key) is flight:
                    del self._flights[key]
                if flight.value is not None and flight.settled and self.max_age > 0:
                    self._store(key, _Entry(signature, now, flight.value))
            flight.done.set()
        return flight.value

    def _compute(self, proc: Process, key: Key) -> tuple[Totmaps, bool]:
        """The answer, and whether the process was still alive after its start tick ended.

        If so, a process that gets its pid later starts in a later tick and has
        another key; if not, the answer must not be kept or shared.
        """
        tick = self._tick()  # read before the liveness check below, which then proves it
        # The text is parsed where it was read (a pooled buffer): no copy of it.
        with proc.memory_view(self.rollup) as raw:
            # The dirfd pins the task, so this stat answers for the same process or
            # fails: an empty read from a process that exited meanwhile becomes
            # ENOENT, while a zombie (still there, no mm) keeps its empty file.
            if proc.stat().starttime != key[1]:
                raise NoSuchProcess(key[0])
            fields = self._parse(raw)
        return Totmaps(fields, format_totmaps(fields)), tick > key[1]

    def _store(self, key: Key, entry: _Entry) -> None:
        # Caller holds the lock. Oldest first: expired entries can never be
        # served again, so they go before the capacity bound bites.
        self._cache[key] = entry
        self._cache.move_to_end(key)
        horizon = entry.at - self.max_age
        while self._cache:
            oldest = next(iter(self._cache.values()))
            if oldest.at >= horizon and len(self._cache) <= self.capacity:
                break
            self._cache.popitem(last=False)

    def forget_dead(self, live: Iterable[int]) -> None:
        """Drop entries of pids that are no longer listed (called when the root is listed)."""
        alive = set(live)
        with self._lock:
            for key in [k for k in self._cache if k[0] not in alive]:
                del self._cache[key]

    def __len__(self) -> int:
        return len(self._cache)


def totmaps(pid: int, source: Source | str = Source.AUTO, proc_root: str = "/proc") -> Mapping[str, int]:
    """A process's smaps summed, without FUSE: ``totmapsfs.totmaps(os.getpid())["Pss"]``."""
    return Engine(ProcReader(proc_root), source, max_age=0).totmaps(pid).fields
