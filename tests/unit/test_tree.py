"""The tree without FUSE and without root: names as /proc reads them, the inode scheme, errors as errnos."""

from __future__ import annotations

import errno
import os

import pytest

import totmapsfs.tree as t
from totmapsfs.engine import Engine
from totmapsfs.errors import NameTooLong, NoSuchEntry, NotADirectory
from totmapsfs.proc import Cgroup2
from totmapsfs.views import Views

ME = t.Request(tid=os.getpid(), uid=0, gid=0)


def make_tree(max_age: float = 1.0) -> t.Tree:
    engine = Engine(max_age=max_age)
    return t.Tree(engine, Views(engine, Cgroup2(engine.reader)))


@pytest.mark.parametrize(
    "name, err",
    [
        (b"0", errno.ENOENT),
        (b"-1", errno.ENOENT),
        (b"1x", errno.ENOENT),
        (b"01", errno.ENOENT),
        (b"..", errno.ENOENT),
        (b"..x", errno.ENOENT),
        (b"", errno.ENOENT),
        (b"self2", errno.ENOENT),
        (b"99999999999", errno.ENOENT),
        (b"4194304", errno.ENOENT),
        (b"99999999999999999999", errno.ENOENT),
        (b"9" * 300, errno.ENAMETOOLONG),
        (b"1" * 300, errno.ENAMETOOLONG),
    ],
)
def test_names_that_are_not_pids(name: bytes, err: int) -> None:
    with pytest.raises((NoSuchEntry, NameTooLong)) as info:
        make_tree().lookup(t.ROOT_INODE, name, ME)
    assert info.value.errno == err


def test_names_inside_a_pid_directory() -> None:
    tree = make_tree()
    pid_dir = tree.lookup(t.ROOT_INODE, str(os.getpid()).encode(), ME).ino
    with pytest.raises(NameTooLong):
        tree.lookup(pid_dir, b"x" * 300, ME)
    with pytest.raises(NoSuchEntry):
        tree.lookup(pid_dir, b"smaps", ME)
    f = tree.lookup(pid_dir, b"totmaps", ME)
    with pytest.raises(NotADirectory):
        tree.lookup(f.ino, b"x", ME)
    assert [name for name, _ in tree.listdir(pid_dir, ME)] == [b".", b"..", b"totmaps", b"tree", b"files"]
    files = tree.lookup(pid_dir, b"files", ME)
    assert files.ino == t.pid_files_inode(os.getpid()) and not files.is_dir
    assert tree.getattr(files.ino, ME) == files


def test_parse_pid_mirrors_proc() -> None:
    assert t.parse_pid(b"1") == 1 and t.parse_pid(b"4194303") == 4194303


def test_inodes_never_collide_and_decode_back() -> None:
    biggest_pid_inode = t.totmaps_inode(t.PID_MAX_LIMIT - 1)
    assert t.cgroup_inode(1, False) > biggest_pid_inode
    assert t.pid_dir_inode(1) > max(t.TOTMAPS_INODE, t.SUMMARY_INODE, t.METRICS_INODE, t.CGROUP_INODE, t.SELF_INODE)
    for ino, kind, number, is_file in [
        (t.ROOT_INODE, t.Kind.ROOT, 0, False),
        (t.SELF_INODE, t.Kind.SELF, t.SELF_INODE, False),
        (t.THREAD_SELF_INODE, t.Kind.SELF, t.THREAD_SELF_INODE, False),
        (t.SUMMARY_INODE, t.Kind.VIEW, t.SUMMARY_INODE, True),
        (t.CGROUP_INODE, t.Kind.CGROUP, 0, False),
        (t.pid_dir_inode(4194303), t.Kind.PID, 4194303, False),
        (t.totmaps_inode(1), t.Kind.PID, 1, True),
        (t.cgroup_inode(77, True), t.Kind.CGROUP, 77, True),
        (t.FILES_INODE, t.Kind.VIEW, t.FILES_INODE, True),
        (t.MEMINFO_INODE, t.Kind.VIEW, t.MEMINFO_INODE, True),
        (t.pid_files_inode(4194303), t.Kind.PID_FILES, 4194303, True),
        (t.cgroup_meminfo_inode(0), t.Kind.CGROUP_MEMINFO, 0, True),
        (t.cgroup_meminfo_inode(77), t.Kind.CGROUP_MEMINFO, 77, True),
        (t.PROGRAMS_INODE, t.Kind.VIEW, t.PROGRAMS_INODE, True),
        (t.USER_INODE, t.Kind.GROUP, 1, False),
        (t.group_inode(5, True), t.Kind.GROUP, 5, True),
        (t.tree_inode(4194303, 2), t.Kind.TREE, 4194303, True),
        (t.tree_inode(1), t.Kind.TREE, 1, False),
    ]:
        node = t.decode(ino)
        assert (node.kind, node.number, node.is_file) == (kind, number, is_file), ino
    assert t.pid_files_inode(t.PID_MAX_LIMIT - 1) < t.cgroup_inode(1, False)
    assert t.cgroup_meminfo_inode(0) > t.cgroup_inode(2**38, True)
    assert t.tree_inode(0) > biggest_pid_inode and t.tree_inode(t.PID_MAX_LIMIT, 3) < t.cgroup_inode(1, False)
    assert t.group_inode(2, False) > t.cgroup_inode(1 << 38, True)
    assert t.group_inode(1 << 38, True) < t.cgroup_meminfo_inode(0)
    # totmaps_inode(PID_MAX_LIMIT) is a tree inode: the tree range starts where the pids end.
    for never in (
        0,
        15,
        255,
        t.pid_files_inode(t.PID_MAX_LIMIT),
        t.tree_inode(t.PID_MAX_LIMIT),
    ):
        with pytest.raises(NoSuchEntry):
            t.decode(never)


def test_view_files_are_files() -> None:
    tree = make_tree()
    assert tree.lookup(t.ROOT_INODE, b"summary", ME).ino == t.SUMMARY_INODE
    assert tree.lookup(t.ROOT_INODE, b"metrics", ME).ino == t.METRICS_INODE
    with pytest.raises(NotADirectory):
        tree.lookup(t.SUMMARY_INODE, b"x", ME)
    with pytest.raises(NotADirectory):
        tree.listdir(t.METRICS_INODE, ME)


def test_meminfo_in_cgroup_directories_only() -> None:
    tree = make_tree()
    try:
        cgroup = tree.lookup(t.ROOT_INODE, b"cgroup", ME)
    except NoSuchEntry:
        pytest.skip("no cgroup2 here")
    meminfo = tree.lookup(cgroup.ino, b"meminfo", ME)
    assert meminfo.ino == t.cgroup_meminfo_inode(0) and tree.getattr(meminfo.ino, ME) == meminfo
    assert b"meminfo" in [name for name, _ in tree.listdir(cgroup.ino, ME)]
    with pytest.raises(NotADirectory):
        tree.lookup(t.CGROUP_TOTMAPS_INODE, b"meminfo", ME)
    with pytest.raises(NotADirectory):
        tree.lookup(meminfo.ino, b"x", ME)
    with pytest.raises(NoSuchEntry):
        tree.lookup(cgroup.ino, b"files", ME)  # a child cgroup of that name would be looked for, not shadowed
    pid_dir = tree.lookup(t.ROOT_INODE, str(os.getpid()).encode(), ME).ino
    with pytest.raises(NoSuchEntry):
        tree.lookup(pid_dir, b"meminfo", ME)
