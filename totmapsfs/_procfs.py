"""The proc reader: every read of /proc, with the kernel's errnos turned into domain errors in one place."""

from __future__ import annotations

import contextlib
import errno
import functools
import os
import re
import threading
from dataclasses import dataclass
from typing import Callable, Iterator, ParamSpec, TypeVar

from ._errors import AccessDenied, NoSuchProcess, SourceError

P = ParamSpec("P")
R = TypeVar("R")

# CAP_SYS_PTRACE is capability 19 (include/uapi/linux/capability.h).
CAP_SYS_PTRACE = 19

_SMALL_READ = 8192  # stat and status fit in one read; the loop is for safety


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/<pid>/stat we use (proc(5) numbering in the comments)."""

    state: str  # (3)
    minflt: int  # (10) summed over the thread group when read via /proc/<tgid>
    majflt: int  # (12)
    starttime: int  # (22) clock ticks since boot: with the pid, the process's identity


@dataclass(frozen=True, slots=True)
class Status:
    """The fields of /proc/<pid>/status we use."""

    name: str
    tgid: int
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    gids: tuple[int, int, int, int]
    cap_prm: int
    cap_eff: int
    # The memory counters block (VmSize … HugetlbPages) as raw bytes: part of
    # the cache signature, compared whole, never parsed.
    memory: bytes

    @property
    def has_ptrace_cap(self) -> bool:
        return bool(self.cap_eff >> CAP_SYS_PTRACE & 1)


def _wrap(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Map OSError from a /proc read to a domain error: the one place errnos are interpreted.

    ENOENT and ESRCH mean the process is gone (a /proc/<pid> directory whose task
    died answers ESRCH through an open dirfd); EACCES/EPERM mean the kernel
    refused; anything else (EIO, ENOMEM, EINTR…) is passed on as it is.
    """

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                pid = getattr(args[0], "pid", -1) if args else -1
                if exc.errno in (errno.ENOENT, errno.ESRCH):
                    raise NoSuchProcess(pid) from None
                if exc.errno in (errno.EACCES, errno.EPERM):
                    raise AccessDenied(f"{what} of {pid}: {exc.strerror}") from None
                raise SourceError(exc.errno or errno.EIO, f"{what} of {pid}") from None

        return wrapper

    return deco


def _read_fd(fd: int, chunk: int) -> bytes:
    """Read an open /proc file to its end (seq_file answers at most a buffer per read)."""
    parts = []
    while True:
        data = os.read(fd, chunk)
        if not data:
            break
        parts.append(data)
    return parts[0] if len(parts) == 1 else b"".join(parts)


class BufferPool:
    """Reusable read buffers for smaps text.

    A fresh multi-megabyte allocation per read costs a page fault for every
    4 KiB, each time (about 700 for a 2000-mapping process, more than the parse
    itself); a buffer kept from an earlier read is already mapped. At most
    ``keep`` buffers of at most ``max_bytes`` each are kept.
    """

    def __init__(self, initial: int = 64 * 1024, keep: int = 4, max_bytes: int = 32 << 20) -> None:
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


