"""The engine: a process's totmaps, access-checked, cached per (pid, start time) by memory generation.

The generation (also in README.md) is the process's minor and major fault
counts from /proc/<pid>/stat plus the memory counter block of
/proc/<pid>/status (VmSize, VmLck, VmRSS, RssAnon, RssFile, RssShmem, VmSwap,
VmPTE, ...). Mapping, unmapping, mlock, faulting pages in and losing them to
reclaim or swap all move one of these, so a process that touches new memory
shows it on the very next read. What they do not see is other processes
changing how a shared page is split (Pss) or the referenced bit ageing: those
are bounded by ``max_age`` (see ``_cache``).

Start times have the resolution of a clock tick (10 ms), and a pid can be
handed out again within one (a small pid namespace, ns_last_pid): a successor
running the same program then has the same key *and* often the same
generation. So an answer is kept, or shared with concurrent readers, only when
it was computed after the process's start tick had ended: its successor, if
any, started later and has another key.
"""

from __future__ import annotations

import os
import time
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum

from ..errors import NoSuchProcess
from ..parser import format_totmaps, parse_smaps
from ..proc import Caller, Process, ProcReader, Status, check
from ._cache import DEFAULT_CAPACITY, Cache, Counters, Key

DEFAULT_MAX_AGE = 1.0  # seconds

Signature = tuple[int, int, bytes]  # (minflt, majflt, status memory counters)

# /proc/<pid>/stat gives start times in clock ticks (USER_HZ) of CLOCK_BOOTTIME.
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")


def boot_tick() -> int:
    """Now, in the clock ticks since boot that /proc/<pid>/stat counts start times in."""
    return time.clock_gettime_ns(time.CLOCK_BOOTTIME) // _TICK_NS


class Source(StrEnum):
    AUTO = "auto"
    ROLLUP = "rollup"
    SMAPS = "smaps"


class SourceUnavailable(Exception):
    """The kernel has no such source: smaps_rollup came with Linux 4.14."""


def choose_source(requested: Source | str, reader: ProcReader) -> Source:
    """The source to read, ROLLUP or SMAPS: AUTO picks rollup where the kernel has it."""
    requested = Source(requested)
    has_rollup = reader.has_rollup()
    if requested is Source.AUTO:
        return Source.ROLLUP if has_rollup else Source.SMAPS
    if requested is Source.ROLLUP and not has_rollup:
        raise SourceUnavailable(f"{reader.root}/self/smaps_rollup does not exist (the kernel is older than 4.14)")
    return requested


@dataclass(slots=True)
class Totmaps:
    """One computed answer: the summed fields and their file text."""

    fields: dict[str, int]
    text: bytes


_EMPTY = Totmaps({}, b"")


class Engine:
    """Computes totmaps; thread-safe, meant to be called from worker threads."""

    def __init__(
        self,
        reader: ProcReader | None = None,
        source: Source | str = Source.AUTO,
        max_age: float = DEFAULT_MAX_AGE,
        *,
        clock: Callable[[], float] = time.monotonic,
        tick: Callable[[], int] = boot_tick,
        capacity: int = DEFAULT_CAPACITY,
        parse: Callable[[bytes | memoryview], dict[str, int]] = parse_smaps,
    ) -> None:
        self.reader = reader or ProcReader()
        self.source = choose_source(source, self.reader)
        self.cache: Cache[Totmaps] = Cache(max_age, clock=clock, capacity=capacity)
        self._tick = tick
        self._parse = parse

    @property
    def max_age(self) -> float:
        return self.cache.max_age

    @property
    def counters(self) -> Counters:
        return self.cache.counters

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
        if not status.mm_counters:
            # No address space (kernel thread, zombie): anyone may read it, as in
            # /proc (may_read), and it is empty. Nothing more is read, so a kernel
            # thread that execs a usermode helper right now (call_usermodehelper)
            # cannot show its new memory to a caller never checked against it.
            return status, _EMPTY
        # A caller with CAP_SYS_PTRACE may read anything (may_read): skipping
        # the owner's stat for it saves a syscall per process in the views.
        if caller is not None and not caller.has_ptrace_cap:
            st = proc.smaps_stat()
            check(caller, status, st.st_uid, st.st_gid)
        stat = proc.stat()
        key = (proc.pid, stat.starttime)
        signature: Signature = (stat.minflt, stat.majflt, status.mm_counters)
        return status, self.cache.get_or_compute(key, signature, lambda: self._compute(proc, key), patience=patience)

    def _compute(self, proc: Process, key: Key) -> tuple[Totmaps, bool]:
        """The answer, and whether the process was still alive after its start tick ended.

        If so, a process that gets its pid later starts in a later tick and has
        another key; if not, the answer must not be kept or shared.
        """
        tick = self._tick()  # read before the liveness check below, which then proves it
        # The text is parsed where it was read (a pooled buffer): no copy of it.
        with proc.memory_view(self.source is Source.ROLLUP) as raw:
            # The dirfd pins the task, so this stat answers for the same process or
            # fails: an empty read from a process that exited meanwhile becomes
            # ENOENT, while a zombie (still there, no mm) keeps its empty file.
            if proc.stat().starttime != key[1]:
                raise NoSuchProcess(key[0])
            fields = self._parse(raw)
        return Totmaps(fields, format_totmaps(fields)), tick > key[1]

    def forget_dead(self, live: Iterable[int]) -> None:
        """Drop entries of pids that are no longer listed (called when the root is listed)."""
        self.cache.forget_dead(live)

    def __len__(self) -> int:
        return len(self.cache)


def totmaps(pid: int, source: Source | str = Source.AUTO, proc_root: str = "/proc") -> Mapping[str, int]:
    """A process's smaps summed, without FUSE: ``totmapsfs.totmaps(os.getpid())["Pss"]``."""
    return Engine(ProcReader(proc_root), source, max_age=0).totmaps(pid).fields
