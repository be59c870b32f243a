"""The engine: a process's totmaps, access-checked, cached per (pid, start time) by memory generation.

The generation (also in docs/design.md, "The cache") is the process's minor and major fault
counts from /proc/<pid>/stat plus the memory counter lines of
/proc/<pid>/status (VmPeak, VmSize, VmLck, VmRSS, RssAnon, RssFile, RssShmem,
VmSwap, VmPTE, ..., HugetlbPages: the Vm*, Rss* and HugetlbPages lines by
name, see proc._text). Mapping, unmapping, mlock, faulting pages in and losing them to
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

import math
import os
import time
import weakref
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from enum import StrEnum
from typing import Any, TypeVar

from ..errors import NoSuchProcess, TotmapsError
from ..parser import MAX_FIELDS, U64_MAX, SmapsParseError, format_totmaps, parse_smaps
from ..proc import Access, Caller, Process, ProcReader, Stat, Status
from ._cache import DEFAULT_CAPACITY, Budget, Cache, Counters, Key

DEFAULT_MAX_AGE = 1.0  # seconds
# The walk duty (see _cache): the share of the time any one process may
# be walked. 5%: a process whose smaps take 15 ms to walk is walked at most
# every 0.3 s, one of 4.5 s (a 200 GB process) every 90 s.
DEFAULT_DUTY = 0.05
# Who is exempt from the duty: a *light* process, one whose page tables (VmPTE
# in status: mm_pgtables_bytes, fs/proc/task_mmu.c task_mem) are at most this
# many kB. The walk (walk_page_vma, mm/pagewalk.c) visits every page table
# entry: its cost to the target grows with them, whatever the machine's speed.
# 256 kB map at most 128 MiB of touched pages (~1 ms of walk here, 2026); a
# Python process has ~80 kB, a 1.5 GiB one 3 MB.
LIGHT_PAGE_TABLES = 256
# ... and whose walk took less than this many times a walk of our own process
# (a small one) on the same clock: a light process with very many mappings
# (120,000 unpopulated VMAs: 72 kB of page tables, a 17 ms walk) is held all the
# same. A ratio, not a time: a slow or loaded machine slows both alike.
HEAVY_FACTOR = 20
# "K": count every walk as K times its CPU time, as a machine K times slower
# would (an emulator: ~15). For the tests of the rules above on a real mount;
# not for users.
SLOWDOWN_ENV = "TOTMAPSFS_WALK_SLOWDOWN"

Signature = tuple[int, int, bytes]  # (minflt, majflt, status memory counters)

# /proc/<pid>/stat gives start times in clock ticks (USER_HZ) of CLOCK_BOOTTIME.
_TICK_NS = 1_000_000_000 // os.sysconf("SC_CLK_TCK")

R = TypeVar("R")


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


class Totmaps:
    """One computed answer: the summed fields, their file text (formatted when first asked for), when and how long.

    The whole-system views need only the fields: formatting every process's
    text for them would be wasted. ``at`` is when the walk began on the
    engine's clock, ``walk`` how long it took: a view shows the answer's age
    and the walk's cost.
    """

    __slots__ = ("_text", "at", "fields", "walk")

    def __init__(self, fields: dict[str, int], text: bytes | None = None, at: float = 0.0, walk: float = 0.0) -> None:
        self.fields = fields
        self._text = text
        self.at = at
        self.walk = walk

    @property
    def text(self) -> bytes:
        if self._text is None:
            self._text = format_totmaps(self.fields)  # two threads may both do it: the same bytes
        return self._text


_EMPTY = Totmaps({}, b"")


@dataclass(slots=True)
class Checked:
    """A pinned process as stat and status show it, checked against its reader: what the cache is asked with.

    Made by Engine.check (which reads stat and status: Process.probe) or
    Engine.checked (for stat and status read already).
    """

    proc: Process
    status: Status
    key: Key | None  # (pid, start time); None: no address space, the answer is empty
    signature: Signature | None  # the memory generation (see the module docstring)
    light: bool = False  # small page tables: exempt from the walk duty (LIGHT_PAGE_TABLES)


def page_tables(counters: bytes) -> int | None:
    """VmPTE, in kB, from a status memory counters block; None when it has no such line."""
    at = counters.find(b"\nVmPTE:")
    if at < 0:
        return None
    end = counters.find(b"kB", at)
    try:
        return int(counters[at + 7 : end if end >= 0 else len(counters)])
    except ValueError:
        return None


class Engine:
    """Computes totmaps; thread-safe, meant to be called from worker threads."""

    def __init__(
        self,
        reader: ProcReader | None = None,
        source: Source | str = Source.AUTO,
        max_age: float = DEFAULT_MAX_AGE,
        *,
        duty: float = DEFAULT_DUTY,
        clock: Callable[[], float] = time.monotonic,
        tick: Callable[[], int] = boot_tick,
        capacity: int = DEFAULT_CAPACITY,
        parse: Callable[[bytes | memoryview], dict[str, int]] = parse_smaps,
        access: Access | None = None,
        light_page_tables: int = LIGHT_PAGE_TABLES,
        reference: int | None = None,
    ) -> None:
        """``reference``: the pid of a small process whose walk HEAVY_FACTOR multiplies; ours by default."""
        self.reader = reader or ProcReader()
        self.access = access or Access(self.reader)
        self.source = choose_source(source, self.reader)
        self.cache: Cache[Totmaps] = Cache(max_age, duty=duty, clock=clock, capacity=capacity)
        self.clock = clock
        # What a walk costs: the walking thread's CPU time (kernel time
        # included), so that a walk preempted on a loaded host is not taken for
        # a big one; the injected clock when one is given (the tests move it).
        self._walk_clock: Callable[[], float] = time.thread_time if clock is time.monotonic else clock
        slowdown = float(os.environ.get(SLOWDOWN_ENV, "1"))
        if slowdown != 1 and clock is time.monotonic:
            self._walk_clock = lambda: time.thread_time() * slowdown
        self._tick = tick
        self._parse = parse
        # The caches of other kinds of walk of the same processes (FileWalks):
        # the duty is the process's, so a walk kept in any of them holds it.
        self._walk_caches: weakref.WeakSet[Cache[Any]] = weakref.WeakSet([self.cache])
        self.light_page_tables = light_page_tables
        self._reference = reference
        self._calibrated = False  # cache.heavy set from a walk of our own process (see HEAVY_FACTOR)

    @property
    def max_age(self) -> float:
        return self.cache.max_age

    @property
    def duty(self) -> float:
        return self.cache.duty

    @property
    def counters(self) -> Counters:
        return self.cache.counters

    @property
    def always_walks(self) -> bool:
        """No answer can ever come from the cache: nothing kept for max-age, nor held for the duty."""
        return self.cache.max_age == 0 and self.cache.duty >= 1

    def totmaps(self, pid: int, caller: Caller | None = None) -> Totmaps:
        """The totmaps of ``pid``; ``caller`` None means "as the daemon itself" (no check)."""
        with self.reader.open(pid) as proc:
            return self.totmaps_of(proc, caller)[1]

    def totmaps_of(
        self,
        proc: Process,
        caller: Caller | None = None,
        *,
        patience: float | None = None,
        budget: Budget | None = None,
    ) -> tuple[Status, Totmaps]:
        """As ``totmaps``, for a process already pinned, with the status it was checked against.

        For the whole-system views: they pin each process once (to read its
        cgroup first) and need its name and uid, which this status already holds.
        With ``patience``, see ``resolve``.
        """
        checked = self.check(proc, caller)
        return checked.status, self.resolve(checked, patience=patience, budget=budget)

    def check(self, proc: Process, caller: Caller | None = None) -> Checked:
        """Who the process is and what state its memory is in, checked against ``caller``.

        Reads stat and status only, which never wait on the target (see
        Process.probe): this may run on the event loop, and a hit (``cached``)
        then needs nothing more. AccessDenied when the caller may not read it.
        """
        stat, status = proc.probe()
        return self.checked(proc, stat, status, caller)

    def checked(self, proc: Process, stat: Stat, status: Status, caller: Caller | None = None) -> Checked:
        """``check`` for stat and status read already (a view reads them for many processes at once)."""
        if not status.mm_counters:
            # No address space (kernel thread, zombie): anyone may read it, as in
            # /proc (may_read), and it is empty. Nothing of its memory is read,
            # so a kernel thread that execs a usermode helper right now
            # (call_usermodehelper) cannot show its new memory to a caller never
            # checked against it.
            return Checked(proc, status, None, None)
        # A caller with CAP_SYS_PTRACE over our user namespace may read
        # anything (Access.may_read): no call at all for it, in the views too.
        if caller is not None and not caller.all_access:
            self.access.check(caller, status, proc)
        tables = page_tables(status.mm_counters)
        light = tables is not None and tables <= self.light_page_tables
        return Checked(proc, status, (proc.pid, stat.starttime), (stat.minflt, stat.majflt, status.mm_counters), light)

    def cached(self, checked: Checked) -> Totmaps | None:
        """The answer if the cache has it for the state checked or holds it (or there is nothing to read); never waits.

        Held includes the duty of the process's other walks (``held_elsewhere``).
        """
        key = checked.key
        if key is None:
            return _EMPTY
        hit = self.cache.lookup(key, checked.signature)
        if hit is None and self.held_elsewhere(key, self.cache):
            return self.cache.last(key)
        return hit

    def shares_duty(self, cache: Cache[Any]) -> None:
        """Count the walks kept in ``cache`` (another kind of walk of these processes) in every process's duty."""
        self._walk_caches.add(cache)

    def held_elsewhere(self, key: Key, cache: Cache[Any]) -> bool:
        """Whether a walk of the process kept in another cache than ``cache`` still holds it for the duty."""
        if len(self._walk_caches) < 2:
            return False  # no other kind of walk (no files view): the common case, without a call
        return any(other.holds(key) for other in list(self._walk_caches) if other is not cache)

    def resolve(self, checked: Checked, *, patience: float | None = None, budget: Budget | None = None) -> Totmaps:
        """The answer for a checked process: cached, held, shared with a reader computing it, or computed now.

        May wait on the target's mmap lock (fs/proc/task_mmu.c takes it for
        every smaps read): worker threads only. With ``patience``, a process
        whose memory another reader has been reading for that long raises Busy
        instead of being waited for: a view must not hang on the one process
        whose mmap lock is held, only the reader that met it first does.
        ``budget``: see WalkBudget. A process another kind of walk still holds
        for the duty (``held_elsewhere``: MOUNT/files) gets its last answer, as
        one this cache holds does; its first is walked whatever the duty.
        """
        key = checked.key
        if key is None:
            return _EMPTY
        if self.held_elsewhere(key, self.cache):  # a files walk holds it: its last answer, if it has one
            held = self.cache.lookup(key, checked.signature) or self.cache.last(key)
            if held is not None:
                return held
        proc = checked.proc
        if checked.light and not self._calibrated and self.cache.duty < 1:
            self._calibrate()
        return self.cache.get_or_compute(
            key,
            checked.signature,
            lambda: self._compute(proc, key),
            patience=patience,
            budget=budget,
            light=checked.light,
        )

    def _calibrate(self) -> None:
        """Set the cache's ``heavy`` walk: HEAVY_FACTOR times the median of three walks of our own (small) process.

        On the walks' own clock, so the ratio holds on any machine. Not our
        process in this procfs (a fake root), or a clock that did not move: no
        such bound (light targets are never held).
        """
        took = []
        clock = self._walk_clock
        try:
            with self.reader.open(self._reference or os.getpid()) as me:
                for _ in range(3):
                    begun = clock()
                    self._walk(me, parse_smaps)  # the parser's real cost, whatever one was injected
                    took.append(clock() - begun)
        except (OSError, TotmapsError):
            pass
        reference = sorted(took)[1] if len(took) == 3 else 0.0
        self.cache.heavy = HEAVY_FACTOR * reference if reference > 0 else math.inf
        self._calibrated = True  # two threads may both calibrate: alike

    def _compute(self, proc: Process, key: Key) -> tuple[Totmaps, bool, float]:
        """The answer, whether the process was still alive after its start tick ended, and the walk's cost.

        If alive, a process that gets its pid later starts in a later tick and
        has another key; if not, the answer must not be kept or shared. The
        cost is measured here only (``walked``): the cache's duty and budget
        count it, the views show it (Totmaps.walk).
        """
        fields, started, walk, keep = self.walked(proc, key, self._walk)
        return Totmaps(fields, at=started, walk=walk), keep, walk

    def walked(
        self, proc: Process, key: Key, read: Callable[[Process], tuple[R, bool]]
    ) -> tuple[R, float, float, bool]:
        """``read(proc)``'s result as one walk: when it began (engine clock), its cost, and whether it may be kept.

        ``read`` gives its result and whether the text it read was empty. The
        cost is the walk clock's (see __init__); the result may be kept when
        the process was alive after its start tick ended (module docstring).
        """
        tick = self._tick()  # read before the evidence of life below, which then proves it
        started, cpu = self.clock(), self._walk_clock()
        result, empty = read(proc)
        # Text read is the process's own (the dirfd pins the task) and proves it
        # alive after ``tick``. An empty read may be a zombie's (still there, no
        # mm: its file is empty) or a process that exited meanwhile: stat,
        # through the same dirfd, answers for that one task or fails (ENOENT).
        walk = self._walk_clock() - cpu
        if empty and proc.stat().starttime != key[1]:
            raise NoSuchProcess(key[0])
        return result, started, walk, tick > key[1]

    def _walk(
        self, proc: Process, parse: Callable[[bytes | memoryview], dict[str, int]] | None = None
    ) -> tuple[dict[str, int], bool]:
        """One read of the source, parsed: its fields, and whether the text was empty."""
        parse = parse or self._parse
        if self.source is Source.ROLLUP:
            text = proc.rollup()  # ~1 KiB: read whole, no pooled buffer
            return parse(text), not text
        # smaps is parsed as it is read, run by run of whole lines in one small
        # buffer (Process.memory_lines), and the runs' sums added: parse_smaps
        # sums line by line, so that is its answer for the whole text.
        totals: dict[str, int] = {}

        def add(lines: memoryview) -> None:
            for name, value in parse(lines).items():
                totals[name] = totals.get(name, 0) + value

        try:
            size = proc.memory_lines(add)
            if len(totals) <= MAX_FIELDS and all(value <= U64_MAX for value in totals.values()):
                return totals, not size
        except (SmapsParseError, OverflowError):
            pass
        # Past parse_smaps' bounds: the whole text, so that it raises its own
        # error with the line it is about (a text no kernel prints).
        with proc.memory_view() as raw:
            return parse(raw), not raw

    def forget_dead(self, live: Iterable[int]) -> None:
        """Drop entries of pids that are no longer listed (called when the root is listed)."""
        self.cache.forget_dead(live)

    def __len__(self) -> int:
        return len(self.cache)


def totmaps(pid: int, source: Source | str = Source.AUTO, proc_root: str = "/proc") -> Mapping[str, int]:
    """A process's smaps summed, without FUSE: ``totmapsfs.totmaps(os.getpid())["Pss"]``."""
    return Engine(ProcReader(proc_root), source, max_age=0).totmaps(pid).fields
