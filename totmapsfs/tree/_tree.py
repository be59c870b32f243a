"""The tree: paths, attributes and file contents of the mount, mirroring /proc, with no FUSE in sight.

Layout::

    /               directory, lists "self", "thread-self" and one directory per process
    /self           symlink to the caller's own process directory ("<tgid>")
    /thread-self    symlink to the caller's thread ("<tid>": a thread id resolves, as in /proc)
    /<pid>/         directory, owned as /proc/<pid> is (the euid)
    /<pid>/totmaps  the summed smaps, mode 0444, size 0, owned as /proc/<pid>/smaps is
                    (root when the process is not dumpable)
    /totmaps, /summary, /metrics, /programs, /users
                    whole-system views over what the caller may read (views.Views, views.Groups)
    /<pid>/tree/    the process and its descendants: totmaps, and processes (how many summed, left out)
    /program/<name>/totmaps, /user/<name>/totmaps
                    the sums of one program's, one user's processes (GroupDirs)
    /cgroup/.../    the cgroup2 hierarchy from the top of the caller's cgroup namespace,
                    each directory with a totmaps of its subtree (CgroupDirs)
    /files, /<pid>/files, /meminfo, /cgroup/.../meminfo
                    per mapped file, and /proc/meminfo reconciled (_extra)

Every name is the caller's: pids are numbered as the caller's pid
namespace numbers them, and only processes it can see exist; ``cgroup/``
begins where its cgroup namespace does. Inodes are computed from the names
(``_inodes``), the same for every caller, and each request interprets them
for its caller; the one thing that differs between callers is whether a name
exists and what it is, which the kernel caches per dentry. So once a caller
in another namespace has been seen, ``mixed`` tells the FUSE adapter to stop
letting the kernel cache those entries.
"""

from __future__ import annotations

import functools
import stat
import time
from collections.abc import Callable, Sequence
from typing import Any, TypeVar

from ..engine import Checked, Engine
from ..errors import NameTooLong, NoSuchEntry, NotADirectory
from ..proc import Caller, PidView, WouldWait
from ..views import Groups, Plan, Views
from ._callers import Callers, Mixed, Request
from ._cgroupdirs import CgroupDirs
from ._extra import Extra
from ._groupdirs import GroupDirs, tree_attr, tree_entries, tree_plan
from ._inodes import (
    CGROUP,
    CGROUP_INODE,
    EXTRA_NAMES,
    FILES_INODE,
    GROUP_DIRS,
    LINKS,
    MEMINFO,
    MEMINFO_INODE,
    METRICS_INODE,
    PROGRAMS_INODE,
    ROOT_INODE,
    SELF_INODE,
    SUMMARY_INODE,
    TOTMAPS,
    TOTMAPS_INODE,
    TREE,
    TREE_FILES,
    USERS_INODE,
    VIEW_FILES,
    Attr,
    Kind,
    decode,
    parse_pid,
    pid_dir_inode,
    totmaps_inode,
    tree_file,
    tree_inode,
)

T = TypeVar("T")


