"""A container: new user, mount and pid namespaces, given the mount's parent directory, slave propagation.

As a runtime does it (runc: the new root made rslave, then ``docker -v
HOST:CTR:rslave``, a Kubernetes hostPath with ``mountPropagation:
HostToContainer``), tests/programs/nsagent.py unshares a rootless user
namespace (0-65535 -> 100000-165535) with a mount and a pid namespace, makes
its mounts slaves, binds the daemon's parent directory (``workdir``) onto a
directory of its own recursively, makes that a recursive slave, and mounts a
procfs of its own. Its view of the mount is <ctr>/mnt.

Slave propagation needs a shared mount on the host side: systemd makes every
mount shared at boot (``shared:1`` in mountinfo); this test machine may not
run systemd, so the test makes ``workdir`` a shared bind mount of itself, as a
host would have it.
"""

from __future__ import annotations

import contextlib
import os
import signal
import subprocess
import tempfile
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from support.figures import report
from support.kernel import fields
from support.namespaces import ROOTLESS_BASE, ROOTLESS_MAP, Agent, AgentError, Verdicts, answer, pid_names, value
from support.pace import DAEMON_START
from totmapsfs.harness import Mount


def mountinfo_at(text: str, path: Path) -> list[list[str]]:
    """The mountinfo lines (split) of the mounts exactly at ``path``, bottom first."""
    return [line.split() for line in text.splitlines() if line.split()[4] == str(path)]


@pytest.fixture
def shared_parent(workdir: Path) -> Iterator[Path]:
    """``workdir``, made a shared mount (a bind of itself), as every mount is on a systemd host."""
    subprocess.run(["mount", "--bind", str(workdir), str(workdir)], check=True, timeout=30)
    try:
        subprocess.run(["mount", "--make-shared", str(workdir)], check=True, timeout=30)
        lines = mountinfo_at(Path("/proc/self/mountinfo").read_text(), workdir)
        if not any(field.startswith("shared:") for field in lines[-1][6:-4]):
            raise AgentError(f"set-up: {workdir} did not become a shared mount: {lines}")
        yield workdir
    finally:
        subprocess.run(["umount", "-l", str(workdir)], check=True, timeout=30)


@contextlib.contextmanager
def container(parent: Path, propagation: str = "rslave") -> Iterator[tuple[Agent, Path]]:
    """A rootless container whose <ctr> is ``parent`` bound in; yields the agent (its pid 1) and <ctr>/mnt."""
    ctr = Path(tempfile.mkdtemp(prefix="totmapsfs-ctr-"))
    ctr.chmod(0o755)
    args = ["--unshare", "user,mount,pid", "--await-map", "--bind", f"{parent}:{ctr}", "--proc"]
    args += ["--propagation", "slave", "--rslave"] if propagation == "rslave" else ["--propagation", "private"]
    setpriv = ["setpriv", f"--reuid={ROOTLESS_BASE}", f"--regid={ROOTLESS_BASE}", "--clear-groups"]
    agent = Agent(*args, prefix=setpriv, uid_map=ROOTLESS_MAP, gid_map=ROOTLESS_MAP, label=f"{propagation} container")
    try:
        inside = mountinfo_at(value(agent.one("read", "/proc/self/mountinfo")), ctr / "mnt")
        kind = "master:" if propagation == "rslave" else None
        if agent.pid != 1 or not inside or inside[-1][-3] != "fuse.totmapsfs":
            raise AgentError(f"set-up: the container is not pid 1 with the mount at {ctr}/mnt: {inside}")
        if kind and not any(f.startswith(kind) for f in inside[-1][6:-4]):
            raise AgentError(f"set-up: the container's {ctr}/mnt is not a slave mount: {inside}")
        yield agent, ctr / "mnt"
    finally:
        try:
            agent.close()
        finally:
            with contextlib.suppress(OSError):
                ctr.rmdir()  # empty on the host: the bind lived in the container's mount namespace


# Each test names shared_parent before mount_factory: the daemon mounts on the shared bind, stopped before it goes.


def test_a_container_sees_its_own_processes(shared_parent: Path, mount_factory) -> None:
    mount_factory("--max-age", "0")
    expect = Verdicts()
    with container(shared_parent) as (k, m):
        w = k.workload("w", "--marker", "8", at_pid=300)
        with k.stopped(w):
            before, ls, proc_self, ours_self, summary, after = k.run(
                ["listdir", "/proc"],
                ["listdir", str(m)],
                ["readlink", "/proc/self"],
                ["readlink", str(m / "self")],
                ["read", str(m / "summary")],
                ["listdir", "/proc"],
            )
            got = k.settled(parts=[["read", "/proc/300/smaps_rollup"]], whole=[["read", str(m / "300" / "totmaps")]])
        outside = k.run(["stat", f"/proc/{os.getpid()}"], ["stat", str(m / str(os.getpid()))])
    kernel = pid_names(value(before)) & pid_names(value(after))
    rollup = fields(value(got["parts"][0]).encode())
    if kernel != {1, 300} or proc_self != {"ok": "1"} or rollup["Rss"] < 8192 or answer(outside[0]) != "ENOENT":
        raise AgentError(f"set-up: the container's /proc: {sorted(kernel)}, self {proc_self}, 300's Rss {rollup}")
    if expect.that("ok" in ls, f"ls MOUNT in the container: {answer(ls)}"):
        expect.pids(kernel, kernel, pid_names(ls["ok"]), "ls MOUNT in the container against its /proc")
    expect.same(ours_self, proc_self, "readlink MOUNT/self by the container's init")
    expect.numbers(got["whole"][0], rollup, "MOUNT/300/totmaps in the container (its 300)")
    expect.same(answer(outside[1]), "ENOENT", f"stat MOUNT/{os.getpid()} (the host's test process) in the container")
    rows = pid_names(line.split()[0] for line in summary.get("ok", "").splitlines()[1:])
    expect.same(rows, {1, 300}, "summary's PIDs in the container (its root may read both its processes)")
    expect.done()


