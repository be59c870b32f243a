"""Whole-system views over the engine: one pass over what a caller may read, summed, tabled, by cgroup, as metrics."""

from __future__ import annotations

import logging
import os
import threading
from collections.abc import Callable, Sequence

from ..engine import Engine
from ..errors import AccessDenied, Busy, NoSuchEntry, SourceError
from ..parser import format_totmaps
from ..proc import Caller, Cgroup2, unified_path, within
from ._metrics import MetricsOptions, render
from ._snapshot import Row, Snapshot, total
from ._summary import format_summary

# A pass over many processes is split among this many threads: the /proc
# reads (smaps_rollup above all, when the cache is cold) release the GIL and
# run on other CPUs meanwhile.
PASS_THREADS = min(4, os.cpu_count() or 1)
_PER_THREAD = 64  # fewer processes than this per thread is not worth a thread
# A process whose smaps read has been under way this long (seconds) is left out
# of a view rather than waited for: its mmap lock is held (a fault stuck on a
# dead NFS server, a huge munmap), and every summary or metrics poll would
# otherwise hang on it, holding a worker thread each, as `ps` hangs on
# /proc/<pid>/cmdline. Only the read that met it first waits, as /proc would.
PATIENCE = 1.0

log = logging.getLogger("totmapsfs")


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

    def __init__(self, engine: Engine, cgroups: Cgroup2, metrics: MetricsOptions | None = None) -> None:
        self.engine = engine
        self.cgroups = cgroups
        self.metrics_options = metrics or MetricsOptions()
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
        return max(1, min(PASS_THREADS, processes // _PER_THREAD)) if self._cold else 1

    def snapshot(
        self, caller: Caller | None, *, cgroups: bool = False, keep: Callable[[str | None], bool] | None = None
    ) -> Snapshot:
        """Every process ``caller`` may read (None: every process), optionally only those ``keep`` admits.

        ``keep`` sees the process's cgroup path (in the mirrored hierarchy;
        None when outside it) before the engine is asked, so a cgroup's view
        never computes the memory of processes outside it.
        """
        pids = self.engine.reader.pids()
        want_cgroup = cgroups or keep is not None
        counters = self.engine.counters
        misses, served = counters.misses, counters.hits + counters.joined
        try:
            return self._pass(pids, caller, want_cgroup, keep)
        finally:
            # See threads_for. A heuristic, so unsynchronized.
            misses, served = counters.misses - misses, counters.hits + counters.joined - served
            if misses or served:
                self._cold = misses * 4 > served

    def _pass(
        self, pids: list[int], caller: Caller | None, want_cgroup: bool, keep: Callable[[str | None], bool] | None
    ) -> Snapshot:
        threads = self.threads_for(len(pids))
        if threads == 1:
            return self._rows(pids, caller, want_cgroup, keep)
        # Interleaved shares, so that each thread gets as many big processes;
        # daemon threads, so that one stuck on a target's mmap lock cannot hold
        # up the daemon's exit.
        results: list[Snapshot | BaseException] = [Snapshot() for _ in range(threads)]

        def run(i: int) -> None:
            try:
                results[i] = self._rows(pids[i::threads], caller, want_cgroup, keep)
            except BaseException as exc:  # re-raised in the reading thread
                results[i] = exc

        helpers = [threading.Thread(target=run, args=(i,), daemon=True) for i in range(1, threads)]
        for t in helpers:
            t.start()
        run(0)
        for t in helpers:
            t.join()
        rows = Snapshot()
        for result in results:
            if isinstance(result, BaseException):
                raise result
            rows.extend_from(result)
        return rows

    def _rows(
        self, pids: Sequence[int], caller: Caller | None, want_cgroup: bool, keep: Callable[[str | None], bool] | None
    ) -> Snapshot:
        reader = self.engine.reader
        rows = Snapshot()
        for pid in pids:
            try:
                with reader.open(pid) as proc:
                    path = self.cgroups.relative(unified_path(proc.cgroup())) if want_cgroup else None
                    if keep is not None and not keep(path):
                        continue
                    status, totmaps = self.engine.totmaps_of(proc, caller, patience=PATIENCE)
            except (NoSuchEntry, AccessDenied):
                continue  # gone since the listing, or not the caller's to read
            except (Busy, SourceError) as exc:
                rows.left_out += 1
                self._warn_once(pid, exc)
                continue
            if totmaps.fields:
                rows.append(Row(pid, status.uids[1], status.name, path, totmaps.fields))
        return rows

    def _warn_once(self, pid: int, exc: Exception) -> None:
        if pid not in self._warned:
            if len(self._warned) >= 4096:
                self._warned.clear()
            self._warned.add(pid)
            log.warning("views leave out process %d: %s", pid, exc)

    def totmaps(self, caller: Caller | None) -> bytes:
        """MOUNT/totmaps: every readable process's fields summed, in the per-process format."""
        return format_totmaps(total(self.snapshot(caller), self.field_names()))

    def summary(self, caller: Caller | None) -> bytes:
        """MOUNT/summary: one line per readable process, largest Pss first."""
        return format_summary(self.snapshot(caller))

    def cgroup_members(self, caller: Caller | None, path: str) -> Snapshot:
        """The readable processes in cgroup ``path`` (of the mirrored hierarchy) and below it."""
        return self.snapshot(caller, keep=lambda member: member is not None and within(member, path))

    def cgroup_totmaps(self, caller: Caller | None, path: str) -> bytes:
        """MOUNT/cgroup/<path>/totmaps: the sum over the cgroup's subtree."""
        self.cgroups.stat(path)  # a cgroup removed since the lookup is ENOENT, not an empty file
        return format_totmaps(total(self.cgroup_members(caller, path), self.field_names()))

    def metrics(self, caller: Caller | None) -> bytes:
        """MOUNT/metrics: the Prometheus text exposition of one snapshot."""
        snapshot = self.snapshot(caller, cgroups=True)
        return render(snapshot, self.metrics_options, self.field_names())
