"""MOUNT/program/, MOUNT/user/ and MOUNT/<pid>/tree/: the grouped views' directories, their names and inodes.

A group directory exists for a caller while it may read a process of that
group (views.Groups.exists: no smaps read; names found up to a second ago
are taken again, as the kernel keeps an entry), as a pid directory exists while the
caller can see the process. Each (kind, name) gets an id, as cgroups do
(CgroupDirs), never reused: an inode left over from a vanished group gets
ENOENT, not another group. Their entries depend on the caller, so the FUSE
adapter lets the kernel cache none of them (fuse._ops._SHARED_KINDS).
"""

from __future__ import annotations

import os
import stat
import threading

from ..errors import NameTooLong, NoSuchEntry, NotADirectory
from ..proc import Caller, Process
from ..views import Groups, Plan, Snapshot
from ._cgroupdirs import check_name
from ._inodes import TOTMAPS, TREE_FILES, Attr, Kind, decode, group_inode, tree_file, tree_inode

# Past this many ids the table starts again (ids still never reused): names
# come and go with programs and users, and a host must not grow it for ever.
_MAX_IDS = 65536
_KINDS = ("program", "user")  # kind 0, 1: the ids of program/ and user/ themselves


def tree_attr(pid: int, which: int, proc: Process) -> Attr:
    """/<pid>/tree (``which`` 0) or one of its files, owned and dated as /proc/<pid> is."""
    st = proc.dir_stat()
    mode, nlink = (stat.S_IFREG | 0o444, 1) if which else (stat.S_IFDIR | 0o555, 2)
    return Attr(tree_inode(pid, which), mode, nlink, st.st_uid, st.st_gid, st.st_mtime_ns)


def tree_entries(pid: int, proc: Process, up: Attr) -> list[tuple[bytes, Attr]]:
    """The listing of /<pid>/tree; ``up`` is /<pid>."""
    return [(b".", tree_attr(pid, 0, proc)), (b"..", up)] + [
        (name, tree_attr(pid, which, proc)) for name, which in TREE_FILES.items()
    ]


def tree_plan(groups: Groups, ino: int, caller: Caller, host: int) -> Plan[Snapshot, bytes]:
    """The contents of a /<pid>/tree file for ``caller``; ``host`` is our number of the pid."""
    if tree_file(ino) == TREE_FILES[TOTMAPS]:
        return groups.tree_totmaps(caller, host)
    return groups.tree_processes(caller, host)


class GroupDirs:
    """program/ and user/, and the <name> directories in them, each holding a totmaps."""

    def __init__(self, groups: Groups, mounted_at_ns: int) -> None:
        self.groups = groups
        self.mounted_at_ns = mounted_at_ns
        self._lock = threading.Lock()
        self._ids: dict[tuple[int, str], int] = {}
        self._names: dict[int, tuple[int, str]] = {}
        self._next_id = 2

    def _id_of(self, kind: int, name: str) -> int:
        with self._lock:
            ident = self._ids.get((kind, name))
            if ident is None:
                if len(self._ids) >= _MAX_IDS:
                    self._ids.clear()
                    self._names.clear()
                ident = self._ids[kind, name] = self._next_id
                self._names[ident] = (kind, name)
                self._next_id += 1
            return ident

    def _name_of(self, ident: int) -> tuple[int, str]:
        with self._lock:
            found = self._names.get(ident)
        if found is None:
            raise NoSuchEntry(f"group id {ident}")
        return found

    def _attr(self, ino: int, is_file: bool) -> Attr:
        if is_file:
            return Attr(ino, stat.S_IFREG | 0o444, 1, 0, 0, self.mounted_at_ns)
        return Attr(ino, stat.S_IFDIR | 0o555, 1, 0, 0, self.mounted_at_ns)

    def attr(self, ino: int) -> Attr:
        node = decode(ino)
        if node.number >= 2:
            self._name_of(node.number)  # ENOENT for an id the table no longer has
        return self._attr(ino, node.is_file)

    def _kind_of_dir(self, ino: int) -> int:
        node = decode(ino)
        if node.kind is not Kind.GROUP or node.is_file:
            raise NotADirectory(f"inode {ino}")
        return node.number if node.number < 2 else -1

    def lookup(self, parent: int, name: bytes, caller: Caller) -> Attr:
        kind = self._kind_of_dir(parent)
        if kind < 0:  # a <name> directory: its one file
            if name != TOTMAPS:
                NameTooLong.check(name)
                raise NoSuchEntry(os.fsdecode(name))
            return self._attr(parent + 1, True)
        text = check_name(name)
        if not self.groups.exists(caller, kind == 0, text):
            raise NoSuchEntry(text)
        return self._attr(group_inode(self._id_of(kind, text), False), False)

    def listdir(self, ino: int, caller: Caller, root: Attr) -> list[tuple[bytes, Attr]]:
        kind = self._kind_of_dir(ino)
        here = self.attr(ino)
        if kind < 0:
            up = self._attr(group_inode(self._name_of(decode(ino).number)[0], False), False)
            return [(b".", here), (b"..", up), (TOTMAPS, self._attr(ino + 1, True))]
        entries = [(b".", here), (b"..", root)]
        for text in sorted(self.groups.names(caller, programs=kind == 0)):
            entries.append((os.fsencode(text), self._attr(group_inode(self._id_of(kind, text), False), False)))
        return entries

    def open(self, ino: int, caller: Caller) -> Plan[Snapshot, bytes]:
        node = decode(ino)
        if not node.is_file:
            raise NoSuchEntry(f"inode {ino}")
        kind, name = self._name_of(node.number)
        if kind == 0:
            return self.groups.program_totmaps(caller, name)
        return self.groups.user_totmaps(caller, name)
