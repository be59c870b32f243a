"""Cgroup namespaces: MOUNT/cgroup/ is rooted at the caller's namespace root, metrics' labels are its paths.

The test makes a cgroup tree (the ``cgroup`` fixture), starts an agent that
moves itself into ``<cgroup>/ns`` and then unshares its cgroup namespace (as
``unshare --cgroup`` run there), so that its /proc/self/cgroup says "0::/".
Two workloads it starts sit in ``ns`` and ``ns/inner``, stopped while read.
The reference is the same cgroup seen from the host: MOUNT/cgroup/<path>/
totmaps read by the test, itself checked against the members' smaps_rollup
(the kernel's figures), and the paths the caller's own /proc shows.
"""

from __future__ import annotations

import os
import signal
from collections.abc import Iterator
from dataclasses import dataclass

import pytest

from support.cgroups import Cgroup
from support.kernel import fields, read_rollup, settled
from support.mounts import module_mount
from support.namespaces import Agent, AgentError, Verdicts, answer, value
from support.views import metrics
from totmapsfs.engine import Engine
from totmapsfs.harness import Mount, state, wait_for
from totmapsfs.proc import Cgroup2
from totmapsfs.tree import CGROUP_INODE, ROOT_INODE, Attr, Request, Tree
from totmapsfs.views import Plan, Views


@pytest.fixture(scope="module")
def mount() -> Iterator[Mount]:
    """The cache off (no max-age, no duty), every process in metrics (the workloads are small among the host's)."""
    yield from module_mount("--max-age", "0", "--duty", "1", "--metrics-top", "100000")


@dataclass
class CgroupNs:
    agent: Agent
    root: Cgroup  # the namespace's root, <cgroup>/ns
    inner: Cgroup
    w1: int  # in the root
    w2: int  # in inner

    @property
    def members(self) -> list[int]:
        return [self.agent.pid, self.w1, self.w2]


@pytest.fixture
def cgns(cgroup: Cgroup) -> Iterator[CgroupNs]:
    root = cgroup.child("ns")
    inner = root.child("inner")
    root.child("empty")
    procs = root.path / "cgroup.procs"
    agent = Agent("--unshare", "cgroup", preexec=lambda: procs.write_text(str(os.getpid())), label="cgroup namespace")
    try:
        w1 = agent.workload("w1", "--marker", "8")
        w2 = agent.workload("w2", "--marker", "4")
        inner.add(w2)
        seen = agent.run(["read", "/proc/self/cgroup"], ["read", f"/proc/{w1}/cgroup"], ["read", f"/proc/{w2}/cgroup"])
        paths = [own_line(value(r, "/proc/<pid>/cgroup")) for r in seen]
        if paths != ["/", "/", "/inner"] or sorted(root.procs()) != sorted([agent.pid, w1]):
            raise AgentError(f"set-up: the namespace's processes see their cgroups as {paths}")
        yield CgroupNs(agent, root, inner, w1, w2)
    finally:
        agent.close()


def own_line(text: str) -> str:
    """The cgroup v2 path of a /proc/<pid>/cgroup text (its "0::" line)."""
    return next(line[3:] for line in text.splitlines() if line.startswith("0::"))


def stop(*pids: int) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGSTOP)
    for pid in pids:
        wait_for(lambda p=pid: state(p) == "T", what=f"{pid} to stop")


def cont(*pids: int) -> None:
    for pid in pids:
        os.kill(pid, signal.SIGCONT)


def add(dicts: list[dict[str, int]]) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def host_view(mount: Mount, group: Cgroup) -> dict[str, int]:
    return fields((mount.path / "cgroup" / group.rel.lstrip("/") / "totmaps").read_bytes())


def test_cgroup_root_is_the_callers_namespace_root(mount: Mount, cgns: CgroupNs) -> None:
    m, expect = mount.path, Verdicts()
    stop(cgns.w1, cgns.w2)  # the agent itself stays still while it waits for a command
    try:
        # The kernel's side: the host's view of the namespace root is its members' smaps_rollup summed.
        parts, (root_sum, inner_sum) = settled(
            lambda: [read_rollup(pid) for pid in cgns.members],
            lambda: (host_view(mount, cgns.root), host_view(mount, cgns.inner)),
        )
        if root_sum != add(parts) or inner_sum != parts[2]:
            raise AgentError(
                "set-up: the host's MOUNT/cgroup/<ns root>/totmaps is not its members' smaps_rollup summed"
            )
        # The caller inside reads between two reads of the host's view, until the host's held still around it.
        for _ in range(10):
            before = host_view(mount, cgns.root)
            got = cgns.agent.run(
                ["read", str(m / "cgroup" / "totmaps")],
                ["read", str(m / "cgroup" / "inner" / "totmaps")],
                ["listdir", str(m / "cgroup")],
            )
            after = host_view(mount, cgns.root)
            if before == after and answer(got[0]) == "ok" and fields(got[0]["ok"].encode()) == before:
                break
        inner_after = host_view(mount, cgns.inner)
    finally:
        cont(cgns.w1, cgns.w2)
    children = sorted(p.name for p in cgns.root.path.iterdir() if p.is_dir())
    assert children == ["empty", "inner"], f"set-up: the namespace root's children: {children}"
    ours_root, ours_inner, ours_list = got
    expect.numbers(ours_root, before, "MOUNT/cgroup/totmaps inside the namespace, against the host's view of its root")
    expect.numbers(ours_inner, inner_after, "MOUNT/cgroup/inner/totmaps inside, against the host's <root>/inner")
    expect.same(ours_list.get("ok", answer(ours_list)), [*children, "meminfo", "totmaps"], "ls MOUNT/cgroup inside")
    expect.done()


