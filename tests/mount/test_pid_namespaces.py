"""Pid namespaces: every name the mount answers is in the caller's pid namespace, as its own /proc's are.

Each namespace is made by the test (tests/programs/nsagent.py: unshare of a
pid and a mount namespace, a fork, a procfs of its own on /proc, as
``unshare --pid --fork --mount-proc``), and the process in it reads the mount
and its own /proc one right after the other: the kernel's answer to that
caller is the reference. Every kernel-side check runs first and fails at once
("set-up: ..."); the mount's disagreements are collected and fail the test at
its end, all listed (support.namespaces.Verdicts).
"""

from __future__ import annotations

import errno
import os
import re
import signal
import statistics
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.figures import report
from support.kernel import fields, parked_thread, read_rollup, settled
from support.namespaces import Agent, AgentError, Verdicts, answer, host_pid, pid_names, value
from support.views import metrics
from totmapsfs.harness import Mount, state, wait_for
from totmapsfs.proc import FALLBACK_ENV

MIB = 1024  # kB


def pytest_generate_tests(metafunc: pytest.Metafunc) -> None:
    """Every test on the exact mount twice: as this kernel runs it, and as one without the nsfs pid ioctls.

    Before 6.11 (Debian 12's 6.1) a caller's pid is found through /proc
    (proc._pidns, its index): conftest's exact_mount, given "fallback", starts
    the daemon with proc.FALLBACK_ENV, which makes it take that path here.
    """
    if "exact_mount" in metafunc.fixturenames:
        metafunc.parametrize("exact_mount", ["ioctls", "fallback"], indirect=True, scope="module")


@pytest.fixture
def pidns() -> Iterator[Agent]:
    """A new pid and mount namespace whose init (pid 1) is an agent holding 16 MiB, to be told apart by size."""
    agent = Agent("--unshare", "mount,pid", "--proc", "--marker", "16", label="pid namespace")
    try:
        yield agent
    finally:
        agent.close()


def kernel_says(result: dict[str, Any], expected: object, what: str) -> None:
    if result.get("ok", result.get("errno")) != expected:
        raise AgentError(f"set-up: {what}: the kernel answered {result}, the test expected {expected!r}")


def rollup_and_mount(agent: Any, pid: int, mount: Path, what: str) -> tuple[dict[str, int], dict[str, Any]]:
    """/proc/<pid>/smaps_rollup around MOUNT/<pid>/totmaps, read by the agent: (kernel's fields, mount's answer)."""
    got = agent.settled(
        parts=[["read", f"/proc/{pid}/smaps_rollup"]], whole=[["read", str(mount / str(pid) / "totmaps")]]
    )
    return fields(value(got["parts"][0], f"{what}: /proc/{pid}/smaps_rollup").encode()), got["whole"][0]


def listing(agent: Any, mount: Path, expect: Verdicts, what: str) -> set[int]:
    """The agent's /proc pids, its listing of the mount, its /proc again: the pids /proc listed both times."""
    before, ours, after = agent.run(["listdir", "/proc"], ["listdir", str(mount)], ["listdir", "/proc"])
    kernel = (pid_names(value(before, "ls /proc")), pid_names(value(after, "ls /proc")))
    if expect.that("ok" in ours, f"{what}: ls MOUNT: {answer(ours)}"):
        expect.pids(*kernel, pid_names(ours["ok"]), f"{what}: ls MOUNT against its own /proc")
    return kernel[0] & kernel[1]


# -- self, thread-self, thread ids, pid 1 -------------------------------------------------


def test_self_is_the_callers_pid_in_its_namespace(exact_mount: Mount, pidns: Agent) -> None:
    m, expect = exact_mount.path, Verdicts()
    other = pidns.agent("second")  # a process of the namespace that is not its init
    for who in (pidns, other):
        proc_self, ours = who.run(["readlink", "/proc/self"], ["readlink", str(m / "self")])
        kernel_says(proc_self, str(who.pid), f"{who.label} reads /proc/self")
        expect.same(ours, proc_self, f"readlink MOUNT/self by pid {who.pid} of its pid namespace")
    assert other.pid != 1
    expect.done()


