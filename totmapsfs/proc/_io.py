"""The raw /proc reads of the hot path, from the C half (``_speedups``) or its pure-Python reference.

As markupsafe pairs ``_native`` with ``_speedups``: each name below is the C
function when the extension imported, else the Python one beside it, which
the differential tests hold equal. Both raise OSError with the kernel's
errno; ``_errnos`` turns it into domain errors.
"""

from __future__ import annotations

import errno
import os
from collections.abc import Callable, Sequence

from ._text import Stat, Status, parse_stat, parse_status

# The errnos that say the thing read is gone, not that the read failed: a dead
# task's /proc/<pid> answers ESRCH through an open dirfd, a vanished name
# ENOENT, a name that is no directory ENOTDIR (a --proc root may hold anything).
# _errnos.translate reads them as NoSuchEntry; the readers below that answer
# "gone" with None or [] do so for these only, and raise every other OSError.
GONE = frozenset({errno.ENOENT, errno.ESRCH, errno.ENOTDIR})

_SMALL_READ = 8192  # stat and status fit in one read; the loop is for safety
# O_NONBLOCK: /proc ignores it; a FIFO planted in a --proc root (the fault
# tests do) then answers at once instead of blocking the reader, which may be
# the event loop (see tree._tree: stat and status are read there).
_SMALL_FLAGS = os.O_RDONLY | os.O_CLOEXEC | os.O_NONBLOCK


def read_fd_into(fd: int, buf: bytearray, chunk: int = 0) -> int:
    """Read an open file to its end into ``buf``, doubling it as needed; the length read.

    The one read-to-EOF loop: seq_file answers at most a buffer per read and
    goes on from where it stopped. ``chunk``: at most that many bytes a read
    (0: as many as ``buf`` has room for).
    """
    n = 0
    while True:
        if n == len(buf):
            buf.extend(bytes(len(buf) or _SMALL_READ))
        end = min(len(buf), n + chunk) if chunk else len(buf)
        with memoryview(buf) as whole, whole[n:end] as rest:
            got = os.readv(fd, [rest])
        if not got:
            return n
        n += got


def _py_read_at(dirfd: int, name: str, wait: bool = False) -> bytes:
    fd = os.open(name, _SMALL_FLAGS & ~os.O_NONBLOCK if wait else _SMALL_FLAGS, dir_fd=dirfd)
    try:
        buf = bytearray(_SMALL_READ)
        del buf[read_fd_into(fd, buf) :]
        return bytes(buf)
    finally:
        os.close(fd)


def _py_probe(dirfd: int) -> tuple[Stat, Status]:
    status = _py_read_at(dirfd, "status")  # first, as the C version: whether there is an mm
    return parse_stat(_py_read_at(dirfd, "stat")), parse_status(status)


# probe_many's answer for a pid: (dirfd, stat, status, cgroup text or None), an errno, or what its text raised.
_Probed = tuple[int, Stat, Status, bytes | None] | int | Exception


def _py_probe_many(rootfd: int, pids: Sequence[int], cgroup: bool) -> list[_Probed]:
    out: list[_Probed] = []
    for pid in pids:
        try:
            fd = os.open(str(pid), os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rootfd)
        except OSError as exc:
            out.append(exc.errno or errno.EIO)
            continue
        try:
            stat, status = _py_probe(fd)
            out.append((fd, stat, status, _py_read_at(fd, "cgroup") if cgroup else None))
        except OSError as exc:
            os.close(fd)
            out.append(exc.errno or errno.EIO)
        except ValueError as exc:
            os.close(fd)
            out.append(exc)
    return out


def task_names(rootfd: int, pid: str) -> list[str]:
    """The names in /proc/<pid>/task (its threads' ids), none when the process is gone (GONE); OSError otherwise."""
    try:
        fd = os.open(f"{pid}/task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rootfd)
    except OSError as exc:
        if exc.errno in GONE:
            return []
        raise
    try:
        return os.listdir(fd)
    except OSError as exc:
        if exc.errno in GONE:
            return []
        raise
    finally:
        os.close(fd)


def ns_inode_at(dirfd: int, path: str) -> int | None:
    """The inode of nsfs file ``path`` (which namespace it is), None when it is gone (GONE); OSError otherwise.

    The one place an nsfs file is stat'ed: gone is an answer (the task exited,
    or the kernel has no such namespaces), EMFILE or EACCES is not.
    """
    try:
        return os.stat(path, dir_fd=dirfd).st_ino
    except OSError as exc:
        if exc.errno in GONE:
            return None
        raise


def _py_caller(rootfd: int, tid: int) -> tuple[Status, int | None]:
    return parse_status(_py_read_at(rootfd, f"{tid}/status")), ns_inode_at(rootfd, f"{tid}/ns/user")


IMPLEMENTATION: str  # "c" or "python": who reads and parses stat and status
MISSING_C: str | None  # why the C half is not in use, or None
read_at: Callable[[int, str, bool], bytes]  # the whole of a small file relative to a directory fd; wait or not
probe: Callable[[int], tuple[Stat, Status]]  # (stat, status) of the process whose /proc directory it is
stat_of_text: Callable[[bytes], Stat]
status_of_text: Callable[[bytes], Status]
caller_at: Callable[[int, int], tuple[Status, int | None]]  # (status, user namespace inode) of a thread
probe_many: Callable[[int, Sequence[int], bool], list[_Probed]]

try:
    from . import _speedups as _c
except ImportError as exc:
    if os.environ.get("TOTMAPSFS_REQUIRE_C") == "1":  # CI: a broken build must fail, not fall back
        raise ImportError(f"TOTMAPSFS_REQUIRE_C=1 but the proc reader's C half did not import: {exc}") from exc
    IMPLEMENTATION, MISSING_C = "python", str(exc)
    read_at, probe, stat_of_text, status_of_text = _py_read_at, _py_probe, parse_stat, parse_status
    caller_at, probe_many = _py_caller, _py_probe_many
else:

    def _c_probe(dirfd: int) -> tuple[Stat, Status]:
        stat, status = _c.probe(dirfd)
        return Stat._make(stat), Status._make(status)

    def _c_stat(data: bytes) -> Stat:
        return Stat._make(_c.parse_stat(data))

    def _c_status(data: bytes) -> Status:
        return Status._make(_c.parse_status(data))

    def _c_caller(rootfd: int, tid: int) -> tuple[Status, int | None]:
        status, user_ns = _c.caller(rootfd, tid)
        return Status._make(status), user_ns

    def _c_probe_many(rootfd: int, pids: Sequence[int], cgroup: bool) -> list[_Probed]:
        out: list[_Probed] = []
        for item in _c.probe_many(rootfd, pids, cgroup):
            if isinstance(item, tuple):
                fd, stat, status, text = item
                out.append((fd, Stat._make(stat), Status._make(status), text))
            else:
                out.append(item)
        return out

    IMPLEMENTATION, MISSING_C = "c", None
    read_at, probe, stat_of_text, status_of_text = _c.read_at, _c_probe, _c_stat, _c_status
    caller_at, probe_many = _c_caller, _c_probe_many
