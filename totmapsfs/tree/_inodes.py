"""The inode scheme: every inode of the mount computed from what it names, and decoded back.

Inodes are computed, not allocated: a pid directory's inode is a function of
its pid, so nothing has to be remembered or forgotten per lookup. A kernel
dentry that outlives its process (for up to the entry timeout) therefore
resolves to whatever process holds the pid when it is *opened*, and opening
re-pins the process and keys every cached answer by (pid, start time): a
reused pid never serves its predecessor's numbers.

    1 .. 255            the root, "self", "thread-self", the whole-system views, program/ and user/ (fixed)
    256 + 2*pid (+1)    a pid directory (its totmaps file)
    TREE + 4*pid + k    its tree/ directory (k 0), tree/totmaps (1), tree/processes (2)
    2**39 + pid         a pid directory's files (per mapping key; views.FileViews)
    2**40 + 2*id (+1)   a cgroup directory (its totmaps file), id from CgroupDirs;
                        the cgroup2 root is the fixed CGROUP_INODE (CGROUP_TOTMAPS_INODE)
    2**41 + 2*id (+1)   a program/<name> or user/<name> directory (its totmaps file), id from GroupDirs
    2**50 + id          a cgroup directory's meminfo (id 0: the top of the caller's namespace)
"""

from __future__ import annotations

import stat
from enum import Enum
from typing import NamedTuple

from ..errors import NameTooLong, NoSuchEntry

ROOT_INODE = 1  # FUSE_ROOT_ID
SELF_INODE = 2
TOTMAPS_INODE, SUMMARY_INODE, METRICS_INODE = 3, 4, 5  # whole-system views
CGROUP_INODE, CGROUP_TOTMAPS_INODE = 6, 7  # /cgroup and /cgroup/totmaps: the top of the caller's cgroup namespace
THREAD_SELF_INODE = 8
FILES_INODE, MEMINFO_INODE = 9, 10  # whole-system views (files, meminfo)
PROGRAMS_INODE, USERS_INODE = 11, 12  # the grouped tables (views.Groups)
PROGRAM_INODE, USER_INODE = 13, 14  # the program/ and user/ directories
_PID_BASE = 256  # inodes below this are the fixed ones above
# PID_MAX_LIMIT on 64-bit kernels (include/linux/threads.h): 4 * 1024 * 1024.
PID_MAX_LIMIT = 4 * 1024 * 1024
_PID_END = _PID_BASE + 2 * PID_MAX_LIMIT
# Far above the largest pid inode (256 + 2 * PID_MAX_LIMIT < 2**24).
_CGROUP_BASE = 1 << 40
_PID_FILES_BASE = 1 << 39
_CGROUP_MEMINFO_BASE = 1 << 50
_TREE_BASE = _PID_END  # up to _TREE_BASE + 4 * PID_MAX_LIMIT < 2**25
_TREE_END = _TREE_BASE + 4 * PID_MAX_LIMIT
_GROUP_BASE = 1 << 41

TOTMAPS = b"totmaps"
FILES = b"files"
MEMINFO = b"meminfo"
EXTRA_NAMES = (FILES, MEMINFO)  # in a pid directory (files) and a cgroup directory (meminfo): tree._extra
LINKS = {b"self": SELF_INODE, b"thread-self": THREAD_SELF_INODE}
CGROUP = b"cgroup"
VIEW_FILES = {
    b"totmaps": TOTMAPS_INODE,
    b"summary": SUMMARY_INODE,
    b"metrics": METRICS_INODE,
    FILES: FILES_INODE,
    MEMINFO: MEMINFO_INODE,
    b"programs": PROGRAMS_INODE,
    b"users": USERS_INODE,
}
GROUP_DIRS = {b"program": PROGRAM_INODE, b"user": USER_INODE}
TREE = b"tree"
TREE_FILES = {b"totmaps": 1, b"processes": 2}


class Kind(Enum):
    ROOT = "root"
    SELF = "self"  # /self and /thread-self: symlinks answered per caller
    VIEW = "view"  # /totmaps, /summary, /metrics
    PID = "pid"  # /<pid> and /<pid>/totmaps
    CGROUP = "cgroup"  # /cgroup/... and their totmaps
    PID_FILES = "pid_files"  # /<pid>/files
    CGROUP_MEMINFO = "cgroup_meminfo"  # /cgroup/.../meminfo
    TREE = "tree"  # /<pid>/tree and its files (number: the pid; file: which, see TREE_FILES)
    GROUP = "group"  # /program, /user, their <name> directories and totmaps (number: the GroupDirs id)