def test_thread_self_names_the_calling_thread_in_its_namespace(exact_mount: Mount, pidns: Agent) -> None:
    m, expect = exact_mount.path, Verdicts()
    steps = [
        ["readlink", "/proc/thread-self"],
        ["readlink", str(m / "thread-self")],
        ["stat", str(m / "thread-self")],
        ["readlink", str(m / "self")],
    ]
    ls_proc, ls_ours = pidns.run(["listdir", "/proc"], ["listdir", str(m)])
    main = pidns.run(*steps)
    thread = pidns.run(["thread", steps])[0]
    tid = thread["tid"]
    kernel_says(main[0], "1/task/1", "the init's main thread reads /proc/thread-self")
    kernel_says(thread["results"][0], f"1/task/{tid}", "a second thread reads /proc/thread-self")
    assert tid != 1 and "thread-self" in value(ls_proc)
    expect.that("thread-self" in ls_ours.get("ok", []), "MOUNT lists no thread-self (/proc does)")
    for who, got, own in (("the main thread", main, 1), (f"thread {tid}", thread["results"], tid)):
        link, resolved, self_link = got[1:]
        # /proc's form is <tgid>/task/<tid>; a bare <tid> resolves to the same thread here.
        expect.that(
            link.get("ok") in (f"1/task/{own}", str(own)),
            f"readlink MOUNT/thread-self by {who} of pid 1: {link}, not 1/task/{own} (or {own})",
        )
        expect.that("ok" in resolved, f"MOUNT/thread-self by {who} does not resolve: {answer(resolved)}")
        expect.same(self_link, {"ok": "1"}, f"readlink MOUNT/self by {who} of pid 1")
    expect.done()


def test_a_thread_id_of_the_namespace_resolves_but_is_not_listed(exact_mount: Mount, pidns: Agent) -> None:
    m, expect = exact_mount.path, Verdicts()
    tid = pidns.park()  # a thread of the namespace's init (16 MiB): its number there
    reader = pidns.agent("reader")  # reads while the init is idle
    proc_list, proc_stat, ours_list = reader.run(["listdir", "/proc"], ["stat", f"/proc/{tid}"], ["listdir", str(m)])
    assert str(tid) not in value(proc_list) and answer(proc_stat) == "ok", f"set-up: /proc and tid {tid}"
    kernel, ours = rollup_and_mount(reader, tid, m, f"thread {tid} of the namespace's init")
    assert kernel["Rss"] >= 16 * MIB, f"set-up: /proc/{tid}/smaps_rollup is not the init's"
    expect.numbers(ours, kernel, f"MOUNT/{tid}/totmaps, {tid} a thread of the namespace's init")
    expect.that(str(tid) not in ours_list.get("ok", []), f"MOUNT lists thread id {tid}; /proc does not")
    expect.done()


def test_pid_1_is_the_namespaces_init(exact_mount: Mount, pidns: Agent) -> None:
    expect = Verdicts()
    reader = pidns.agent("reader")  # reads while pid 1 is idle (waiting on its pipe)
    status = value(reader.one("read", "/proc/1/status"))
    kernel, ours = rollup_and_mount(reader, 1, exact_mount.path, "pid 1 of the namespace")
    assert "python" in status.splitlines()[0] and kernel["Rss"] >= 16 * MIB, "set-up: /proc/1 is not the agent"
    expect.numbers(ours, kernel, "MOUNT/1/totmaps read in a pid namespace (its pid 1 is its init, not the host's)")
    expect.done()


# -- the listing and what is outside -----------------------------------------------------


def test_listing_is_the_namespaces_own_proc(exact_mount: Mount, pidns: Agent) -> None:
    expect = Verdicts()
    children = [pidns.workload(f"w{i}") for i in range(3)]
    seen = listing(pidns, exact_mount.path, expect, "pid namespace")
    assert {1, *children} <= seen and len(seen) < 20, f"set-up: the namespace's /proc lists {sorted(seen)}"
    expect.done()


def test_a_pid_outside_the_namespace_is_enoent(exact_mount: Mount, pidns: Agent, workloads) -> None:
    m, expect = exact_mount.path, Verdicts()
    host_process = workloads()
    with parked_thread() as tid:
        outside = {
            "a host process": host_process.pid,
            "the test's own process": os.getpid(),
            "a thread of the test's process": tid,
            "the namespace init's own host pid": pidns.host_pid,
        }
        for what, number in outside.items():
            got = pidns.run(
                ["stat", f"/proc/{number}"],
                ["read", f"/proc/{number}/smaps_rollup"],
                ["stat", str(m / str(number))],
                ["read", str(m / str(number) / "totmaps")],
            )
            kernel_says(got[0], "ENOENT", f"stat /proc/{number} ({what}) in the namespace")
            kernel_says(got[1], "ENOENT", f"/proc/{number}/smaps_rollup ({what}) in the namespace")
            expect.same(answer(got[2]), "ENOENT", f"stat MOUNT/{number} ({what}) from the namespace")
            expect.same(answer(got[3]), "ENOENT", f"MOUNT/{number}/totmaps ({what}) from the namespace")
    expect.done()


