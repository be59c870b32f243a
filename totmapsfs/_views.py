"""Whole-system views over the engine: one snapshot of what a caller may read, summed, tabled, or by cgroup."""

from __future__ import annotations

import functools
import logging
import os
import pwd
import threading
from dataclasses import dataclass
from typing import Callable, Iterable, Mapping, Sequence

from ._access import Caller
from ._cgroups import Cgroups, unified_path, within
from ._engine import Engine
from ._errors import AccessDenied, Busy, NoSuchEntry, SourceError
from ._parser import format_totmaps

# USS, as smem and psutil define it: the memory that would be freed if the
# process exited, i.e. the pages only it maps.
USS_PARTS = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")
SUMMARY_COLUMNS = ("PID", "USER", "Rss", "Pss", "USS", "Swap", "SwapPss", "COMMAND")
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


@dataclass(frozen=True, slots=True)
class Row:
    """One process of a snapshot: who it is and its totmaps fields (kB)."""

    pid: int
    uid: int  # effective uid: whose process it is, as ps's USER column shows
    comm: str  # the Name line of /proc/<pid>/status; the kernel escapes "\n" and "\\" in it
    cgroup: str | None  # its cgroup v2 path as /proc/<pid>/cgroup prints it, when asked for
    fields: Mapping[str, int]

    @property
    def uss(self) -> int:
        return sum(self.fields.get(name, 0) for name in USS_PARTS)

    @property
    def pss(self) -> int:
        return self.fields.get("Pss", 0)


class Snapshot(list[Row]):
    """The rows of one pass, and how many processes it had to leave out (see Views)."""

    left_out: int = 0


def total(rows: Iterable[Row], names: Iterable[str] = ()) -> dict[str, int]:
    """Field-wise sum, fields in the order the kernel prints them; ``names`` are there even at 0."""
    out: dict[str, int] = dict.fromkeys(names, 0)
    for row in rows:
        for name, value in row.fields.items():
            out[name] = out.get(name, 0) + value
    return out


def by_pss(rows: Iterable[Row]) -> list[Row]:
    """Largest Pss first; pid breaks ties so that equal readings print in a stable order."""
    return sorted(rows, key=lambda r: (-r.pss, r.pid))


@functools.lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    """The account name of ``uid``, or the number when it has none (as ps prints it)."""
    # Cached: NSS may be slow (LDAP, sssd) and a view may ask for every process.
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)


def one_word(text: str) -> str:
    """``text`` with no whitespace or control character inside, so that awk sees one column.

    Each such character becomes backslash-octal escapes of its UTF-8 bytes, as
    /proc/<pid>/mountinfo writes a space (``\\040``). The kernel already writes
    a backslash in a process name as ``\\\\``, so the result decodes without
    ambiguity. An empty name becomes ``-``, keeping the column count.
    """
    if not text:
        return "-"
    if text.isascii() and text.isprintable() and " " not in text:
        return text  # the common case, decided in C
    return "".join(
        "".join(f"\\{b:03o}" for b in c.encode("utf-8", "surrogateescape"))
        if c.isspace() or not c.isprintable()
        else c
        for c in text
    )


def format_summary(rows: Sequence[Row]) -> bytes:
    """The summary table: a header, then one line per process, largest Pss first.

    Columns are padded to the widest cell so they line up for people, and no
    cell holds whitespace (``one_word``) so that ``awk '{print $4}'`` is Pss;
    COMMAND comes last all the same, the one free-text column.
    """
    table: list[tuple[str, ...]] = [SUMMARY_COLUMNS]
    for r in by_pss(rows):
        f = r.fields
        table.append((
            str(r.pid), one_word(user_name(r.uid)), str(f.get("Rss", 0)), str(r.pss), str(r.uss),
            str(f.get("Swap", 0)), str(f.get("SwapPss", 0)), one_word(r.comm),
        ))
    widths = [max(map(len, column)) for column in list(zip(*table))[:-1]]
    line = "%{}s %-{}s %{}s %{}s %{}s %{}s %{}s %s\n".format(*widths)
    return "".join([line % cells for cells in table]).encode("utf-8", "surrogateescape")


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

    def __init__(self, engine: Engine, cgroups: Cgroups | None = None) -> None:
        self.engine = engine
        self.cgroups = cgroups or Cgroups(engine.reader)
        # Whether the last pass mostly computed (cache cold) rather than hit:
        # see snapshot. A heuristic, so unsynchronized.
        self._cold = True
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

    def snapshot(
        self, caller: Caller | None, *, cgroups: bool = False, keep: Callable[[str | None], bool] | None = None
    ) -> Snapshot:
        """Every process ``caller`` may read (None: every process), optionally only those ``keep`` admits.

        ``keep`` sees the process's cgroup path before the engine is asked, so
        a cgroup's view never computes the memory of processes outside it.
        """
        pids = self.engine.reader.pids()
        want_cgroup = cgroups or keep is not None
        counters = self.engine.counters
        misses, served = counters.misses, counters.hits + counters.joined
        try:
            return self._pass(pids, caller, want_cgroup, keep)
        finally:
            # Threads pay off when the pass reads smaps (kernel time, GIL
            # released, ~5x the cost of a cache hit); a pass served from the
            # cache is Python work under the GIL, where extra threads only add
            # switching. The last pass that asked the engine anything tells.
            misses, served = counters.misses - misses, counters.hits + counters.joined - served
            if misses or served:
                self._cold = misses * 4 > served

    def _pass(
        self, pids: list[int], caller: Caller | None, want_cgroup: bool, keep: Callable[[str | None], bool] | None
    ) -> Snapshot:
        threads = max(1, min(PASS_THREADS, len(pids) // _PER_THREAD)) if self._cold else 1
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
            rows.extend(result)
            rows.left_out += result.left_out
        return rows

    def _rows(
        self, pids: Sequence[int], caller: Caller | None, want_cgroup: bool, keep: Callable[[str | None], bool] | None
    ) -> Snapshot:
        reader = self.engine.reader
        rows = Snapshot()
        for pid in pids:
            try:
                with reader.open(pid) as proc:
                    path = unified_path(proc.cgroup()) if want_cgroup else None
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

    def cgroup_members(self, caller: Caller | None, rel: str) -> list[Row]:
        """The readable processes in cgroup ``rel`` (relative to the cgroup2 mount) and below it."""
        relative = self.cgroups.relative

        def keep(path: str | None) -> bool:
            member = relative(path)
            return member is not None and within(member, rel)

        return self.snapshot(caller, keep=keep)

    def cgroup_totmaps(self, caller: Caller | None, rel: str) -> bytes:
        """MOUNT/cgroup/<rel>/totmaps: the sum over the cgroup's subtree."""
        self.cgroups.stat(rel)  # a cgroup removed since the lookup is ENOENT, not an empty file
        return format_totmaps(total(self.cgroup_members(caller, rel), self.field_names()))
