"""MOUNT/cgroup/: the mirrored cgroup2 directories, each with a totmaps of its subtree, and their inodes.

Each directory gets a small id, stable for as long as the directory exists, so
it can have an inode (``_inodes.cgroup_inode``): the table maps both ways under
one lock (FUSE handlers run in many threads). Ids are never reused, so a kernel
dentry left over from a removed cgroup cannot resolve to another one: it gets
ENOENT.
"""

from __future__ import annotations

import os
import stat
import threading

from ..errors import NameTooLong, NoSuchEntry, NotADirectory
from ..proc import ROOT, Cgroup2, child_path, parent_path
from ._inodes import TOTMAPS, Attr, Kind, cgroup_inode, decode

# The id table is pruned of cgroups that no longer exist once it holds this
# many more entries than were alive after the last pruning: hosts that create
# a cgroup per container or per login must not grow it for ever.
_PRUNE_SLACK = 1024


def check_name(name: bytes) -> str:
    """A directory entry name a lookup may ask for; anything that could leave the tree is refused."""
    NameTooLong.check(name)
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise NoSuchEntry(name.decode("utf-8", "replace"))
    return os.fsdecode(name)


def _attr(ino: int, is_file: bool, st: os.stat_result) -> Attr:
    """A cgroup directory or its totmaps: owned and dated as the cgroup directory is."""
    mode = stat.S_IFREG | 0o444 if is_file else stat.S_IFDIR | 0o555
    return Attr(ino, mode, 1, st.st_uid, st.st_gid, st.st_mtime_ns)


class CgroupDirs:
    """The cgroup directories of the tree: attributes, lookups and listings over a Cgroup2 reader."""

    def __init__(self, cgroups: Cgroup2) -> None:
        self.cgroups = cgroups
        self._lock = threading.Lock()
        self._ids: dict[str, int] = {ROOT: 0}
        self._paths: dict[int, str] = {0: ROOT}
        self._next_id = 1
        self._alive = 1

    # -- the id table ---------------------------------------------------------------

    def id_of(self, path: str) -> int:
        """The id of directory ``path``, allocated on first sight."""
        with self._lock:
            ident = self._ids.get(path)
            if ident is None:
                if len(self._ids) > 2 * self._alive + _PRUNE_SLACK:
                    self._prune()
                ident = self._ids[path] = self._next_id
                self._paths[ident] = path
                self._next_id += 1
            return ident

    def path_of(self, ident: int) -> str:
        with self._lock:
            path = self._paths.get(ident)
        if path is None:
            raise NoSuchEntry(f"cgroup id {ident}")
        return path

    def _prune(self) -> None:
        # Lock held.
        for path in [p for p in self._ids if p != ROOT and not self.cgroups.exists(p)]:
            del self._paths[self._ids.pop(path)]
        self._alive = len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)

    # -- the directories --------------------------------------------------------------

    def path_of_inode(self, ino: int, want_file: bool) -> str:
        """The cgroup a cgroup inode names; NotADirectory/NoSuchEntry when it is the other kind."""
        node = decode(ino)
        if node.kind is not Kind.CGROUP:
            raise NoSuchEntry(f"inode {ino}")
        if node.is_file != want_file:
            raise NotADirectory(f"inode {ino}") if node.is_file else NoSuchEntry(f"inode {ino}")
        return self.path_of(node.number)

    def attr(self, ino: int) -> Attr:
        node = decode(ino)
        return _attr(ino, node.is_file, self.cgroups.stat(self.path_of(node.number)))

    def lookup(self, parent: int, name: bytes) -> Attr:
        path = self.path_of_inode(parent, want_file=False)
        if name == TOTMAPS:
            return self.attr(cgroup_inode(self.id_of(path), True))
        child = child_path(path, check_name(name))
        st = self.cgroups.stat(child)  # NoSuchEntry when there is no such cgroup; else its attributes too
        return _attr(cgroup_inode(self.id_of(child), False), False, st)

    def listdir(self, ino: int, root: Attr) -> list[tuple[bytes, Attr]]:
        """``.``, ``..`` (``root`` for the top), ``totmaps`` and the child cgroups of directory ``ino``."""
        path = self.path_of_inode(ino, want_file=False)
        ident = self.id_of(path)
        st = self.cgroups.stat(path)  # one stat serves the directory and its totmaps
        up = root if path == ROOT else self.attr(cgroup_inode(self.id_of(parent_path(path)), False))
        entries = [(b".", _attr(ino, False, st)), (b"..", up), (TOTMAPS, _attr(cgroup_inode(ident, True), True, st))]
        for name, child_st in self.cgroups.children(path):
            child = cgroup_inode(self.id_of(child_path(path, name)), False)
            entries.append((os.fsencode(name), _attr(child, False, child_st)))  # the listing's stat: no second one
        return entries