# -- nested and sibling namespaces ---------------------------------------------------------


def test_a_nested_namespace_sees_only_its_own(exact_mount: Mount, pidns: Agent) -> None:
    m, expect = exact_mount.path, Verdicts()
    outer_300 = pidns.workload("outer-300", "--marker", "8", at_pid=300)
    inner = pidns.agent("inner", "--unshare", "mount,pid", "--proc", at_pid=200)  # 200 unshares, 201 is its init
    inner_300 = inner.workload("inner-300", "--marker", "24", at_pid=300)
    assert (outer_300, inner_300, inner.spawned_pid, inner.pid) == (300, 300, 200, 1)
    with pidns.stopped(outer_300), inner.stopped(inner_300):
        # The nested namespace: its own processes only, and its 300 is its own.
        inner_seen = listing(inner, m, expect, "nested pid namespace")
        assert inner_seen == {1, 300}, f"set-up: the nested namespace's /proc lists {sorted(inner_seen)}"
        kernel, ours = rollup_and_mount(inner, 300, m, "pid 300 of the nested namespace")
        assert kernel["Rss"] >= 24 * MIB, "set-up: the nested /proc/300 is not its 24 MiB workload"
        expect.numbers(ours, kernel, "MOUNT/300/totmaps read in the nested namespace")
        for number in (200, 201):  # the outer namespace's numbers for the nested one's processes
            got = inner.run(["stat", f"/proc/{number}"], ["stat", str(m / str(number))])
            kernel_says(got[0], "ENOENT", f"/proc/{number} in the nested namespace")
            expect.same(answer(got[1]), "ENOENT", f"stat MOUNT/{number} in the nested namespace")
        proc_self, ours_self = inner.run(["readlink", "/proc/self"], ["readlink", str(m / "self")])
        kernel_says(proc_self, "1", "the nested init reads /proc/self")
        expect.same(ours_self, proc_self, "readlink MOUNT/self by the nested namespace's init")
        # The outer namespace: its own processes, and its descendant's under the outer numbers.
        outer_seen = listing(pidns, m, expect, "the outer pid namespace")
        assert {1, 200, 201, 300} <= outer_seen and len(outer_seen) >= 5, f"set-up: outer /proc: {sorted(outer_seen)}"
        kernel, ours = rollup_and_mount(pidns, 300, m, "pid 300 of the outer namespace")
        assert 8 * MIB <= kernel["Rss"] < 24 * MIB, "set-up: the outer /proc/300 is not its 8 MiB workload"
        expect.numbers(ours, kernel, "MOUNT/300/totmaps read in the outer namespace")
    expect.done()


def test_sibling_namespaces_cannot_see_each_other(exact_mount: Mount) -> None:
    m, expect = exact_mount.path, Verdicts()
    a = Agent("--unshare", "mount,pid", "--proc", label="sibling A")
    try:
        b = Agent("--unshare", "mount,pid", "--proc", label="sibling B")
        try:
            a300 = a.workload("a-300", "--marker", "8", at_pid=300)
            b300 = b.workload("b-300", "--marker", "24", at_pid=300)
            b400 = b.workload("b-400", at_pid=400)
            with a.stopped(a300), b.stopped(b300):
                for agent, low, high in ((a, 8, 24), (b, 24, 64)):
                    listing(agent, m, expect, agent.label)
                    kernel, ours = rollup_and_mount(agent, 300, m, f"pid 300 of {agent.label}")
                    assert low * MIB <= kernel["Rss"] < high * MIB, f"set-up: {agent.label}'s /proc/300: {kernel}"
                    expect.numbers(ours, kernel, f"MOUNT/300/totmaps read in {agent.label}")
            b_ns = b.info["ns"]["pid"]
            for number in (b400, b.host_pid, b.proc.pid, host_pid(b_ns, b300), host_pid(b_ns, b400)):
                got = a.run(["stat", f"/proc/{number}"], ["stat", str(m / str(number))])
                kernel_says(got[0], "ENOENT", f"/proc/{number} (sibling B's) in sibling A")
                expect.same(answer(got[1]), "ENOENT", f"stat MOUNT/{number} (sibling B's) from sibling A")
        finally:
            b.close()
    finally:
        a.close()
    expect.done()


