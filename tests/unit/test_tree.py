"""The tree without FUSE and without root: names as /proc reads them, the inode scheme, errors as errnos."""

from __future__ import annotations

import errno
import os

import pytest

from totmapsfs.engine import Engine
from totmapsfs.errors import NameTooLong, NoSuchEntry, NotADirectory
from totmapsfs.proc import Cgroup2
from totmapsfs.tree import (
    CGROUP_INODE,
    METRICS_INODE,
    PID_MAX_LIMIT,
    ROOT_INODE,
    SELF_INODE,
    SUMMARY_INODE,
    TOTMAPS_INODE,
    Kind,
    Tree,
    cgroup_inode,
    decode,
    parse_pid,
    pid_dir_inode,
    totmaps_inode,
)
from totmapsfs.views import Views


def make_tree(max_age: float = 1.0) -> Tree:
    engine = Engine(max_age=max_age)
    return Tree(engine, Views(engine, Cgroup2(engine.reader)))


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
        make_tree().lookup(ROOT_INODE, name)
    assert info.value.errno == err


def test_names_inside_a_pid_directory() -> None:
    tree = make_tree()
    pid_dir = tree.lookup(ROOT_INODE, str(os.getpid()).encode()).ino
    with pytest.raises(NameTooLong):
        tree.lookup(pid_dir, b"x" * 300)
    with pytest.raises(NoSuchEntry):
        tree.lookup(pid_dir, b"smaps")
    f = tree.lookup(pid_dir, b"totmaps")
    with pytest.raises(NotADirectory):
        tree.lookup(f.ino, b"x")
    assert [name for name, _ in tree.listdir(pid_dir)] == [b".", b"..", b"totmaps"]


def test_parse_pid_mirrors_proc() -> None:
    assert parse_pid(b"1") == 1 and parse_pid(b"4194303") == 4194303


def test_inodes_never_collide_and_decode_back() -> None:
    biggest_pid_inode = totmaps_inode(PID_MAX_LIMIT - 1)
    assert cgroup_inode(1, False) > biggest_pid_inode
    assert pid_dir_inode(1) > max(TOTMAPS_INODE, SUMMARY_INODE, METRICS_INODE, CGROUP_INODE, SELF_INODE)
    for ino, kind, number, is_file in [
        (ROOT_INODE, Kind.ROOT, 0, False),
        (SELF_INODE, Kind.SELF, 0, False),
        (SUMMARY_INODE, Kind.VIEW, SUMMARY_INODE, True),
        (CGROUP_INODE, Kind.CGROUP, 0, False),
        (pid_dir_inode(4194303), Kind.PID, 4194303, False),
        (totmaps_inode(1), Kind.PID, 1, True),
        (cgroup_inode(77, True), Kind.CGROUP, 77, True),
    ]:
        node = decode(ino)
        assert (node.kind, node.number, node.is_file) == (kind, number, is_file), ino
    for never in (0, 9, 255, totmaps_inode(PID_MAX_LIMIT)):
        with pytest.raises(NoSuchEntry):
            decode(never)


def test_view_files_are_files() -> None:
    tree = make_tree()
    assert tree.lookup(ROOT_INODE, b"summary").ino == SUMMARY_INODE
    assert tree.lookup(ROOT_INODE, b"metrics").ino == METRICS_INODE
    with pytest.raises(NotADirectory):
        tree.lookup(SUMMARY_INODE, b"x")
    with pytest.raises(NotADirectory):
        tree.listdir(METRICS_INODE)