def test_a_container_reads_again_after_the_daemon_restarts(
    shared_parent: Path, mount_factory, request: pytest.FixtureRequest
) -> None:
    """kill -9, restart on the same mountpoint from the host; the container reads again without a step of its own."""
    m = mount_factory("--max-age", "0")
    expect = Verdicts()
    with container(shared_parent) as (k, inside):
        own = ["read", str(inside / "self" / "totmaps")]
        first = k.one(*own)
        expect.that("ok" in first, f"the container reads MOUNT/self/totmaps: {answer(first)}")
        killed = time.monotonic()
        os.kill(m.proc.pid, signal.SIGKILL)
        m.proc.wait(30)
        dead = k.one(*own)
        if answer(dead) != "ENOTCONN":  # the kernel's: a FUSE mount whose daemon died
            raise AgentError(f"set-up: after kill -9 the container's read answered {dead}, not ENOTCONN")
        # It clears the stale mount itself, then mounts anew.
        again = Mount(m.path, "--max-age", "0", timeout=DAEMON_START)
        try:
            ready = time.monotonic() - killed
            polled: dict[str, Any] = k.send({"op": "poll", "step": own, "timeout": 10.0})
            mounts = mountinfo_at(value(k.one("read", "/proc/self/mountinfo")), inside)
            kernel = fields(value(k.one("read", "/proc/self/smaps_rollup")).encode())
            assert b"Pss:" in again.read("self")
        finally:
            assert again.stop() == 0
    # The kernel's side: the host's unmount and new mount both propagated into the container.
    if len(mounts) != 1 or mounts[0][-3] != "fuse.totmapsfs":
        raise AgentError(f"set-up: after the restart the container has at {inside}: {mounts}")
    result = polled["result"]
    report(
        request,
        "container after kill -9",
        daemon_ready_after=f"{ready:.2f} s",
        container_reads_after_ready=f"{polled['seconds'] * 1000:.0f} ms",
        tries=polled["tries"],
    )
    if expect.that("ok" in result, f"the container's reads after the restart, for 10 s: {answer(result)}"):
        ours = fields(result["ok"].encode())
        expect.same(list(ours), list(kernel), "the container's MOUNT/self/totmaps after the restart: its fields")
        expect.that(ours.get("Rss", 0) > 0, "the container's MOUNT/self/totmaps after the restart: Rss")
    expect.done()


def test_without_slave_propagation_a_container_keeps_the_dead_mount(shared_parent: Path, mount_factory) -> None:
    """The kernel's side of the advice in docs/deploying.md ("Giving a container the mount").

    A private bind keeps the killed daemon's mount, ENOTCONN, for ever.
    """
    m = mount_factory("--max-age", "0")
    with container(shared_parent, propagation="private") as (k, inside):
        own = ["read", str(inside / "self" / "totmaps")]
        os.kill(m.proc.pid, signal.SIGKILL)
        m.proc.wait(30)
        again = Mount(m.path, "--max-age", "0", timeout=DAEMON_START)
        try:
            assert b"Pss:" in again.read("self")
            assert answer(k.one(*own)) == "ENOTCONN"
        finally:
            assert again.stop() == 0


def test_a_container_sees_only_its_own_processes_in_every_group(shared_parent: Path, mount_factory) -> None:
    """Programs, users and a tree count the container's processes only; its users as it numbers them."""
    mount_factory("--max-age", "0")
    with container(shared_parent) as (k, m):
        w = k.workload("w", "--marker", "8", at_pid=300)
        with k.stopped(w):
            before, programs, users, names, tree, mine, after = k.run(
                ["listdir", "/proc"],
                ["read", str(m / "programs")],
                ["read", str(m / "users")],
                ["listdir", str(m / "user")],
                ["read", str(m / "1" / "tree" / "processes")],
                ["read", str(m / "user" / "0" / "totmaps")],
                ["listdir", "/proc"],
            )
    kernel = pid_names(value(before)) & pid_names(value(after))
    if kernel != {1, 300}:
        raise AgentError(f"set-up: the container's /proc: {sorted(kernel)}")
    rows = {
        kind: [line.split() for line in value(text).splitlines()[1:]] for kind, text in (("p", programs), ("u", users))
    }
    assert sum(int(cells[0]) for cells in rows["p"]) == 2  # its init and its workload, whatever they run
    assert [(cells[0], cells[-1]) for cells in rows["u"]] == [("2", "0")]  # uid 0 as the container numbers it
    assert value(names) == ["0"]
    assert value(tree) == "summed 2\ndenied 0\nleft_out 0\n"
    assert fields(value(mine).encode())["Rss"] >= 8192