def test_a_reused_pid_in_a_namespace_never_serves_the_old_numbers(mount_factory) -> None:
    """With a long max-age: pid 300 of a namespace reused, and pid 300 of a sibling, each read right after."""
    m, expect = mount_factory("--max-age", "3600").path, Verdicts()
    # Both made after the mount: a mount namespace copied before it would not have it.
    pidns = Agent("--unshare", "mount,pid", "--proc", label="pidns")
    sibling = Agent("--unshare", "mount,pid", "--proc", label="sibling")
    try:
        for agent, name, mib in ((pidns, "first", 8), (pidns, "second", 24), (sibling, "sibling's", 40)):
            pid = agent.workload(name, "--marker", str(mib), at_pid=300)
            with agent.stopped(pid):
                kernel, ours = rollup_and_mount(agent, 300, m, f"the {name} pid 300")
            assert mib * MIB <= kernel["Rss"] < (mib + 16) * MIB, f"set-up: the {name} pid 300's Rss: {kernel['Rss']}"
            mine = fields(ours["ok"].encode()).get("Rss") if "ok" in ours else answer(ours)
            expect.same(mine, kernel["Rss"], f"MOUNT/300/totmaps' Rss, the {name} pid 300 of a namespace")
            if name == "first":
                agent.send({"op": "close", "name": name})  # EOF: it exits, and 300 is free again
    finally:
        sibling.close()
        pidns.close()
    expect.done()


# -- the views' pids --------------------------------------------------------------------------


def test_summary_and_metrics_name_the_namespaces_pids(exact_mount: Mount, pidns: Agent) -> None:
    m, expect = exact_mount.path, Verdicts()
    w = pidns.workload("w", "--marker", "8", at_pid=300)
    with pidns.stopped(w):
        before, summary, text, after, rollup, meminfo = pidns.run(
            ["listdir", "/proc"],
            ["read", str(m / "summary")],
            ["read", str(m / "metrics")],
            ["listdir", "/proc"],
            ["read", "/proc/300/smaps_rollup"],
            ["read", str(m / "meminfo")],
        )
    ns_pids = pid_names(value(before)) | pid_names(value(after))
    rss = fields(value(rollup).encode())["Rss"]
    assert {1, 300} <= ns_pids and rss >= 8 * MIB, f"set-up: the namespace's /proc: {sorted(ns_pids)}"
    rows = {int(line.split()[0]): line.split() for line in value(summary, "summary").splitlines()[1:]}
    expect.that(set(rows) <= ns_pids, f"summary's PIDs not in the namespace: {sorted(set(rows) - ns_pids)[:20]}")
    expect.that({1, 300} <= set(rows), f"summary lacks the namespace's pids 1 and 300: {sorted(rows)[:20]}")
    expect.that(300 in rows and int(rows[300][2]) == rss, f"summary's row 300 is not the namespace's 300 ({rss} kB)")
    labels = {
        int(s.labels["pid"]): s.value for s in metrics(value(text, "metrics")).get("totmapsfs_process_rss_bytes", [])
    }
    expect.that(set(labels) <= ns_pids, f"metrics' pid labels not in the namespace: {sorted(set(labels) - ns_pids)}")
    expect.same(labels.get(300), rss * 1024, 'metrics\' totmapsfs_process_rss_bytes{pid="300"} (its Rss)')
    host_wide = {"totmapsfs_walks", "totmapsfs_walk_seconds", "totmapsfs_held_answers"} & set(
        metrics(value(text, "metrics"))
    )
    expect.that(not host_wide, f"metrics shows the host's walk counters to a container: {sorted(host_wide)}")
    # meminfo's unread processes are the pass's own listing, translated while the caller's namespace was
    # open: root in it reads all of its processes, so none is unread.
    unread = re.search(r"^ *UnreadableRss: +(\d+) kB$", value(meminfo, "meminfo"), re.M)
    expect.that(unread is not None and unread.group(1) == "0", f"meminfo in the namespace: {answer(meminfo)}")
    expect.done()


def test_views_read_from_the_namespace_leave_no_fd_of_it_open(exact_mount: Mount, pidns: Agent) -> None:
    """A view's plan translates through its own copy of the caller's pid namespace fd (Views.plan), closed once used.

    Thirty whole-system reads from the namespace, then the daemon must hold
    no fd of that namespace: a plan that kept its copy would hold thirty.
    """
    reads = [["read", str(exact_mount.path / name)] for name in ("summary", "totmaps", "metrics") for _ in range(10)]
    failed = [answer(o) for o in pidns.run(*reads) if "ok" not in o]
    assert not failed, f"reads from the namespace failed: {failed[:3]}"
    held = []
    for fd in os.listdir(f"/proc/{exact_mount.proc.pid}/fd"):
        try:
            if os.readlink(f"/proc/{exact_mount.proc.pid}/fd/{fd}") == pidns.info["ns"]["pid"]:
                held.append(fd)
        except FileNotFoundError:
            continue  # closed meanwhile
    assert held == [], f"the daemon holds {len(held)} fds of the caller's pid namespace after its reads"


