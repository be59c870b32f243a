"""The tree: paths, attributes and file contents of the mount, mirroring /proc, with no FUSE in sight.

Layout::

    /               directory, lists "self" and one directory per thread-group id
    /self           symlink to the caller's own process directory ("<tgid>")
    /<pid>/         directory, owned as /proc/<pid> is (the euid)
    /<pid>/totmaps  the summed smaps, mode 0444, size 0, owned as /proc/<pid>/smaps is
                    (root when the process is not dumpable)
    /totmaps, /summary, /metrics
                    whole-system views over what the caller may read (views.Views)
    /cgroup/.../    the cgroup2 hierarchy, each directory with a totmaps of its subtree (CgroupDirs)

Inodes are computed from what they name (``_inodes``).
"""

from __future__ import annotations

import functools
import os
import stat
import time
from collections.abc import Sequence
from typing import Any, NamedTuple

from ..engine import Engine, Probe
from ..errors import NameTooLong, NoSuchEntry, NotADirectory
from ..proc import Caller, identify
from ..views import Plan, Views
from ._cgroupdirs import CgroupDirs
from ._inodes import (
    CGROUP,
    CGROUP_INODE,
    METRICS_INODE,
    ROOT_INODE,
    SELF_INODE,
    SUMMARY_INODE,
    TOTMAPS,
    TOTMAPS_INODE,
    VIEW_FILES,
    Attr,
    Kind,
    decode,
    parse_pid,
    pid_dir_inode,
    totmaps_inode,
)


class Request(NamedTuple):
    """The caller of one FUSE request: its thread id and filesystem uid/gid (fuse_in_header)."""

    tid: int
    uid: int
    gid: int