def test_metrics_cgroup_labels_are_the_callers_paths(mount: Mount, cgns: CgroupNs) -> None:
    expect = Verdicts()
    outsider = os.getpid()  # the test, in a cgroup outside the namespace's root
    stop(cgns.w1, cgns.w2)
    try:
        got = cgns.agent.run(
            *(["read", f"/proc/{pid}/cgroup"] for pid in (*cgns.members, outsider)),
            ["read", f"/proc/{cgns.w2}/smaps_rollup"],
            ["read", str(mount.path / "metrics")],
        )
    finally:
        cont(cgns.w1, cgns.w2)
    *cgroups, rollup, text = got
    paths = dict(zip([*cgns.members, outsider], (own_line(value(r)) for r in cgroups), strict=True))
    w2_rss = fields(value(rollup).encode())["Rss"]
    assert [paths[p] for p in cgns.members] == ["/", "/", "/inner"] and paths[outsider].startswith("/.."), paths
    families = metrics(value(text, "metrics"))
    by_pid = {int(s.labels["pid"]): s.labels["cgroup"] for s in families.get("totmapsfs_process_rss_bytes", [])}
    for pid in cgns.members:
        expect.same(by_pid.get(pid), paths[pid], f"metrics' cgroup label of pid {pid} (its /proc/<pid>/cgroup inside)")
    if outsider in by_pid:  # exported or not, a process outside the root is labelled with the caller's path
        expect.same(by_pid[outsider], paths[outsider], f"metrics' cgroup label of pid {outsider} (outside the root)")
    cgroup_rss = {s.labels["cgroup"]: s.value for s in families.get("totmapsfs_cgroup_rss_bytes", [])}
    processes = {s.labels["cgroup"]: s.value for s in families.get("totmapsfs_cgroup_processes", [])}
    inside = {label for label in cgroup_rss if not label.startswith("/..")}
    expect.that(
        inside <= {"/", "/inner", "/empty"},
        f"metrics' cgroup labels that are not paths in the caller's namespace: {sorted(inside)[:10]}",
    )
    expect.that(not any(cgns.root.rel in label for label in cgroup_rss), "metrics' cgroup labels show the host's path")
    expect.same(
        cgroup_rss.get("/inner"), w2_rss * 1024, 'totmapsfs_cgroup_rss_bytes{cgroup="/inner"} (its one process)'
    )
    expect.same(processes.get("/"), 3, 'totmapsfs_cgroup_processes{cgroup="/"} (the namespace root: 3 processes)')
    expect.same(processes.get("/inner"), 1, 'totmapsfs_cgroup_processes{cgroup="/inner"}')
    expect.done()


def test_a_new_cgroup_namespace_is_found_off_the_event_loop(cgns: CgroupNs) -> None:
    """The first request from a cgroup namespace has its root found by a thread's setns: in a worker thread.

    The tree as the FUSE adapter drives it: what it answers at once runs on
    the event loop, so for a namespace not met before it hands back a Plan
    (for the meta pool) instead of waiting for the setns thread; once the
    root is known, the same request is answered at once.
    """
    engine = Engine(max_age=0)
    tree = Tree(engine, Views(engine, Cgroup2(engine.reader)))
    request = Request(tid=cgns.agent.pid, uid=0, gid=0)
    first = tree.lookup(ROOT_INODE, b"cgroup", request)
    assert isinstance(first, Plan), f"the first lookup waited for the setns thread: {first}"
    attr = first.run()
    assert isinstance(attr, Attr) and attr.ino == CGROUP_INODE
    assert tree.lookup(ROOT_INODE, b"cgroup", request) == attr  # known now: at once
    assert tree.cgroup_top(request, wait=False) == cgns.root.rel
