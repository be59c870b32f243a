"""The tree's files beside totmaps: /files, /meminfo, /<pid>/files, /cgroup/.../meminfo (names, attributes, plans)."""

from __future__ import annotations

import functools
import stat
from typing import TYPE_CHECKING, Any

from ..errors import NoSuchEntry, NotADirectory, SourceError
from ..proc import Caller, within
from ..views import Family, FileViews, MeminfoViews, Plan, Snapshot, files_families, walk_families
from ._inodes import (
    FILES,
    FILES_INODE,
    MEMINFO,
    Attr,
    Inode,
    Kind,
    cgroup_inode,
    cgroup_meminfo_inode,
    pid_files_inode,
)

if TYPE_CHECKING:
    from ._callers import Request
    from ._tree import Tree


class Extra:
    """Per-process files and per-cgroup meminfo beside totmaps; the whole-system files and meminfo."""

    def __init__(self, tree: Tree) -> None:
        self.tree = tree
        self.files = FileViews(tree.views)
        self.meminfo = MeminfoViews(tree.views)

    def _pid_files_attr(self, pid: int, request: Request, wait: bool = True) -> Attr:
        # Owned as the process's totmaps is (as /proc/<pid>/smaps): the same access rule.
        tree = self.tree
        with tree._view(request) as view:
            host = tree._host(view, pid, wait)
        totmaps = tree._pid_attr(host, pid, True)
        return totmaps._replace(ino=pid_files_inode(pid))

    def _cgroup_attr(self, ident: int, request: Request, wait: bool = True) -> Attr:
        dirs = self.tree.cgroup_dirs
        top = self.tree.cgroup_top(request, wait)
        path = top if ident == 0 else dirs.path_of(ident)
        if not within(path, top):
            raise NoSuchEntry(f"cgroup id {ident}")
        st = dirs.cgroups.stat(path)
        return Attr(cgroup_meminfo_inode(ident), stat.S_IFREG | 0o444, 1, st.st_uid, st.st_gid, st.st_mtime_ns)

    def _cgroup_ident(self, node: Inode, request: Request, wait: bool = True) -> int:
        """The id of cgroup directory ``node`` as the meminfo inode holds it (0: the caller's top)."""
        top = self.tree.cgroup_top(request, wait)
        path = self.tree.cgroup_dirs.path_of_inode(cgroup_inode(node.number, False), want_file=False, top=top)
        return 0 if path == top else self.tree.cgroup_dirs.id_of(path)

    def attr(self, node: Inode, request: Request, wait: bool = True) -> Attr:
        """``wait`` False: WouldWait where a pid or cgroup namespace must be scanned for (Tree._deferred)."""
        if node.kind is Kind.PID_FILES:
            return self._pid_files_attr(node.number, request, wait)
        return self._cgroup_attr(node.number, request, wait)

    def lookup(self, parent: Inode, name: bytes, request: Request, wait: bool = True) -> Attr:
        if parent.is_file:
            raise NotADirectory(f"{parent.kind.value} {parent.number}")
        if parent.kind is Kind.PID and name == FILES:
            return self._pid_files_attr(parent.number, request, wait)
        if parent.kind is Kind.CGROUP and name == MEMINFO:
            return self._cgroup_attr(self._cgroup_ident(parent, request, wait), request, wait)
        raise NoSuchEntry(name.decode("utf-8", "replace"))

    def entries(self, parent: Inode, request: Request) -> list[tuple[bytes, Attr]]:
        if parent.kind is Kind.PID:
            return [(FILES, self._pid_files_attr(parent.number, request))]
        return [(MEMINFO, self._cgroup_attr(self._cgroup_ident(parent, request), request))]

    def metrics(self, caller: Caller, top: str | None) -> Plan[Any, bytes]:
        """MOUNT/metrics with the meminfo family, and the top files when --metrics-files-top asks (smaps walks)."""
        files_top = self.tree.views.metrics_options.files_top

        def extra(rows: Snapshot) -> list[Family]:
            try:
                out = self.meminfo.families(rows)
            except SourceError:
                out = []  # no /proc/meminfo to read (a --proc root without it): the rest of metrics stands
            out += walk_families(self.files.walks, rows)
            return out + files_families(rows, files_top) if files_top else out

        resolve = functools.partial(self.files.walks.resolve, strict=True) if files_top else None
        return self.tree.views.metrics(caller, top, extra=extra, resolve=resolve)

    def open_file(
        self, node: Inode, ino: int, request: Request, caller: Caller, wait: bool = True
    ) -> bytes | Plan[Any, bytes]:
        """As Tree.open_file, for ``caller`` (closed by the tree once the plan is made: see Tree._open_view)."""
        tree = self.tree
        if ino == FILES_INODE:
            return self.files.files(caller)
        if node.kind is Kind.PID_FILES:
            proc = tree.reader.open(tree._host(caller.pids, node.number, wait))
            try:
                checked = tree.engine.check(proc, caller)
            except BaseException:
                proc.close()
                raise
            return self.files.pid_files(checked)
        if node.kind is Kind.CGROUP_MEMINFO:
            top = tree.cgroup_top(request, wait)
            path = top if node.number == 0 else tree.cgroup_dirs.path_of(node.number)
            if not within(path, top):
                raise NoSuchEntry(f"inode {ino}")
            return self.meminfo.cgroup_meminfo(caller, path)
        return self.meminfo.meminfo(caller)