def _read_fd_into(fd: int, buf: bytearray) -> int:
    """Read an open /proc file to its end into ``buf``, growing it as needed; the length read."""
    n = 0
    while True:
        if n == len(buf):
            buf.extend(bytes(len(buf)))  # double; seq_file goes on from where it stopped
        with memoryview(buf) as whole, whole[n:] as rest:
            got = os.readv(fd, [rest])
        if not got:
            return n
        n += got


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/<pid>/mountinfo, the fields we use (proc(5))."""

    root: str  # (4) the directory of the filesystem that is mounted here
    mountpoint: str  # (5)
    fstype: str
    source: str


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo (fs/proc_namespace.c).
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def parse_mountinfo(data: bytes) -> list[Mount]:
    """The mounts of a mountinfo text, in its order (a later mount on the same point is on top)."""
    mounts = []
    for line in data.split(b"\n"):
        # "id parent major:minor root mountpoint options [optional...] - fstype source superopts"
        left, sep, right = line.partition(b" - ")
        parts, tail = left.split(), right.split()
        if sep and len(parts) >= 5 and len(tail) >= 2:
            mounts.append(Mount(_unescape(parts[3]), _unescape(parts[4]), _unescape(tail[0]), _unescape(tail[1])))
    return mounts


def parse_stat(data: bytes) -> Stat:
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return Stat(
        state=fields[0].decode("ascii", "replace"),
        minflt=int(fields[7]),
        majflt=int(fields[9]),
        starttime=int(fields[19]),
    )


def _line(data: bytes, key: bytes) -> bytes:
    """The rest of the first line that starts with ``key``; b"" when there is none."""
    start = data.find(key)
    if start < 0:
        return b""
    start += len(key)
    end = data.find(b"\n", start)
    return data[start:end] if end >= 0 else data[start:]


def _ids(field: bytes) -> tuple[int, int, int, int]:
    if not field:
        return (0, 0, 0, 0)
    a, b, c, d = (int(x) for x in field.split()[:4])
    return (a, b, c, d)


def parse_status(data: bytes) -> Status:
    # Six lines of ~55 are wanted: finding each (a scan in C) is twice as fast
    # as splitting them all, which counts when a view reads every process.
    tgid, prm, eff = _line(data, b"\nTgid:"), _line(data, b"\nCapPrm:"), _line(data, b"\nCapEff:")
    # Zombies and kernel threads have no Vm* lines: their block is empty.
    start = data.find(b"\nVmSize:")
    end = data.find(b"\nCoreDumping:", start) if start >= 0 else -1
    memory = data[start:end] if start >= 0 else b""
    return Status(
        name=_line(data, b"Name:").strip().decode("utf-8", "replace"),
        tgid=int(tgid) if tgid else 0,
        uids=_ids(_line(data, b"\nUid:")),
        gids=_ids(_line(data, b"\nGid:")),
        cap_prm=int(prm, 16) if prm else 0,
        cap_eff=int(eff, 16) if eff else 0,
        memory=memory,
    )


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

    def _read(self, name: str, chunk: int) -> bytes:
        fd = os.open(name, os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)
        try:
            return _read_fd(fd, chunk)
        finally:
            os.close(fd)

    @_wrap("stat")
    def stat(self) -> Stat:
        return parse_stat(self._read("stat", _SMALL_READ))

    @_wrap("status")
    def status(self) -> Status:
        return parse_status(self._read("status", _SMALL_READ))

    @_wrap("owner")
    def dir_stat(self) -> os.stat_result:
        """/proc/<pid> itself: always owned by the process's euid/egid."""
        return os.fstat(self._dirfd)

    @_wrap("owner")
    def smaps_stat(self) -> os.stat_result:
        """/proc/<pid>/smaps: owned by the euid/egid, or by root when the process is not dumpable.

        task_dump_owner() in fs/proc/base.c exempts world-readable directories
        from the dumpable rule, so only a file inside tells the two apart.
        """
        return os.stat("smaps", dir_fd=self._dirfd, follow_symlinks=False)

    @_wrap("cgroup")
    def cgroup(self) -> bytes:
        """/proc/<pid>/cgroup as printed: one "hierarchy-id:controllers:path" line per hierarchy."""
        return self._read("cgroup", _SMALL_READ)

    @_wrap("memory")
    def _memory_into(self, rollup: bool, buf: bytearray) -> int:
        try:
            fd = os.open("smaps_rollup" if rollup else "smaps", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._dirfd)
            try:
                return _read_fd_into(fd, buf)
            finally:
                os.close(fd)
        except ProcessLookupError:
            return 0

    @contextlib.contextmanager
    def memory_view(self, rollup: bool) -> Iterator[memoryview]:
        """The raw smaps_rollup or smaps text, as a view of a pooled buffer valid in the with-block only.

        Empty for a process without an address space: smaps of a kernel thread
        or zombie reads empty, while smaps_rollup fails with ESRCH
        (fs/proc/task_mmu.c: show_smaps_rollup finds no mm). Whether the process
        itself is gone is for the caller to decide by re-reading stat.
        """
        buf = self._buffers.take()
        size = self._memory_into(rollup, buf)  # before any view: the buffer may have to grow
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

    def open(self, pid: int) -> Process:
        """Pin process ``pid`` (a thread id works too, as in /proc)."""
        try:
            fd = os.open(f"{self.root}/{pid}", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC)
        except OSError as exc:
            if exc.errno in (errno.ENOENT, errno.ESRCH, errno.ENOTDIR):
                raise NoSuchProcess(pid) from None
            raise SourceError(exc.errno or errno.EIO, f"open {pid}") from None
        return Process(pid, fd, self.buffers)

    def pids(self) -> list[int]:
        """Thread-group ids, as /proc lists them (threads are hidden there too)."""
        return sorted(int(n) for n in os.listdir(self.root) if n.isdigit())

    def mounts(self) -> list[Mount]:
        """Our own mount table (cgroup2 is found there, and what a mountpoint has on it); OSError passes through."""
        with open(f"{self.root}/self/mountinfo", "rb") as f:
            return parse_mountinfo(f.read())

    def has_rollup(self) -> bool:
        """True when the kernel offers smaps_rollup (Linux >= 4.14)."""
        return os.path.exists(f"{self.root}/self/smaps_rollup")

    def user_ns(self, pid: int) -> int | None:
        """The user namespace of ``pid`` as an inode number, None if it cannot be told."""
        try:
            return os.stat(f"{self.root}/{pid}/ns/user").st_ino
        except OSError:
            return None
