"""The views and the tree over the engine, without a mount: real cgroups, other users' processes."""

from __future__ import annotations

import os

import pytest

from support.cgroups import Cgroup
from support.kernel import NOBODY
from support.passes import cgroup_members, read_file, snapshot
from totmapsfs.engine import Engine
from totmapsfs.errors import AccessDenied, NameTooLong, NoSuchEntry
from totmapsfs.proc import Cgroup2
from totmapsfs.tree import CGROUP_INODE, ROOT_INODE, TOTMAPS_INODE, Request, Tree
from totmapsfs.views import Views


def views_of(engine: Engine) -> Views:
    return Views(engine, Cgroup2(engine.reader))


def test_views_on_the_engine(workloads, cgroup: Cgroup) -> None:
    w = workloads("--children", "2", "--private", "4")
    nobody = workloads(user=NOBODY)
    cgroup.add(w.pid, *w.children, nobody.pid)
    engine = Engine(max_age=3600)
    views = views_of(engine)
    with w.stopped(), nobody.stopped():
        rows = {r.pid: r for r in snapshot(views, None, cgroups=True)}
        for pid in (w.pid, *w.children):
            assert rows[pid].fields == engine.totmaps(pid).fields
            assert rows[pid].cgroup == cgroup.rel
        members = cgroup_members(views, None, cgroup.rel)
        assert sorted(r.pid for r in members) == sorted([w.pid, *w.children, nobody.pid])
        # Warm: a second pass is served from the cache for processes that held still.
        hits = engine.counters.hits
        snapshot(views, None)
        assert engine.counters.hits - hits >= len(rows) // 2
        assert views.threads_for(len(rows)) == 1  # so the next pass stays in one thread
        # As nobody (its own process is the caller): its own processes only.
        caller = engine.access.identify(nobody.pid, NOBODY, NOBODY)
        seen = snapshot(views, caller)
        assert nobody.pid in {r.pid for r in seen} and {r.uid for r in seen} == {NOBODY}
        assert [r.pid for r in cgroup_members(views, caller, cgroup.rel)] == [nobody.pid]
    assert views_of(Engine()).field_names()[:2] == ("Rss", "Pss")


def test_tree_cgroup_directories(cgroup: Cgroup) -> None:
    engine = Engine(max_age=0)
    tree = Tree(engine, views_of(engine))
    me = Request(tid=os.getpid(), uid=0, gid=0)
    assert read_file(tree, TOTMAPS_INODE, me).startswith(b"Rss:")
    top = tree.lookup(ROOT_INODE, b"cgroup", me)
    assert top.ino == CGROUP_INODE and top.is_dir
    node = top
    for part in cgroup.rel.strip("/").split("/"):
        node = tree.lookup(node.ino, part.encode(), me)
    inner = cgroup.child("inner")
    child = tree.lookup(node.ino, b"inner", me)
    assert child.is_dir and tree.getattr(child.ino, me) == child
    names = [n for n, _ in tree.listdir(node.ino, me)]
    assert names == [b".", b"..", b"totmaps", b"inner", b"meminfo"]
    assert read_file(tree, tree.lookup(child.ino, b"totmaps", me).ino, me).startswith(b"Rss:")
    for bad in (b"..", b".", b"a/b", b"totmaps/x"):
        with pytest.raises(NoSuchEntry):
            tree.lookup(node.ino, bad, me)
    with pytest.raises(NameTooLong):
        tree.lookup(node.ino, b"x" * 300, me)
    inner.path.rmdir()
    with pytest.raises(NoSuchEntry):
        tree.getattr(child.ino, me)  # a removed cgroup is gone, not stale


def test_read_file_checks_access(workloads) -> None:
    engine = Engine()
    tree = Tree(engine, views_of(engine))
    target = workloads()  # root's
    caller = workloads(user=NOBODY)  # the request comes from this process
    me = Request(tid=os.getpid(), uid=0, gid=0)
    ino = tree.lookup(tree.lookup(ROOT_INODE, str(target.pid).encode(), me).ino, b"totmaps", me).ino
    with pytest.raises(AccessDenied):
        read_file(tree, ino, Request(tid=caller.pid, uid=NOBODY, gid=NOBODY))
    own = tree.lookup(tree.lookup(ROOT_INODE, str(caller.pid).encode(), me).ino, b"totmaps", me).ino
    assert b"Pss:" in read_file(tree, own, Request(tid=caller.pid, uid=NOBODY, gid=NOBODY))
    assert b"Pss:" in read_file(tree, ino, Request(tid=os.getpid(), uid=0, gid=0))
