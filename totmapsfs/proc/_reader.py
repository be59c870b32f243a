"""The proc reader: every read of /proc, pinned per process (its errnos become domain errors in _errnos)."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator, Sequence

from ..errors import AccessDenied, NoSuchEntry, NoSuchProcess, TotmapsError
from ._errnos import ns_inode, translate, unless_gone, unparseable, wrap_exceptions
from ._io import (
    IMPLEMENTATION,
    MISSING_C,
    caller_at,
    probe,
    probe_many,
    read_at,
    read_fd_into,
    stat_of_text,
    task_names,
)
from ._text import Mount, Stat, Status, parse_mountinfo

__all__ = [
    "IMPLEMENTATION",
    "MISSING_C",
    "BufferPool",
    "ProcReader",
    "Process",
    "read_at",
]


class BufferPool:
    """Reusable read buffers for smaps text.

    A fresh multi-megabyte allocation per read costs a page fault for every
    4 KiB, each time (about 700 for a 2000-mapping process, more than the parse
    itself); a buffer kept from an earlier read is already mapped. At most
    ``keep`` buffers of at most ``max_bytes`` each are kept.
    """

    def __init__(self, initial: int = 256 * 1024, keep: int = 4, max_bytes: int = 32 << 20) -> None:
        self.initial = initial
        self.keep = keep
        self.max_bytes = max_bytes
        self._free: list[bytearray] = []
        self._lock = threading.Lock()

    def take(self) -> bytearray:
        with self._lock:
            if self._free:
                return self._free.pop()
        return bytearray(self.initial)

    def give(self, buf: bytearray) -> None:
        if len(buf) <= self.max_bytes:
            with self._lock:
                if len(self._free) < self.keep:
                    self._free.append(buf)


def _read_fd_lines(fd: int, buf: bytearray, each: Callable[[memoryview], object]) -> int:
    """Read an open /proc file to its end through ``buf``, handing ``each`` every run of whole lines; bytes read.

    A run is handed on when the buffer is full (its last partial line is kept
    for the next), and at the end. The buffer grows only for a line longer
    than itself. One small buffer, warm in the CPU's cache and never page
    faulted in again, instead of one as big as the text (smaps of a
    60,000-mapping process: 44 MB, whose growth cost the daemon a fifth of its read).
    """
    n = total = 0
    while True:
        if n == len(buf):
            end = buf.rfind(b"\n", 0, n) + 1
            if end == 0:
                buf.extend(bytes(len(buf)))  # one line longer than the buffer
            else:
                with memoryview(buf) as whole, whole[:end] as lines:
                    each(lines)
                buf[: n - end] = buf[end:n]
                n -= end
        with memoryview(buf) as whole, whole[n:] as rest:
            got = os.readv(fd, [rest])
        if not got:
            break
        n += got
        total += got
    if n:
        with memoryview(buf) as whole, whole[:n] as lines:
            each(lines)
    return total


def _root_of_map(text: bytes) -> int | None:
    """The id outside that an id map (/proc/<pid>/uid_map: "inside outside count" lines) gives id 0 inside."""
    for line in text.splitlines():
        inside, outside, count = (int(x) for x in line.split())
        if inside <= 0 < inside + count:
            return outside - inside
    return None


class Process:
    """One process, pinned by an open /proc/<pid> directory.

    Every file is opened relative to that directory, so all reads refer to the
    same task even if the pid is reused meanwhile: a dead task's directory
    answers ESRCH/ENOENT, never another process's data.
    """

    def __init__(self, pid: int, dirfd: int, buffers: BufferPool | None = None) -> None:
        self.pid = pid
        self._dirfd = dirfd
        self._buffers = buffers or BufferPool(keep=0)

    def close(self) -> None:
        if self._dirfd >= 0:
            os.close(self._dirfd)
            self._dirfd = -1

    def __enter__(self) -> Process:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    @wrap_exceptions("stat")
    def stat(self) -> Stat:
        return stat_of_text(read_at(self._dirfd, "stat", False))

    @wrap_exceptions("stat and status")
    def probe(self) -> tuple[Stat, Status]:
        """stat and status in one go (one call into C): all a cache hit needs. Neither takes the mmap lock.

        do_task_stat (fs/proc/array.c) and proc_pid_status with task_mem
        (fs/proc/task_mmu.c) read the mm's counters without mmap_lock, so
        these may run on the event loop; smaps and smaps_rollup may not.
        """
        return probe(self._dirfd)

    @wrap_exceptions("owner")
    def dir_stat(self) -> os.stat_result:
        """/proc/<pid> itself: always owned by the process's euid/egid."""
        return os.fstat(self._dirfd)

    @wrap_exceptions("owner")
    def smaps_stat(self) -> os.stat_result:
        """/proc/<pid>/smaps: owned by the euid/egid, or by root when the process is not dumpable.

        task_dump_owner() in fs/proc/base.c exempts world-readable directories
        from the dumpable rule, so only a file inside tells the two apart.
        """
        return os.stat("smaps", dir_fd=self._dirfd, follow_symlinks=False)

    def smaps_owner(self) -> tuple[int, int]:
        st = self.smaps_stat()
        return st.st_uid, st.st_gid

    def user_ns(self) -> int | None:
        """The inode of the process's user namespace; None when it is gone (then nothing is granted by it)."""
        return ns_inode(self._dirfd, "ns/user")

    def open_user_ns(self) -> int:
        """The process's user namespace, open (OSError when it is gone)."""
        return os.open("ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)

    def root_ids(self) -> tuple[int, int] | None:
        """Our uid and gid of the root of the process's user namespace (uid_map, gid_map); None when unmapped.

        The maps print the ids outside in the opener's namespace
        (uid_m_show in kernel/user_namespace.c): ours.
        """
        try:
            uid, gid = (_root_of_map(read_at(self._dirfd, name, False)) for name in ("uid_map", "gid_map"))
        except OSError as exc:
            unless_gone(exc, f"the id maps of {self.pid}")
            return None
        except ValueError:
            return None  # not a map we can read: unmapped, the strictest answer (see Access._dumpable)
        return None if uid is None or gid is None else (uid, gid)

    def exe(self) -> str | None:
        """Where /proc/<pid>/exe points; None when it cannot be read (no mm, gone, or not ours to read).

        proc_exe_link (fs/proc/base.c) checks ptrace read access as smaps
        does; the kernel appends " (deleted)" when the file was unlinked. Any
        other refusal (EIO, ENOMEM...) is ``translate``'s SourceError.
        """
        try:
            return os.readlink("exe", dir_fd=self._dirfd)
        except OSError as exc:
            error = translate(exc, f"exe of {self.pid}", NoSuchProcess(self.pid))
            if isinstance(error, NoSuchEntry | AccessDenied):
                return None
            raise error from None

    @wrap_exceptions("cgroup")
    def cgroup(self) -> bytes:
        """/proc/<pid>/cgroup as printed: one "hierarchy-id:controllers:path" line per hierarchy."""
        return read_at(self._dirfd, "cgroup", False)

    @wrap_exceptions("memory")
    def rollup(self) -> bytes:
        """/proc/<pid>/smaps_rollup (~1 KiB); empty for a process without an address space.

        Such a process's smaps_rollup fails with ESRCH (fs/proc/task_mmu.c:
        show_smaps_rollup finds no mm), where its smaps reads empty.

        Waits as long as the kernel makes it (the target's mmap lock): worker
        threads only. No O_NONBLOCK here: a FIFO standing in for a stuck source
        in the fault tests must block as the real file would.
        """
        try:
            return read_at(self._dirfd, "smaps_rollup", True)
        except ProcessLookupError:
            return b""

    @wrap_exceptions("memory")
    def _memory_into(self, buf: bytearray) -> int:
        try:
            fd = os.open("smaps", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)
            try:
                return read_fd_into(fd, buf)
            finally:
                os.close(fd)
        except ProcessLookupError:
            return 0

    @wrap_exceptions("memory")
    def memory_lines(self, each: Callable[[memoryview], object]) -> int:
        """The raw smaps text handed to ``each`` in runs of whole lines, as read; its length.

        Each run is a view of a pooled buffer, valid during the call only. Empty
        (no call) as ``memory_view``.
        """
        buf = self._buffers.take()
        try:
            fd = os.open("smaps", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)
            try:
                return _read_fd_lines(fd, buf, each)
            finally:
                os.close(fd)
        except ProcessLookupError:
            return 0
        finally:
            self._buffers.give(buf)

    @contextlib.contextmanager
    def memory_view(self) -> Iterator[memoryview]:
        """The raw smaps text, as a view of a pooled buffer valid in the with-block only (smaps_rollup: ``rollup``).

        Empty for a process without an address space: smaps of a kernel thread
        or zombie reads empty. Whether the process itself is gone is for the
        caller to decide by re-reading stat.
        """
        buf = self._buffers.take()
        size = self._memory_into(buf)  # before any view: the buffer may have to grow
        view = memoryview(buf)[:size]
        try:
            yield view
        finally:
            view.release()  # BufferError if the caller kept an export: then the buffer is not reused
            self._buffers.give(buf)


class ProcReader:
    """Reads a procfs tree; ``root`` is injectable so tests can stand in a fake /proc."""

    def __init__(self, root: str = "/proc") -> None:
        self.root = root
        self.buffers = BufferPool()
        self._root_fd = -1

    def root_fd(self) -> int:
        """The procfs root, open (once): callers' status and ns files are read relative to it on every request."""
        if self._root_fd < 0:
            self._root_fd = os.open(self.root, os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return self._root_fd

    @wrap_exceptions("status")
    def thread(self, tid: int) -> tuple[Status, int | None]:
        """A request's calling thread: its status, and the inode of its user namespace (None: unknown).

        Not pinned: read once, for one request (see proc._access.identify).
        """
        return caller_at(self.root_fd(), tid)

    @wrap_exceptions("open")
    def open(self, pid: int) -> Process:
        """Pin process ``pid`` (a thread id works too, as in /proc)."""
        fd = os.open(f"{self.root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        return Process(pid, fd, self.buffers)

    def probe_many(
        self, pids: Sequence[int], cgroup: bool = False
    ) -> list[tuple[Process, Stat, Status, bytes | None] | TotmapsError]:
        """Pin and probe many processes at once (one release of the GIL in C): for a whole-system view.

        Each pid gives its pinned Process, its stat and status (and its cgroup
        file when asked), or the domain error its reads met. The callers close
        the Processes. A text the parser refuses is that process's error (as
        unparseable says), as an errno is: one such process is left out of a
        view, not the view failed.
        """
        items = probe_many(self.root_fd(), pids, cgroup)
        out: list[tuple[Process, Stat, Status, bytes | None] | TotmapsError] = []
        for pid, item in zip(pids, items, strict=True):
            if isinstance(item, tuple):
                fd, stat, status, text = item
                out.append((Process(pid, fd, self.buffers), stat, status, text))
            elif isinstance(item, ValueError):
                out.append(unparseable(item, f"stat and status of {pid}"))
            else:
                assert isinstance(item, int)
                out.append(translate(OSError(item, os.strerror(item)), f"stat and status of {pid}", NoSuchProcess(pid)))
        return out

    def parent(self, pid: int) -> int | None:
        """The ppid field of /proc/<pid>/stat (public, as ps shows it); None when the process is gone."""
        try:
            text = read_at(self.root_fd(), f"{pid}/stat", False)
        except OSError as exc:
            unless_gone(exc, f"stat of {pid}")
            return None
        # After the last ")": comm may hold anything, spaces and parentheses included.
        return int(text[text.rindex(b")") + 2 :].split(maxsplit=2)[1])

    def pids(self) -> list[int]:
        """Thread-group ids, as /proc lists them (threads are hidden there too)."""
        return sorted(int(n) for n in os.listdir(self.root) if n.isdigit())

    def task_ids(self) -> list[int]:
        """Every thread's id, thread-group leaders included (/proc/<pid>/task/); processes gone meanwhile skipped."""
        try:
            return [int(n) for pid in self.pids() for n in task_names(self.root_fd(), str(pid))]
        except OSError as exc:
            raise translate(exc, "the threads in /proc", NoSuchEntry("/proc")) from None

    def mounts(self) -> list[Mount]:
        """Our own mount table (cgroup2 is found there, and what a mountpoint has on it); OSError passes through."""
        with open(f"{self.root}/self/mountinfo", "rb") as f:
            return parse_mountinfo(f.read())

    def has_rollup(self) -> bool:
        """True when the kernel offers smaps_rollup (Linux >= 4.14)."""
        return os.path.exists(f"{self.root}/self/smaps_rollup")
