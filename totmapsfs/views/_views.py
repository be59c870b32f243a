"""Whole-system views over the engine: one pass over what a caller may read, summed, tabled, by cgroup, as metrics."""

from __future__ import annotations

import functools
import logging
import os
import threading
from collections.abc import Callable, Collection, Mapping, Sequence
from typing import Any, Generic, NamedTuple, TypeVar

from ..engine import Counters, Engine, Mapped, NotDue, Totmaps, WalkBudget
from ..errors import AccessDenied, Busy, NoSuchEntry, SourceError, TotmapsError
from ..parser import format_totmaps
from ..proc import ROOT, Caller, Cgroup2, PidView, rebase, unified_path, within
from ._metrics import Family, MetricsOptions, render
from ._names import program_name
from ._snapshot import Row, Snapshot, WalkStats, total
from ._summary import format_summary

# A pass over many processes is split among this many threads: the /proc
# reads (smaps_rollup above all, when the cache is cold) release the GIL and
# run on other CPUs meanwhile.
PASS_THREADS = min(4, os.cpu_count() or 1)
_PER_THREAD = 64  # fewer processes than this per thread is not worth a thread
# Processes probed in one go (proc.ProcReader.probe_many: one release of the
# GIL for all their reads); their /proc directories stay open meanwhile.
_CHUNK = 64
# A process whose smaps read has been under way this long (seconds) is left out
# of a view rather than waited for: its mmap lock is held (a fault stuck on a
# dead NFS server, a huge munmap), and every summary or metrics poll would
# otherwise hang on it, holding a worker thread each, as `ps` hangs on
# /proc/<pid>/cmdline. Only the read that met it first waits, as /proc would.
PATIENCE = 1.0

log = logging.getLogger("totmapsfs")


class _Watched:
    """A slice's view of the walk budget: whether the last walk it asked for was refused."""

    __slots__ = ("budget", "denied")

    def __init__(self, budget: WalkBudget) -> None:
        self.budget = budget
        self.denied = False

    def allow(self) -> bool:
        allowed = self.budget.allow()
        self.denied = self.denied or not allowed
        return allowed

    def spend(self, seconds: float) -> None:
        self.budget.spend(seconds)


S = TypeVar("S")
T = TypeVar("T")
Resolve = Callable[..., Totmaps]  # (checked, *, patience, budget): Engine.resolve, or FileWalks.resolve


class _Once(Generic[T]):
    """``fn()``, called by the first caller only, the others waiting for it and given its value (or its error)."""

    def __init__(self, fn: Callable[[], T]) -> None:
        self._fn = fn
        self._lock = threading.Lock()
        self._value: tuple[T] | None = None
        self._error: Exception | None = None

    def __call__(self) -> T:
        with self._lock:
            if self._value is None and self._error is None:
                try:
                    self._value = (self._fn(),)
                except Exception as exc:
                    self._error = exc  # not called again: fn may have let go of what it needed (Views._order)
            if self._error is not None:
                raise self._error
            assert self._value is not None
            return self._value[0]


class Plan(NamedTuple, Generic[S, T]):
    """Work that may wait on a target's mmap lock: slices (worker threads, in parallel), then ``finish`` on them.

    The FUSE adapter runs a one-slice plan, finish included, as one job, and
    a plan of several slices as that many jobs and then one for ``finish``: a
    view's finish merges, sums and renders, pure Python over a thousand rows,
    also worth keeping off the event loop.
    """

    slices: Sequence[Callable[[], S]]
    finish: Callable[[Sequence[S]], T]

    def run(self) -> T:
        """All of it in the calling thread, one slice after the other."""
        return self.finish([part() for part in self.slices])


