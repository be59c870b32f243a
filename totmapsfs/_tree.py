"""The tree model: paths, inodes and attributes of the mount, with no FUSE in sight.

Layout, mirroring /proc::

    /               directory, lists "self" and one directory per thread-group id
    /self           symlink to the caller's own process directory ("<tgid>")
    /<pid>/         directory, owned as /proc/<pid> is (the euid)
    /<pid>/totmaps  the summed smaps, mode 0444, size 0, owned as /proc/<pid>/smaps is
                    (root when the process is not dumpable)
    /totmaps, /summary, /metrics
                    whole-system views over what the caller may read (_views, _metrics)
    /cgroup/…/      the cgroup2 hierarchy, each directory with a totmaps of its subtree

Whole-system views have fixed inodes below 256; cgroup directories get theirs
from a table of ids (_cgroups.Cgroups) mapped far above any pid's inode.

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
from ._cgroups import check_name, child_path
from ._engine import Engine
from ._errors import NameTooLong, NoSuchEntry, NotADirectory
from ._metrics import MetricsOptions, render
from ._views import Views

ROOT_INODE = 1  # FUSE_ROOT_ID
SELF_INODE = 2
_PID_BASE = 256  # inodes below this are kept for whole-system views
# PID_MAX_LIMIT on 64-bit kernels (include/linux/threads.h): 4 * 1024 * 1024.
PID_MAX_LIMIT = 4 * 1024 * 1024
TOTMAPS = b"totmaps"
# Whole-system views: fixed inodes below _PID_BASE.
TOTMAPS_INODE, SUMMARY_INODE, METRICS_INODE = 3, 4, 5
CGROUP_INODE, CGROUP_TOTMAPS_INODE = 6, 7  # /cgroup and /cgroup/totmaps: the cgroup2 root
VIEW_FILES = {b"totmaps": TOTMAPS_INODE, b"summary": SUMMARY_INODE, b"metrics": METRICS_INODE}
CGROUP = b"cgroup"
# Other cgroup directories: 2 * id (+1 for its totmaps) above this base, which
# is far above the largest pid inode (256 + 2 * PID_MAX_LIMIT < 2**24).
_CGROUP_BASE = 1 << 40


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


def cgroup_inode(ident: int, is_file: bool) -> int:
    if ident == 0:
        return CGROUP_TOTMAPS_INODE if is_file else CGROUP_INODE
    return _CGROUP_BASE + 2 * ident + is_file


def decode_cgroup_inode(ino: int) -> tuple[int, bool] | None:
    """(cgroup id, is_file) for a cgroup inode; None for any other inode."""
    if ino in (CGROUP_INODE, CGROUP_TOTMAPS_INODE):
        return 0, ino == CGROUP_TOTMAPS_INODE
    if ino >= _CGROUP_BASE:
        ident, is_file = divmod(ino - _CGROUP_BASE, 2)
        return ident, bool(is_file)
    return None


def is_view_inode(ino: int) -> bool:
    return (ino < _PID_BASE and ino not in (ROOT_INODE, SELF_INODE)) or ino >= _CGROUP_BASE


def _cgroup_attr(ino: int, is_file: bool, st: os.stat_result) -> Attr:
    """A cgroup directory or its totmaps: owned and dated as the cgroup directory is."""
    mode = stat.S_IFREG | 0o444 if is_file else stat.S_IFDIR | 0o555
    return Attr(ino, mode, 1, st.st_uid, st.st_gid, st.st_mtime_ns)


def parse_pid(name: bytes) -> int:
    """A directory name as /proc reads it: decimal, no sign, no leading zero (name_to_int)."""
    NameTooLong.check(name)
    if not name.isdigit() or name.startswith(b"0") or len(name) > 7:
        raise NoSuchEntry(name.decode("utf-8", "replace"))
    pid = int(name)
    if pid >= PID_MAX_LIMIT:
        raise NoSuchEntry(str(pid))
    return pid


class Tree:
    """Answers the filesystem's questions from the engine and the proc reader."""

    def __init__(self, engine: Engine, metrics: MetricsOptions | None = None) -> None:
        self.engine = engine
        self.reader = engine.reader
        self.views = Views(engine)
        self.metrics = metrics or MetricsOptions()
        self.mounted_ns = time.time_ns()
        self._own_user_ns = self.reader.user_ns(os.getpid())

    def _caller(self, request: Request) -> _access.Caller:
        return _access.identify(self.reader, request.pid, request.uid, request.gid, self._own_user_ns)

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
        if is_view_inode(ino):
            return self._view_attr(ino)
        return self._pid_attr(*decode_inode(ino))

    # -- names ----------------------------------------------------------------

    def lookup(self, parent: int, name: bytes) -> Attr:
        if parent == ROOT_INODE:
            if name == b"self":
                return self._self_attr()
            if name in VIEW_FILES or name == CGROUP:
                return self._view_attr(VIEW_FILES.get(name, CGROUP_INODE))
            return self._pid_attr(parse_pid(name), False)
        if is_view_inode(parent):
            return self._view_lookup(parent, name)
        pid, is_file = decode_inode(parent)
        if is_file:
            raise NotADirectory(str(pid))
        if name != TOTMAPS:
            NameTooLong.check(name)
            raise NoSuchEntry(name.decode("utf-8", "replace"))
        return self._pid_attr(pid, True)

    def listdir(self, ino: int) -> list[tuple[bytes, Attr]]:
        """A directory's entries with their attributes, as one snapshot."""
        if ino == ROOT_INODE:
            root = self._root_attr()
            entries = [(b".", root), (b"..", root), (b"self", self._self_attr())]
            entries.extend(self._view_entries())
            pids = self.reader.pids()
            self.engine.forget_dead(pids)
            for pid in pids:
                try:
                    entries.append((str(pid).encode(), self._pid_attr(pid, False)))
                except NoSuchEntry:
                    continue  # exited between listing and stat, as /proc would skip it
            return entries
        if is_view_inode(ino):
            return self._view_listdir(ino)
        pid, is_file = decode_inode(ino)
        if is_file:
            raise NotADirectory(str(pid))
        return [(b".", self._pid_attr(pid, False)), (b"..", self._root_attr()), (TOTMAPS, self._pid_attr(pid, True))]

    def readlink(self, ino: int, request: Request) -> bytes:
        if ino != SELF_INODE:
            raise NoSuchEntry(f"inode {ino}")
        caller = self._caller(request)
        if caller.tgid <= 0:
            # The caller is not visible in our pid namespace; /proc/self is
            # dangling there too.
            raise NoSuchEntry("self")
        return str(caller.tgid).encode()

    # -- contents -------------------------------------------------------------

    def read_file(self, ino: int, request: Request) -> bytes:
        """The whole file for one open handle, access-checked as the caller."""
        if is_view_inode(ino):
            return self._view_read(ino, request)
        pid, is_file = decode_inode(ino)
        if not is_file:
            raise NoSuchEntry(f"inode {ino}")
        caller = self._caller(request)
        return self.engine.totmaps(pid, caller).text

    # -- whole-system views (_views, _metrics, _cgroups do the work) -----------

    def _view_attr(self, ino: int) -> Attr:
        if ino in (TOTMAPS_INODE, SUMMARY_INODE, METRICS_INODE):
            return Attr(ino, stat.S_IFREG | 0o444, 1, 0, 0, self.mounted_ns)
        cgroup = decode_cgroup_inode(ino)
        if cgroup is None:
            raise NoSuchEntry(f"inode {ino}")
        ident, is_file = cgroup
        return _cgroup_attr(ino, is_file, self.views.cgroups.stat(self.views.cgroups.path_of(ident)))

    def _view_entries(self) -> list[tuple[bytes, Attr]]:
        entries = [(name, self._view_attr(ino)) for name, ino in VIEW_FILES.items()]
        try:
            entries.append((CGROUP, self._view_attr(CGROUP_INODE)))
        except NoSuchEntry:
            pass  # no cgroup2 mounted: no cgroup directory
        return entries

    def _view_lookup(self, parent: int, name: bytes) -> Attr:
        cgroup = decode_cgroup_inode(parent)
        if cgroup is None or cgroup[1]:
            raise NotADirectory(f"inode {parent}")
        ident = cgroup[0]
        if name == TOTMAPS:
            return self._view_attr(cgroup_inode(ident, True))
        cgroups = self.views.cgroups
        child = child_path(cgroups.path_of(ident), check_name(name))
        st = cgroups.stat(child)  # NoSuchEntry when there is no such cgroup; else its attributes too
        return _cgroup_attr(cgroup_inode(cgroups.id_of(child), False), False, st)

    def _view_listdir(self, ino: int) -> list[tuple[bytes, Attr]]:
        cgroup = decode_cgroup_inode(ino)
        if cgroup is None or cgroup[1]:
            raise NotADirectory(f"inode {ino}")
        cgroups = self.views.cgroups
        path = cgroups.path_of(cgroup[0])
        st = cgroups.stat(path)  # one stat serves the directory and its totmaps
        if path:
            up = self._view_attr(cgroup_inode(cgroups.id_of(path.rpartition("/")[0]), False))
        else:
            up = self._root_attr()
        entries = [(b".", _cgroup_attr(ino, False, st)), (b"..", up),
                   (TOTMAPS, _cgroup_attr(cgroup_inode(cgroup[0], True), True, st))]
        for name, st in cgroups.children(path):
            ino = cgroup_inode(cgroups.id_of(child_path(path, name)), False)
            entries.append((os.fsencode(name), _cgroup_attr(ino, False, st)))  # the listing's stat: no second one
        return entries

    def _view_read(self, ino: int, request: Request) -> bytes:
        # One Caller for the whole read: the views check every process against it.
        caller = self._caller(request)
        if ino == TOTMAPS_INODE:
            return self.views.totmaps(caller)
        if ino == SUMMARY_INODE:
            return self.views.summary(caller)
        if ino == METRICS_INODE:
            snapshot = self.views.snapshot(caller, cgroups=True)
            return render(snapshot, self.metrics, self.views.field_names(), snapshot.left_out)
        cgroup = decode_cgroup_inode(ino)
        if cgroup is None or not cgroup[1]:
            raise NoSuchEntry(f"inode {ino}")
        return self.views.cgroup_totmaps(caller, self.views.cgroups.path_of(cgroup[0]))