class Inode(NamedTuple):
    """What an inode names: its kind, the pid or cgroup id (or view inode) it is for, and whether it is a file."""

    kind: Kind
    number: int
    is_file: bool


class Attr(NamedTuple):
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


def pid_dir_inode(pid: int) -> int:
    return _PID_BASE + 2 * pid


def totmaps_inode(pid: int) -> int:
    return _PID_BASE + 2 * pid + 1


def pid_files_inode(pid: int) -> int:
    return _PID_FILES_BASE + pid


def cgroup_meminfo_inode(ident: int) -> int:
    return _CGROUP_MEMINFO_BASE + ident


def cgroup_inode(ident: int, is_file: bool) -> int:
    if ident == 0:
        return CGROUP_TOTMAPS_INODE if is_file else CGROUP_INODE
    return _CGROUP_BASE + 2 * ident + is_file


def tree_inode(pid: int, which: int = 0) -> int:
    """/<pid>/tree (``which`` 0) or one of its files (TREE_FILES)."""
    return _TREE_BASE + 4 * pid + which


def tree_file(ino: int) -> int:
    """Which file of a tree directory ``ino`` is (TREE_FILES); 0 for the directory."""
    return (ino - _TREE_BASE) % 4


def group_inode(ident: int, is_file: bool) -> int:
    """A group directory (its totmaps); ids 0 and 1 are program/ and user/ themselves, which have no file."""
    if ident < 2:
        return USER_INODE if ident else PROGRAM_INODE
    return _GROUP_BASE + 2 * ident + is_file


def decode(ino: int) -> Inode:
    """What ``ino`` names; NoSuchEntry for an inode we never hand out."""
    if _PID_BASE <= ino < _PID_END:  # first: every per-process request
        pid, is_file = divmod(ino - _PID_BASE, 2)
        return Inode(Kind.PID, pid, bool(is_file))
    if ino == ROOT_INODE:
        return Inode(Kind.ROOT, 0, False)
    if ino in (SELF_INODE, THREAD_SELF_INODE):
        return Inode(Kind.SELF, ino, False)
    if _TREE_BASE <= ino < _TREE_END:
        pid, which = divmod(ino - _TREE_BASE, 4)
        return Inode(Kind.TREE, pid, which != 0)
    if ino in (TOTMAPS_INODE, SUMMARY_INODE, METRICS_INODE, FILES_INODE, MEMINFO_INODE, PROGRAMS_INODE, USERS_INODE):
        return Inode(Kind.VIEW, ino, True)
    if ino in (PROGRAM_INODE, USER_INODE):
        return Inode(Kind.GROUP, ino - PROGRAM_INODE, False)
    if ino in (CGROUP_INODE, CGROUP_TOTMAPS_INODE):
        return Inode(Kind.CGROUP, 0, ino == CGROUP_TOTMAPS_INODE)
    if _PID_FILES_BASE <= ino < _PID_FILES_BASE + PID_MAX_LIMIT:
        return Inode(Kind.PID_FILES, ino - _PID_FILES_BASE, True)
    if ino >= _CGROUP_MEMINFO_BASE:
        return Inode(Kind.CGROUP_MEMINFO, ino - _CGROUP_MEMINFO_BASE, True)
    if ino >= _GROUP_BASE:
        ident, is_file = divmod(ino - _GROUP_BASE, 2)
        return Inode(Kind.GROUP, ident, bool(is_file))
    if ino >= _CGROUP_BASE:
        ident, is_file = divmod(ino - _CGROUP_BASE, 2)
        return Inode(Kind.CGROUP, ident, bool(is_file))
    raise NoSuchEntry(f"inode {ino}")


def parse_pid(name: bytes) -> int:
    """A directory name as /proc reads it: decimal, no sign, no leading zero (name_to_int)."""
    NameTooLong.check(name)
    if not name.isdigit() or name.startswith(b"0") or len(name) > 7:
        raise NoSuchEntry(name.decode("utf-8", "replace"))
    pid = int(name)
    if pid >= PID_MAX_LIMIT:
        raise NoSuchEntry(str(pid))
    return pid