class Tree(Callers):
    """Answers the filesystem's questions from the engine, the views and the proc reader."""

    def __init__(self, engine: Engine, views: Views, *, per_caller_names: bool = False) -> None:
        """``per_caller_names``: mixed from the start (see Mixed), not from the first foreign caller on."""
        self.engine = engine
        self.reader = engine.reader
        self.access = engine.access
        self.views = views
        self.cgroup_dirs = CgroupDirs(views.cgroups)
        self.extra = Extra(self)
        self.mounted_at_ns = time.time_ns()  # when mounted, in ns: the fixed files' mtime
        self.groups = Groups(views)
        self.group_dirs = GroupDirs(self.groups, self.mounted_at_ns)
        self.mixed = Mixed()
        if per_caller_names:
            self.mixed.pids = self.mixed.cgroups = True

    # -- attributes -----------------------------------------------------------

    def _root_attr(self) -> Attr:
        # nlink 1: "unknown", so find(1) does not infer a subdirectory count.
        return Attr(ROOT_INODE, stat.S_IFDIR | 0o555, 1, 0, 0, self.mounted_at_ns)

    def _link_attr(self, ino: int) -> Attr:
        return Attr(ino, stat.S_IFLNK | 0o777, 1, 0, 0, self.mounted_at_ns)

    def _view_attr(self, ino: int) -> Attr:
        return Attr(ino, stat.S_IFREG | 0o444, 1, 0, 0, self.mounted_at_ns)

    def _pid_attr(self, host: int, pid: int, is_file: bool) -> Attr:
        """The directory (or totmaps) of the process we number ``host`` and the caller ``pid``."""
        with self.reader.open(host) as proc:
            st = proc.smaps_stat() if is_file else proc.dir_stat()
        if is_file:
            return Attr(totmaps_inode(pid), stat.S_IFREG | 0o444, 1, st.st_uid, st.st_gid, st.st_mtime_ns)
        return Attr(pid_dir_inode(pid), stat.S_IFDIR | 0o555, 2, st.st_uid, st.st_gid, st.st_mtime_ns)

    # -- what may wait --------------------------------------------------------------

    def _deferred(self, fn: Callable[..., T], *args: Any) -> T | Plan[T, T]:
        """``fn(*args, wait=False)`` here (the event loop), or a Plan that calls it with ``wait`` in a worker.

        For the requests answered on the event loop: what would wait there (a
        scan of /proc, a thread's setns; proc.WouldWait) goes to a worker, so
        one slow request never stalls the other readers of the mount.
        """
        try:
            return fn(*args, wait=False)
        except WouldWait:
            return Plan([functools.partial(fn, *args, wait=True)], _first)

    def getattr(self, ino: int, request: Request) -> Attr | Plan[Attr, Attr]:
        return self._deferred(self._getattr, ino, request)

    def lookup(self, parent: int, name: bytes, request: Request) -> Attr | Plan[Attr, Attr]:
        return self._deferred(self._lookup, parent, name, request)

    def _getattr(self, ino: int, request: Request, wait: bool) -> Attr:
        node = decode(ino)
        if node.kind is Kind.ROOT:
            return self._root_attr()
        if node.kind is Kind.SELF:
            return self._link_attr(ino)
        if node.kind is Kind.VIEW:
            return self._view_attr(ino)
        if node.kind is Kind.CGROUP:
            return self.cgroup_dirs.attr(ino, self.cgroup_top(request, wait))
        if node.kind in (Kind.PID_FILES, Kind.CGROUP_MEMINFO):
            return self.extra.attr(node, request, wait)
        if node.kind is Kind.GROUP:
            return self.group_dirs.attr(ino)
        with self._view(request) as view:
            if node.kind is Kind.TREE:
                return self._tree_attr(view, node.number, ino, wait)
            return self._pid_attr(self._host(view, node.number, wait), node.number, node.is_file)

    def _tree_attr(self, view: PidView, pid: int, ino: int, wait: bool = True) -> Attr:
        with self.reader.open(self._host(view, pid, wait)) as proc:
            return tree_attr(pid, tree_file(ino), proc)

    # -- names ----------------------------------------------------------------

    def _lookup(self, parent: int, name: bytes, request: Request, wait: bool) -> Attr:
        node = decode(parent)
        if node.kind is Kind.ROOT:
            if name in LINKS:
                return self._link_attr(LINKS[name])
            if name in VIEW_FILES:
                return self._view_attr(VIEW_FILES[name])
            if name == CGROUP:
                return self.cgroup_dirs.attr(CGROUP_INODE, self.cgroup_top(request, wait))
            if name in GROUP_DIRS:
                return self.group_dirs.attr(GROUP_DIRS[name])
            # Who asks first, then whether the name is a pid at all: a caller from
            # another namespace is noticed (tree.Mixed) even by a lookup that fails.
            with self._view(request) as view:
                pid = parse_pid(name)
                return self._pid_attr(self._host(view, pid, wait), pid, False)
        if node.kind is Kind.CGROUP:
            if name == MEMINFO:  # shadows a child cgroup of that name, as totmaps does
                return self.extra.lookup(node, name, request, wait)
            return self.cgroup_dirs.lookup(parent, name, self.cgroup_top(request, wait))
        if node.kind is Kind.GROUP:
            with self.caller(request) as caller:
                return self.group_dirs.lookup(parent, name, caller)
        if node.kind is Kind.TREE and not node.is_file and name in TREE_FILES:
            with self._view(request) as view:
                return self._tree_attr(view, node.number, tree_inode(node.number, TREE_FILES[name]), wait)
        if node.is_file or node.kind is not Kind.PID:
            raise NotADirectory(f"inode {parent}")
        if name in EXTRA_NAMES:
            return self.extra.lookup(node, name, request, wait)
        if name == TREE:
            with self._view(request) as view:
                return self._tree_attr(view, node.number, tree_inode(node.number), wait)
        if name != TOTMAPS:
            NameTooLong.check(name)
            raise NoSuchEntry(name.decode("utf-8", "replace"))
        with self._view(request) as view:
            return self._pid_attr(self._host(view, node.number, wait), node.number, True)

    def visible(self, view: PidView | None) -> list[tuple[int, int]]:
        """(our pid, the caller's pid) of every process the caller's namespace holds, in the caller's order."""
        pids = self.reader.pids()
        self.engine.forget_dead(pids)
        return self.access.pids.visible(view, pids)

    def _root_entries(self, request: Request) -> list[tuple[bytes, Attr]]:
        root = self._root_attr()
        entries = [(b".", root), (b"..", root)]
        entries.extend((name, self._link_attr(ino)) for name, ino in LINKS.items())
        entries.extend((name, self._view_attr(ino)) for name, ino in VIEW_FILES.items())
        entries.extend((name, self.group_dirs.attr(ino)) for name, ino in GROUP_DIRS.items())
        try:
            entries.append((CGROUP, self.cgroup_dirs.attr(CGROUP_INODE, self.cgroup_top(request))))
        except NoSuchEntry:
            pass  # no cgroup2 mounted, or none the caller has: no cgroup directory
        with self._view(request) as view:
            visible = self.visible(view)
        for host, pid in visible:
            try:
                entries.append((str(pid).encode(), self._pid_attr(host, pid, False)))
            except NoSuchEntry:
                continue  # exited between listing and stat, as /proc would skip it
        return entries

    def listdir(self, ino: int, request: Request) -> list[tuple[bytes, Attr]]:
        """A directory's entries with their attributes, as one snapshot."""
        node = decode(ino)
        if node.kind is Kind.ROOT:
            return self._root_entries(request)
        if node.kind is Kind.CGROUP:
            extra = self.extra.entries(node, request)
            shadowed = {name for name, _ in extra}  # lookup gives these files, not child cgroups of their names
            entries = self.cgroup_dirs.listdir(ino, self._root_attr(), self.cgroup_top(request))
            return [entry for entry in entries if entry[0] not in shadowed] + extra
        if node.kind is Kind.GROUP:
            with self.caller(request) as caller:
                return self.group_dirs.listdir(ino, caller, self._root_attr())
        if node.is_file or node.kind not in (Kind.PID, Kind.TREE):
            raise NotADirectory(f"inode {ino}")
        pid = node.number
        with self._view(request) as view:
            host = self._host(view, pid)
        here = self._pid_attr(host, pid, False)
        if node.kind is Kind.TREE:
            with self.reader.open(host) as proc:
                return tree_entries(pid, proc, here)
        with self.reader.open(host) as proc:
            tree = (TREE, tree_attr(pid, 0, proc))
        entries = [(b".", here), (b"..", self._root_attr()), (TOTMAPS, self._pid_attr(host, pid, True)), tree]
        return entries + self.extra.entries(node, request)

    def readlink(self, ino: int, request: Request) -> bytes:
        if decode(ino).kind is not Kind.SELF:
            raise NoSuchEntry(f"inode {ino}")
        with self.caller(request) as caller:
            if caller.tgid <= 0 or caller.pids is None:
                # The caller is not visible in our pid namespace; /proc/self is
                # dangling there too.
                raise NoSuchEntry("self")
            return str(caller.ns_tgid if ino == SELF_INODE else caller.ns_tid).encode()

    def handed_out(self) -> list[tuple[int, bytes]]:
        """(parent inode, name) of the entries the kernel may hold that differ between namespaces (see ``mixed``)."""
        out: list[tuple[int, bytes]] = []
        if self.mixed.pids:
            # Thread ids too: a tid resolves as in /proc though it is not listed.
            out.extend((ROOT_INODE, str(tid).encode()) for tid in self.reader.task_ids())
        if self.mixed.cgroups:
            out.append((ROOT_INODE, CGROUP))
            out.extend(self.cgroup_dirs.handed_out())
        return out

    # -- contents -------------------------------------------------------------

    def open_file(self, ino: int, request: Request) -> bytes | Plan[Any, bytes]:
        """``_open_file`` on the event loop; carried to its end in a worker if it would wait there (``_deferred``)."""
        try:
            return self._open_file(ino, request, False)
        except WouldWait:
            return Plan([functools.partial(self._read_file, ino, request)], _first)

    def _open_file(self, ino: int, request: Request, wait: bool) -> bytes | Plan[Any, bytes]:
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
        if node.kind in (Kind.PID_FILES, Kind.CGROUP_MEMINFO) or ino in (FILES_INODE, MEMINFO_INODE):
            with self.caller(request) as caller:
                return self.extra.open_file(node, ino, request, caller, wait)
        if node.kind is Kind.PID:
            if self.engine.always_walks:
                # No answer can come from the cache, so there is nothing to
                # decide here: the whole read is one job, done in a worker.
                return Plan([functools.partial(self._read_pid, node.number, request)], _first)
            with self.caller(request) as caller:
                return self._open_pid(self._host(caller.pids, node.number, wait), caller)
        # One Caller for the whole read: a view checks every process against it.
        # Its pid namespace is closed once the plan is made: a plan translates
        # the caller's pids through a copy of its own (Views.plan), which its
        # first slice closes.
        with self.caller(request) as caller:
            return self._open_view(ino, request, caller, wait)

    def _open_view(self, ino: int, request: Request, caller: Caller, wait: bool) -> bytes | Plan[Any, bytes]:
        node = decode(ino)
        if ino == TOTMAPS_INODE:
            return self.views.totmaps(caller)
        if ino == SUMMARY_INODE:
            return self.views.summary(caller)
        if ino == PROGRAMS_INODE:
            return self.groups.programs(caller)
        if ino == USERS_INODE:
            return self.groups.users(caller)
        if node.kind is Kind.GROUP:
            return self.group_dirs.open(ino, caller)
        if node.kind is Kind.TREE:
            return tree_plan(self.groups, ino, caller, self._host(caller.pids, node.number, wait))
        if ino == METRICS_INODE:
            try:
                top: str | None = self.cgroup_top(request, wait)
            except NoSuchEntry:
                top = None  # no cgroup the caller can be shown: series without cgroup labels
            return self.extra.metrics(caller, top)
        top = self.cgroup_top(request, wait)
        return self.views.cgroup_totmaps(caller, self.cgroup_dirs.path_of_inode(ino, want_file=True, top=top))

    def _read_file(self, ino: int, request: Request) -> bytes:
        """``_open_file`` carried to its end in the calling thread (a worker: it may wait)."""
        answer = self._open_file(ino, request, True)
        return answer if isinstance(answer, bytes) else answer.run()

    def _open_pid(self, pid: int, caller: Caller) -> bytes | Plan[bytes, bytes]:
        proc = self.reader.open(pid)
        try:
            checked = self.engine.check(proc, caller)
            hit = self.engine.cached(checked)
        except BaseException:
            proc.close()
            raise
        if hit is not None:
            proc.close()
            return self.views.pid_text(hit)
        return Plan([functools.partial(self._resolve, checked)], _first)

    def _resolve(self, checked: Checked) -> bytes:
        with checked.proc:
            return self.views.pid_text(self.engine.resolve(checked))

    def _read_pid(self, pid: int, request: Request) -> bytes:
        with self.caller(request) as caller:
            return self.views.pid_text(self.engine.totmaps(self._host(caller.pids, pid), caller))


def _first(parts: Sequence[T]) -> T:
    return parts[0]
