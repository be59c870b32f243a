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
from ..proc import ROOT, Cgroup2, child_path, parent_path, within
from ._inodes import CGROUP_INODE, TOTMAPS, Attr, Kind, cgroup_inode, decode

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

    def path_of_inode(self, ino: int, want_file: bool, top: str = ROOT) -> str:
        """The cgroup a cgroup inode names for a caller whose namespace begins at ``top``.

        NotADirectory/NoSuchEntry when it is the other kind, or a cgroup
        outside ``top`` (a kernel dentry another caller's lookup left, until
        it is revalidated).
        """
        node = decode(ino)
        if node.kind is not Kind.CGROUP:
            raise NoSuchEntry(f"inode {ino}")
        if node.is_file != want_file:
            raise NotADirectory(f"inode {ino}") if node.is_file else NoSuchEntry(f"inode {ino}")
        if node.number == 0:
            return top
        path = self.path_of(node.number)
        if not within(path, top):
            raise NoSuchEntry(f"inode {ino}")
        return path

    def attr(self, ino: int, top: str = ROOT) -> Attr:
        node = decode(ino)
        return _attr(ino, node.is_file, self.cgroups.stat(self.path_of_inode(ino, node.is_file, top)))

    def lookup(self, parent: int, name: bytes, top: str = ROOT) -> Attr:
        path = self.path_of_inode(parent, want_file=False, top=top)
        if name == TOTMAPS:
            return _attr(self._inode(path, top, True), True, self.cgroups.stat(path))
        child = child_path(path, check_name(name))
        st = self.cgroups.stat(child)  # NoSuchEntry when there is no such cgroup; else its attributes too
        return _attr(self._inode(child, top, False), False, st)

    def _inode(self, path: str, top: str, is_file: bool) -> int:
        """The inode of directory ``path`` (or its totmaps) for a caller whose namespace begins at ``top``."""
        return cgroup_inode(0 if path == top else self.id_of(path), is_file)

    def listdir(self, ino: int, root: Attr, top: str = ROOT) -> list[tuple[bytes, Attr]]:
        """``.``, ``..`` (``root`` for the top), ``totmaps`` and the child cgroups of directory ``ino``."""
        path = self.path_of_inode(ino, want_file=False, top=top)
        st = self.cgroups.stat(path)  # one stat serves the directory and its totmaps
        up = root if path == top else self.attr(self._inode(parent_path(path), top, False), top)
        entries = [(b".", _attr(ino, False, st)), (b"..", up), (TOTMAPS, _attr(self._inode(path, top, True), True, st))]
        for name, child_st in self.cgroups.children(path):
            if os.fsencode(name) == TOTMAPS:
                continue  # shadowed: lookup gives our totmaps, so the listing names it once
            child = self._inode(child_path(path, name), top, False)
            entries.append((os.fsencode(name), _attr(child, False, child_st)))  # the listing's stat: no second one
        return entries

    def handed_out(self) -> list[tuple[int, bytes]]:
        """(parent inode, name) of every cgroup entry we may have given the kernel: to invalidate them all."""
        with self._lock:
            paths = [p for p in self._ids if p != ROOT]
        out = [(CGROUP_INODE, TOTMAPS)]
        for path in paths:
            parent, name = parent_path(path), path.rpartition("/")[2]
            out.append((cgroup_inode(self.id_of(parent), False), os.fsencode(name)))
            out.append((cgroup_inode(self.id_of(path), False), TOTMAPS))
        return out