class Tree:
    """Answers the filesystem's questions from the engine, the views and the proc reader."""

    def __init__(self, engine: Engine, views: Views) -> None:
        self.engine = engine
        self.reader = engine.reader
        self.views = views
        self.cgroup_dirs = CgroupDirs(views.cgroups)
        self.mounted_ns = time.time_ns()
        self._own_user_ns = self.reader.user_ns(os.getpid())

    def caller(self, request: Request) -> Caller:
        return identify(self.reader, request.tid, request.uid, request.gid, self._own_user_ns)

    # -- attributes -----------------------------------------------------------

    def _root_attr(self) -> Attr:
        # nlink 1: "unknown", so find(1) does not infer a subdirectory count.
        return Attr(ROOT_INODE, stat.S_IFDIR | 0o555, 1, 0, 0, self.mounted_ns)

    def _self_attr(self) -> Attr:
        return Attr(SELF_INODE, stat.S_IFLNK | 0o777, 1, 0, 0, self.mounted_ns)

    def _view_attr(self, ino: int) -> Attr:
        return Attr(ino, stat.S_IFREG | 0o444, 1, 0, 0, self.mounted_ns)

    def _pid_attr(self, pid: int, is_file: bool) -> Attr:
        with self.reader.open(pid) as proc:
            st = proc.smaps_stat() if is_file else proc.dir_stat()
        if is_file:
            return Attr(totmaps_inode(pid), stat.S_IFREG | 0o444, 1, st.st_uid, st.st_gid, st.st_mtime_ns)
        return Attr(pid_dir_inode(pid), stat.S_IFDIR | 0o555, 2, st.st_uid, st.st_gid, st.st_mtime_ns)

    def getattr(self, ino: int) -> Attr:
        node = decode(ino)
        if node.kind is Kind.ROOT:
            return self._root_attr()
        if node.kind is Kind.SELF:
            return self._self_attr()
        if node.kind is Kind.VIEW:
            return self._view_attr(ino)
        if node.kind is Kind.CGROUP:
            return self.cgroup_dirs.attr(ino)
        return self._pid_attr(node.number, node.is_file)

    # -- names ----------------------------------------------------------------

    def lookup(self, parent: int, name: bytes) -> Attr:
        node = decode(parent)
        if node.kind is Kind.ROOT:
            if name == b"self":
                return self._self_attr()
            if name in VIEW_FILES:
                return self._view_attr(VIEW_FILES[name])
            if name == CGROUP:
                return self.cgroup_dirs.attr(CGROUP_INODE)
            return self._pid_attr(parse_pid(name), False)
        if node.kind is Kind.CGROUP:
            return self.cgroup_dirs.lookup(parent, name)
        if node.is_file or node.kind is not Kind.PID:
            raise NotADirectory(f"inode {parent}")
        if name != TOTMAPS:
            NameTooLong.check(name)
            raise NoSuchEntry(name.decode("utf-8", "replace"))
        return self._pid_attr(node.number, True)

    def _root_entries(self) -> list[tuple[bytes, Attr]]:
        root = self._root_attr()
        entries = [(b".", root), (b"..", root), (b"self", self._self_attr())]
        entries.extend((name, self._view_attr(ino)) for name, ino in VIEW_FILES.items())
        try:
            entries.append((CGROUP, self.cgroup_dirs.attr(CGROUP_INODE)))
        except NoSuchEntry:
            pass  # no cgroup2 mounted: no cgroup directory
        pids = self.reader.pids()
        self.engine.forget_dead(pids)
        for pid in pids:
            try:
                entries.append((str(pid).encode(), self._pid_attr(pid, False)))
            except NoSuchEntry:
                continue  # exited between listing and stat, as /proc would skip it
        return entries

    def listdir(self, ino: int) -> list[tuple[bytes, Attr]]:
        """A directory's entries with their attributes, as one snapshot."""
        node = decode(ino)
        if node.kind is Kind.ROOT:
            return self._root_entries()
        if node.kind is Kind.CGROUP:
            return self.cgroup_dirs.listdir(ino, self._root_attr())
        if node.is_file or node.kind is not Kind.PID:
            raise NotADirectory(f"inode {ino}")
        pid = node.number
        return [(b".", self._pid_attr(pid, False)), (b"..", self._root_attr()), (TOTMAPS, self._pid_attr(pid, True))]

    def readlink(self, ino: int, request: Request) -> bytes:
        if ino != SELF_INODE:
            raise NoSuchEntry(f"inode {ino}")
        caller = self.caller(request)
        if caller.tgid <= 0:
            # The caller is not visible in our pid namespace; /proc/self is
            # dangling there too.
            raise NoSuchEntry("self")
        return str(caller.tgid).encode()

    # -- contents -------------------------------------------------------------

    def open_file(self, ino: int, request: Request) -> bytes | Plan[Any, bytes]:
        """The whole file for one open handle, access-checked as the caller: its bytes, or the plan for them.

        What this does itself reads only what never waits on a target (stat,
        status, the owner of smaps; see Process.probe), so the adapter calls it
        on the event loop: a cached answer is served with no thread hop. What
        may wait (reading smaps, a whole-system pass) is returned as a Plan for
        worker threads.
        """
        node = decode(ino)
        if not node.is_file:
            raise NoSuchEntry(f"inode {ino}")
        if node.kind is Kind.PID:
            if self.engine.max_age == 0:
                # No answer can come from the cache, so there is nothing to
                # decide here: the whole read is one job, done in a worker.
                return Plan([functools.partial(self._read_pid, node.number, request)], _first)
            return self._open_pid(node.number, self.caller(request))
        # One Caller for the whole read: a view checks every process against it.
        caller = self.caller(request)
        if ino == TOTMAPS_INODE:
            return self.views.totmaps(caller)
        if ino == SUMMARY_INODE:
            return self.views.summary(caller)
        if ino == METRICS_INODE:
            return self.views.metrics(caller)
        return self.views.cgroup_totmaps(caller, self.cgroup_dirs.path_of_inode(ino, want_file=True))

    def read_file(self, ino: int, request: Request) -> bytes:
        """``open_file`` carried to its end in the calling thread (for the tests and the Python API)."""
        answer = self.open_file(ino, request)
        return answer if isinstance(answer, bytes) else answer.run()

    def _open_pid(self, pid: int, caller: Caller) -> bytes | Plan[bytes, bytes]:
        proc = self.reader.open(pid)
        try:
            probe = self.engine.probe(proc, caller)
            hit = self.engine.cached(probe)
        except BaseException:
            proc.close()
            raise
        if hit is not None:
            proc.close()
            return hit.text
        return Plan([functools.partial(self._resolve, probe)], _first)

    def _resolve(self, probe: Probe) -> bytes:
        with probe.proc:
            return self.engine.resolve(probe).text

    def _read_pid(self, pid: int, request: Request) -> bytes:
        return self.engine.totmaps(pid, self.caller(request)).text


def _first(parts: Sequence[bytes]) -> bytes:
    return parts[0]