class Views:
    """The whole-system files, each computed from one pass over the processes the caller may read.

    A pass pins each process once, reads its cgroup when the view needs it,
    then asks the engine, which checks access with the one Caller identified
    for the read and serves unchanged processes from its cache. Processes that
    exit meanwhile, or that the caller may not read, are left out, as are those
    with no address space (kernel threads, zombies), which have nothing to add.
    So are, with a warning, processes the kernel fails to read (EIO...) and
    those another reader has been reading for PATIENCE seconds: one bad
    process must not take the whole view down or hang it.
    """

    def __init__(
        self,
        engine: Engine,
        cgroups: Cgroup2,
        metrics: MetricsOptions | None = None,
        budget: WalkBudget | None = None,
        layout: Callable[[Mapping[str, int]], Mapping[str, int]] | None = None,
    ) -> None:
        self.engine = engine
        self.layout = layout  # None: every field, in the kernel's order (see _names.LAYOUTS)
        self.cgroups = cgroups
        self.metrics_options = metrics or MetricsOptions()
        self.budget = budget  # None: walks unbounded across processes (the per-process duty still holds)
        # Written by a pass's finish in a worker thread, read by the next plan:
        # passes of several callers may finish at once, so under ``_lock``.
        self._lock = threading.Lock()
        self._cursor = 0  # the pid the next pass begins with: where the budget last ran out
        self._processes: int | None = None  # how many the last pass was over (None: no pass yet)
        self._cold = True  # the last pass mostly computed rather than hit (see threads_for)
        self._names: tuple[str, ...] = ()
        self._warned: set[int] = set()  # pids already logged as left out: one line each, not one per poll

    def field_names(self) -> tuple[str, ...]:
        """The fields this kernel reports, learnt from our own process: a sum over no process shows them at 0."""
        if not self._names:
            try:
                self._names = tuple(self.engine.totmaps(os.getpid()).fields)
            except NoSuchEntry:
                pass  # a --proc root without us in it: such sums stay empty
        return self._names

    def threads_for(self, processes: int) -> int:
        """How many threads the next pass over ``processes`` processes will use.

        Threads pay off when the pass reads smaps (kernel time, GIL released,
        ~5x the cost of a cache hit); a pass served from the cache is Python
        work under the GIL, where extra threads only add switching. The last
        pass that asked the engine anything tells which the next will be.
        """
        with self._lock:
            cold = self._cold
        return max(1, min(PASS_THREADS, processes // _PER_THREAD)) if cold else 1

    def plan(
        self,
        caller: Caller | None,
        finish: Callable[[Snapshot], T],
        *,
        cgroups: bool = False,
        keep: Callable[[str | None], bool] | None = None,
        top: str | None = ROOT,
        resolve: Resolve | None = None,
        programs: bool = False,
        only: Collection[int] | None = None,
    ) -> Plan[Snapshot, T]:
        """One pass over every process ``caller`` may read (None: every process), as slices and a finish.

        The processes are those of the caller's pid namespace, and the rows
        number them as it does. ``keep`` sees the process's cgroup path (in
        the mirrored hierarchy; None when outside it) before the engine is
        asked, so a cgroup's view never computes the memory of processes
        outside it; the rows hold that path as a cgroup namespace beginning at
        ``top`` names it (None: no cgroup). The slices may run in parallel (the
        FUSE adapter runs them in its worker pool); ``finish`` gets their rows
        merged. Slices are interleaved, so that each gets as many big processes.
        ``resolve`` replaces Engine.resolve (``files`` walks mappings).
        ``programs``: the rows say what each process runs; ``only``: the pass
        is over these of our pids alone (a process tree).
        """
        access = self.engine.access
        view = access.pids.own if caller is None else caller.pids
        # Which processes, in the caller's numbers, is worked out by the first
        # slice to run, in a worker: it lists /proc and, for a caller in another
        # pid namespace, translates every pid (on a kernel without the nsfs
        # ioctls, a read of each one's status): never on the event loop. The
        # caller's pid namespace fd is closed once the plan is made (the tree's
        # with-blocks), so the plan translates through a copy of its view of its
        # own, which that slice closes once it is done with it.
        order = _Once(functools.partial(self._order, None if view is None else view.copy(), only))
        want_cgroup = cgroups or keep is not None
        with self._lock:
            processes = self._processes
        n = PASS_THREADS if processes is None else self.threads_for(processes)
        counters = self.engine.counters
        before = (counters.misses, counters.hits + counters.joined)
        uids = None if caller is None else access.uids_for(caller)
        resolve = resolve or self.engine.resolve
        slices = [
            functools.partial(self._slice, order, i, n, caller, want_cgroup, keep, top, uids, resolve, programs)
            for i in range(n)
        ]

        def merged(parts: Sequence[Snapshot]) -> T:
            rows = Snapshot()
            rows.numeric_users = uids is not None
            order_made = order()  # made by the slices already
            rows.visible = [(host, shown) for _, host, shown in order_made]
            for part in parts:
                rows.extend_from(part)
            # See threads_for: whether this pass mostly computed.
            misses, served = counters.misses - before[0], counters.hits + counters.joined - before[1]
            with self._lock:
                if rows.deferred_at is not None:
                    self._cursor = order_made[rows.deferred_at][1]
                if misses or served:
                    self._cold = misses * 4 > served
            # The walk counters are the whole host's reading: not for a caller
            # in other namespaces (they would tell it of other tenants' reads).
            if caller is None or (caller.user_ns == access.own_user_ns and caller.pids is access.pids.own):
                rows.stats = self._stats(counters)
            return finish(rows)

        return Plan(slices, merged)

    def _order(self, view: PidView | None, only: Collection[int] | None = None) -> list[tuple[int, int, int]]:
        """(position in the pass, our pid, the caller's pid) of every process ``view`` holds, in pass order.

        ``only``: those of our pids alone (a process tree). Closes ``view``
        (the plan's copy of the caller's): nothing else uses it.
        """
        try:
            pids = self.engine.access.pids.visible(view, self.engine.reader.pids())
        finally:
            if view is not None:
                view.close()
        if only is not None:
            pids = [pair for pair in pids if pair[0] in only]
        with self._lock:
            if only is None:  # what the next whole-system pass sizes its threads by
                self._processes = len(pids)
            cursor = self._cursor
        # Begin where the budget ran out last time (Snapshot.deferred_at), so
        # that under a spent budget every process gets its turn at a walk.
        start = next((i for i, (host, _) in enumerate(pids) if host >= cursor), 0)
        return [(i, host, shown) for i, (host, shown) in enumerate(pids[start:] + pids[:start])]

    def _slice(self, order: _Once[list[tuple[int, int, int]]], i: int, n: int, *args: Any) -> Snapshot:
        """Slice ``i`` of ``n`` of a pass: every ``n``-th process of its order, from the ``i``-th."""
        return self._rows(order()[i::n], *args)

    def _stats(self, counters: Counters) -> WalkStats:
        return WalkStats(
            self.engine.source.value,
            counters.walks,
            counters.walk_seconds,
            counters.held_not_due,
            counters.held_walk_in_flight,
            counters.held_budget,
        )

    def _rows(
        self,
        pids: Sequence[tuple[int, int, int]],
        caller: Caller | None,
        want_cgroup: bool,
        keep: Callable[[str | None], bool] | None,
        top: str | None,
        uids: Callable[[int], int] | None = None,
        resolve: Resolve | None = None,
        programs: bool = False,
    ) -> Snapshot:
        """The rows of (position in the pass, our pid, the caller's pid) ``pids``; ``uids`` renumbers uids."""
        engine, relative = self.engine, self.cgroups.relative
        resolve = resolve or engine.resolve
        budget = None if self.budget is None else _Watched(self.budget)
        rows = Snapshot()
        now = engine.clock()
        for at in range(0, len(pids), _CHUNK):
            chunk = pids[at : at + _CHUNK]
            probed = engine.reader.probe_many([host for _, host, _ in chunk], cgroup=want_cgroup)
            try:
                for (position, pid, shown), item in zip(chunk, probed, strict=True):
                    try:
                        if isinstance(item, TotmapsError):
                            raise item
                        proc, stat, status, text = item
                        path = relative(unified_path(text)) if text is not None else None
                        if keep is not None and not keep(path):
                            continue
                        checked = engine.checked(proc, stat, status, caller)
                        totmaps = resolve(checked, patience=PATIENCE, budget=budget)
                        if budget is not None and budget.denied:
                            budget.denied = False
                            if rows.deferred_at is None or position < rows.deferred_at:
                                rows.deferred_at = position
                        # exe is read after the access check: the kernel asks the same of it.
                        program = program_name(proc.exe(), status.name) if programs and totmaps.fields else ""
                    except NoSuchEntry:
                        continue  # gone since the listing
                    except AccessDenied:
                        rows.denied += 1  # not the caller's to read: counted, never shown
                        continue
                    except NotDue:
                        rows.not_due += 1
                        continue
                    except (Busy, SourceError) as exc:
                        rows.left_out += 1
                        self._warn_once(pid, exc)
                        continue
                    if totmaps.fields:
                        cgroup = None if top is None else rebase(path, top)
                        age = max(0.0, now - totmaps.at)
                        uid = status.uids[1] if uids is None else uids(status.uids[1])
                        mappings = totmaps.by_key if isinstance(totmaps, Mapped) else None
                        rows.append(
                            Row(shown, uid, status.name, cgroup, totmaps.fields, age, totmaps.walk, mappings, program)
                        )
            finally:
                for item in probed:
                    if isinstance(item, tuple):
                        item[0].close()
        return rows

    def _warn_once(self, pid: int, exc: Exception) -> None:
        if pid not in self._warned:
            if len(self._warned) >= 4096:
                self._warned.clear()
            self._warned.add(pid)
            log.warning("views leave out process %d: %s", pid, exc)

    # -- the view files: each a plan (run it, or hand it to a pool) -------------------

    def text(self, fields: Mapping[str, int]) -> bytes:
        """A sum as a totmaps file, in the daemon's --layout."""
        return format_totmaps(fields if self.layout is None else self.layout(fields))

    def pid_text(self, totmaps: Totmaps) -> bytes:
        """A process's own totmaps file, in the daemon's --layout (the kernel's: the cached text)."""
        return totmaps.text if self.layout is None else format_totmaps(self.layout(totmaps.fields))

    def totmaps(self, caller: Caller | None) -> Plan[Snapshot, bytes]:
        """MOUNT/totmaps: every readable process's fields summed, in the per-process format."""
        return self.plan(caller, lambda rows: self.text(total(rows, self.field_names())))

    def summary(self, caller: Caller | None) -> Plan[Snapshot, bytes]:
        """MOUNT/summary: one line per readable process, largest Pss first."""
        return self.plan(caller, format_summary)

    def cgroup_totmaps(self, caller: Caller | None, path: str) -> Plan[Snapshot, bytes]:
        """MOUNT/cgroup/<path>/totmaps: the sum over the cgroup's subtree (``path`` in the mirrored hierarchy)."""
        self.cgroups.stat(path)  # a cgroup removed since the lookup is ENOENT, not an empty file
        return self.plan(
            caller,
            lambda rows: self.text(total(rows, self.field_names())),
            keep=lambda member: member is not None and within(member, path),
        )

    def metrics(
        self,
        caller: Caller | None,
        top: str | None = ROOT,
        *,
        extra: Callable[[Snapshot], Sequence[Family]] | None = None,
        resolve: Resolve | None = None,
    ) -> Plan[Snapshot, bytes]:
        """MOUNT/metrics: the Prometheus text exposition of one snapshot, cgroups named from ``top`` (see ``plan``).

        ``extra`` adds families computed from the snapshot (meminfo, files: tree._extra).
        """

        def finish(rows: Snapshot) -> bytes:
            if extra is not None:
                rows.extra = tuple(extra(rows))
            return render(rows, self.metrics_options, self.field_names())

        return self.plan(
            caller, finish, cgroups=True, top=top, resolve=resolve, programs=self.metrics_options.groups > 0
        )
