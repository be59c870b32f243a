"""The tree model: paths, inodes and attributes of the mount, with no FUSE in sight.

Layout, mirroring /proc::

    /               directory, lists "self" and one directory per thread-group id
    /self           symlink to the caller's own process directory ("<tgid>")
    /<pid>/         directory, owned as /proc/<pid> is (the euid)
    /<pid>/totmaps  the summed smaps, mode 0444, size 0, owned as /proc/<pid>/smaps is
                    (root when the process is not dumpable)

Inodes are computed, not allocated: a directory's inode is a function of its
pid, so nothing has to be remembered or forgotten per lookup. A kernel dentry
that outlives its process (for up to the entry timeout) therefore resolves to
whatever process holds the pid when it is *opened*, and opening re-pins the
process and keys every cached answer by (pid, start time): a reused pid never
serves its predecessor's numbers.
"""

from __future__ import annotations

import os
import stat
import time
from dataclasses import dataclass

from . import _access
from ._engine import Engine
from ._errors import NameTooLong, NoSuchEntry, NotADirectory

ROOT_INODE = 1  # FUSE_ROOT_ID
SELF_INODE = 2
_PID_BASE = 256  # inodes below this are kept for whole-system views
NAME_MAX = 255
# PID_MAX_LIMIT on 64-bit kernels (include/linux/threads.h): 4 * 1024 * 1024.
PID_MAX_LIMIT = 4 * 1024 * 1024
TOTMAPS = b"totmaps"


@dataclass(frozen=True, slots=True)
class Attr:
    ino: int
    mode: int
    nlink: int
    uid: int
    gid: int
    mtime_ns: int
    size: int = 0

    @property
    def is_dir(self) -> bool:
        return stat.S_ISDIR(self.mode)


@dataclass(frozen=True, slots=True)
class Request:
    """The caller of one FUSE request: thread id and filesystem uid/gid."""

    pid: int
    uid: int
    gid: int


def pid_dir_inode(pid: int) -> int:
    return _PID_BASE + 2 * pid


def totmaps_inode(pid: int) -> int:
    return _PID_BASE + 2 * pid + 1


def decode_inode(ino: int) -> tuple[int, bool]:
    """(pid, is_file) for a per-process inode."""
    if ino < _PID_BASE:
        raise NoSuchEntry(f"inode {ino}")
    pid, is_file = divmod(ino - _PID_BASE, 2)
    return pid, bool(is_file)


def parse_pid(name: bytes) -> int:
    """A directory name as /proc reads it: decimal, no sign, no leading zero (name_to_int)."""
    if len(name) > NAME_MAX:
        raise NameTooLong(name[:32].decode("ascii", "replace"))
    if not name.isdigit() or name.startswith(b"0") or len(name) > 7:
        raise NoSuchEntry(name.decode("utf-8", "replace"))
    pid = int(name)
    if pid >= PID_MAX_LIMIT:
        raise NoSuchEntry(str(pid))
    return pid


class Tree:
    """Answers the filesystem's questions from the engine and the proc reader."""

    def __init__(self, engine: Engine) -> None:
        self.engine = engine
        self.reader = engine.reader
        self.mounted_ns = time.time_ns()
        self._own_user_ns = self.reader.user_ns(os.getpid())

    # -- attributes -----------------------------------------------------------

    def _root_attr(self) -> Attr:
        # nlink 1: "unknown", so find(1) does not infer a subdirectory count.
        return Attr(ROOT_INODE, stat.S_IFDIR | 0o555, 1, 0, 0, self.mounted_ns)

    def _self_attr(self) -> Attr:
        return Attr(SELF_INODE, stat.S_IFLNK | 0o777, 1, 0, 0, self.mounted_ns)

    def _pid_attr(self, pid: int, is_file: bool) -> Attr:
        with self.reader.open(pid) as proc:
            st = proc.smaps_stat() if is_file else proc.dir_stat()
        if is_file:
            return Attr(totmaps_inode(pid), stat.S_IFREG | 0o444, 1, st.st_uid, st.st_gid, st.st_mtime_ns)
        return Attr(pid_dir_inode(pid), stat.S_IFDIR | 0o555, 2, st.st_uid, st.st_gid, st.st_mtime_ns)

    def getattr(self, ino: int) -> Attr:
        if ino == ROOT_INODE:
            return self._root_attr()
        if ino == SELF_INODE:
            return self._self_attr()
        return self._pid_attr(*decode_inode(ino))

    # -- names ----------------------------------------------------------------

    def lookup(self, parent: int, name: bytes) -> Attr:
        if parent == ROOT_INODE:
            if name == b"self":
                return self._self_attr()
            return self._pid_attr(parse_pid(name), False)
        pid, is_file = decode_inode(parent)
        if is_file:
            raise NotADirectory(str(pid))
        if name != TOTMAPS:
            raise NameTooLong(str(pid)) if len(name) > NAME_MAX else NoSuchEntry(name.decode("utf-8", "replace"))
        return self._pid_attr(pid, True)

    def listdir(self, ino: int) -> list[tuple[bytes, Attr]]:
        """A directory's entries with their attributes, as one snapshot."""
        if ino == ROOT_INODE:
            root = self._root_attr()
            entries = [(b".", root), (b"..", root), (b"self", self._self_attr())]
            pids = self.reader.pids()
            self.engine.forget_dead(pids)
            for pid in pids:
                try:
                    entries.append((str(pid).encode(), self._pid_attr(pid, False)))
                except NoSuchEntry:
                    continue  # exited between listing and stat, as /proc would skip it
            return entries
        pid, is_file = decode_inode(ino)
        if is_file:
            raise NotADirectory(str(pid))
        return [(b".", self._pid_attr(pid, False)), (b"..", self._root_attr()), (TOTMAPS, self._pid_attr(pid, True))]

    def readlink(self, ino: int, request: Request) -> bytes:
        if ino != SELF_INODE:
            raise NoSuchEntry(f"inode {ino}")
        caller = _access.identify(self.reader, request.pid, request.uid, request.gid, self._own_user_ns)
        if caller.tgid <= 0:
            # The caller is not visible in our pid namespace; /proc/self is
            # dangling there too.
            raise NoSuchEntry("self")
        return str(caller.tgid).encode()

    # -- contents -------------------------------------------------------------

    def read_file(self, ino: int, request: Request) -> bytes:
        """The whole file for one open handle, access-checked as the caller."""
        pid, is_file = decode_inode(ino)
        if not is_file:
            raise NoSuchEntry(f"inode {ino}")
        caller = _access.identify(self.reader, request.pid, request.uid, request.gid, self._own_user_ns)
        return self.engine.totmaps(pid, caller).text