# -- the daemon's own namespaces ----------------------------------------------------------------


def test_in_the_daemons_own_namespaces_names_are_the_hosts(exact_mount: Mount, pidns: Agent) -> None:
    """A caller beside the daemon sees host pids, its descendants' namespaces included, as its /proc does."""
    m, expect = exact_mount.path, Verdicts()
    got: dict[str, object] = {}

    def thread() -> None:
        got["tid"] = threading.get_native_id()
        got["proc"] = os.readlink("/proc/thread-self")
        try:
            got["ours"] = os.readlink(m / "thread-self")
        except OSError as exc:
            got["ours"] = errno.errorcode.get(exc.errno or 0, str(exc))

    t = threading.Thread(target=thread)
    t.start()
    t.join()
    pid, tid = os.getpid(), got["tid"]
    assert got["proc"] == f"{pid}/task/{tid}", f"set-up: /proc/thread-self: {got}"
    inside = pidns.host_pid
    assert inside in pid_names(os.listdir("/proc")), "set-up: the host's /proc does not list the namespace's init"
    os.kill(inside, signal.SIGSTOP)
    try:
        wait_for(lambda: state(inside) == "T", what=f"{inside} to stop")
        kernel, ours = settled(lambda: read_rollup(inside), lambda: fields(exact_mount.read(inside)))
    finally:
        os.kill(inside, signal.SIGCONT)
    expect.same(os.readlink(m / "self"), str(pid), "readlink MOUNT/self on the host")
    expect.that(
        got["ours"] in (f"{pid}/task/{tid}", str(tid)), f"readlink MOUNT/thread-self on the host: {got['ours']}"
    )
    expect.that(inside in pid_names(os.listdir(m)), f"the host's ls MOUNT lacks {inside}, a pid namespace's init")
    expect.same(ours, kernel, f"MOUNT/{inside}/totmaps (a pid namespace's init) read from the host")
    expect.done()


# -- a kernel without the nsfs ioctls: no scan of /proc on the event loop ------------


def test_without_the_ioctls_a_scan_of_proc_never_stalls_other_readers(mount_factory, workloads, request) -> None:
    """A container asking for pids the index does not know has /proc scanned: in a worker, not on the event loop.

    The host is crowded (1,000 more processes) so that a scan takes tens of
    ms; while the container keeps asking for pids that do not exist (a scan
    each), a reader on the host reads a cached file: it must not wait behind
    the scans, as every request did when they ran on the event loop.
    """
    mount = mount_factory("--max-age", "3600", env={FALLBACK_ENV: "1"})
    crowd = subprocess.Popen(["sh", "-c", "for i in $(seq 1000); do sleep 600 & done; wait"], start_new_session=True)
    agent = Agent("--unshare", "mount,pid", "--proc", label="pidns")  # after the mount, so it sees it
    try:
        small = workloads()
        host_read = mount.file(small.pid)
        host_read.read_bytes()  # cached from now on
        wait_for(lambda: len(os.listdir("/proc")) > 1000, 30, "the crowd to start")
        missing = [str(mount.path / str(4_000_000 + i)) for i in range(40)]
        t0 = time.perf_counter()
        outcomes = agent.run(*[["stat", p] for p in missing[:10]])
        scan = (time.perf_counter() - t0) / 10
        assert all(o.get("errno") == "ENOENT" for o in outcomes), outcomes
        assert scan > 0.005, f"set-up: a scan of /proc took {scan * 1e3:.1f} ms, too little to tell a stall"
        done = threading.Event()
        scanning = threading.Thread(target=lambda: (agent.run(*[["stat", p] for p in missing]), done.set()))
        scanning.start()
        took: list[float] = []
        while not done.is_set() and len(took) < 100_000:
            t = time.perf_counter()
            host_read.read_bytes()
            took.append(time.perf_counter() - t)
        scanning.join(60)
    finally:
        agent.close()
        os.killpg(crowd.pid, signal.SIGKILL)
        crowd.wait()
    p50 = statistics.median(took)
    report(
        request,
        "no scan on the event loop",
        scan_ms=round(scan * 1e3, 1),
        reads=len(took),
        read_p50_ms=round(p50 * 1e3, 2),
    )
    assert len(took) > 40 and p50 < scan / 4, (
        f"host reads waited {p50 * 1e3:.1f} ms (p50) beside {scan * 1e3:.1f} ms scans"
    )
