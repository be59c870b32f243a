"""The mounted tier: a real daemon, real processes, compared with the kernel's own smaps_rollup."""

from __future__ import annotations

import os
import re
import subprocess
import threading
from pathlib import Path

import psutil
import pytest

from support.kernel import NOBODY, OTHER_USER, PSS_FAMILY, fields, parked_thread, read_rollup, settled, vma_count
from totmapsfs.engine import SLOWDOWN_ENV
from totmapsfs.harness import Mount, as_user

LINE = re.compile(rb"^[A-Za-z_]+:\s*\d+ kB$")


def agree_with_rollup(read, pid: int, attempts: int = 5) -> dict[str, int]:
    """Read through the mount between two rollup reads; equal when the kernel held still."""
    kernel, ours = settled(lambda: read_rollup(pid), lambda: fields(read(pid)), attempts)
    assert ours == kernel
    return ours


@pytest.fixture
def shapes(workloads, workdir: Path):
    data = workdir / "data.bin"
    data.write_bytes(os.urandom(4 << 20))
    return {
        "many": workloads("--mappings", "2000"),
        "shared": workloads("--shared", "8", "--private", "8", "--children", "3"),
        "file": workloads("--file", str(data), "--file-pages", "512"),
    }


def test_format_is_the_kernels(exact_mount: Mount) -> None:
    text = exact_mount.read("self")
    lines = text.split(b"\n")
    assert lines[-1] == b"" and all(LINE.match(line) for line in lines[:-1])
    for line in lines[:-1]:
        name, value = line.split()[0].decode(), int(line.split()[1])
        assert line.decode() == "%-16s%8d kB" % (name, value)  # noqa: UP031 (the kernel's own format)
    rollup_names = [n for n in fields(Path("/proc/self/smaps_rollup").read_bytes())]
    assert list(fields(text)) == rollup_names


@pytest.mark.parametrize("shape", ["many", "shared", "file"])
def test_rollup_source_equals_smaps_rollup(exact_mount: Mount, shapes, shape: str) -> None:
    w = shapes[shape]
    with w.stopped():
        ours = agree_with_rollup(exact_mount.read, w.pid)
    assert ours["Rss"] > 0
    if shape == "many":
        assert vma_count(w.pid) >= 2000
    if shape == "shared":
        # 8 MiB shmem shared by 4 processes, 8 MiB COW private shared by 4.
        assert ours["Pss_Shmem"] <= 8192 // 4 + 64
        assert ours["Shared_Dirty"] >= 16384 - 64


@pytest.mark.parametrize("shape", ["many", "shared", "file"])
def test_smaps_source_within_truncation_bound(mount_factory, shapes, shape: str) -> None:
    mount = mount_factory("--source", "smaps", "--max-age", "0")
    w = shapes[shape]
    with w.stopped():
        before, (ours, mappings) = settled(
            lambda: read_rollup(w.pid),
            lambda: (fields(mount.read(w.pid)), vma_count(w.pid)),
        )
    assert set(ours) <= set(before)
    assert set(before) - set(ours) <= {"Pss_Anon", "Pss_File", "Pss_Shmem"}  # rollup-only fields
    for name, value in ours.items():
        if name in PSS_FAMILY:
            assert before[name] - mappings <= value <= before[name], name
        else:
            assert value == before[name], name


def test_psutil_agrees(exact_mount: Mount, shapes) -> None:
    for w in shapes.values():
        with w.stopped():
            # Pss moves when any process on the host maps or unmaps a page the
            # workload shares (libc, python): compare readings the kernel held still across.
            _, (info, ours) = settled(
                lambda: read_rollup(w.pid),  # noqa: B023 (called right here, in this iteration)
                lambda: (psutil.Process(w.pid).memory_full_info(), fields(exact_mount.read(w.pid))),  # noqa: B023
            )
        assert ours["Pss"] * 1024 == info.pss
        assert (ours["Private_Clean"] + ours["Private_Dirty"] + ours["Private_Hugetlb"]) * 1024 == info.uss
        assert ours["Swap"] * 1024 == info.swap


def test_listing_mirrors_proc(exact_mount: Mount) -> None:
    before = {n for n in os.listdir("/proc") if n.isdigit()}
    ours = set(os.listdir(exact_mount.path))
    after = {n for n in os.listdir("/proc") if n.isdigit()}
    assert {"self", "thread-self"} <= ours
    ours -= {"self", "thread-self"}
    views = {"totmaps", "summary", "metrics", "cgroup", "files", "meminfo"}  # mount/test_views.py, test_files_meminfo
    views |= {"programs", "users", "program", "user"}  # grouped views (mount/test_groups.py)
    assert {"totmaps", "summary", "metrics", "files", "meminfo"} <= ours
    ours -= views
    assert all(n.isdigit() for n in ours)
    assert ours <= before | after, ours - (before | after)
    assert before & after <= ours, (before & after) - ours
    assert sorted(os.listdir(exact_mount.path / str(os.getpid()))) == ["files", "totmaps", "tree"]


def test_self_is_the_callers_process(exact_mount: Mount) -> None:
    assert os.readlink(exact_mount.path / "self") == str(os.getpid())
    # Another process: the shell says its pid, then becomes readlink (exec keeps the pid).
    out = subprocess.run(
        ["sh", "-c", f"echo $$; exec readlink {exact_mount.path}/self"], capture_output=True, text=True, check=True
    )
    shell, link = out.stdout.split()
    assert link == shell != str(os.getpid())
    # A thread resolves to its thread group.
    seen: list[str] = []
    t = threading.Thread(target=lambda: seen.append(os.readlink(exact_mount.path / "self")))
    t.start()
    t.join()
    assert seen == [str(os.getpid())]


def test_thread_id_resolves_but_is_not_listed(exact_mount: Mount) -> None:
    with parked_thread() as tid:
        assert tid != os.getpid()
        assert str(tid) not in os.listdir(exact_mount.path)
        assert (exact_mount.path / str(tid)).is_dir()
        assert set(fields(exact_mount.read(tid))) == set(read_rollup(os.getpid()))


def test_dead_pid_is_enoent(exact_mount: Mount) -> None:
    p = subprocess.Popen(["sleep", "30"])
    assert exact_mount.read(p.pid)
    p.kill()
    p.wait()
    with pytest.raises(FileNotFoundError):
        exact_mount.read(p.pid)
    with pytest.raises(FileNotFoundError):
        os.stat(exact_mount.path / "4194303")


def test_zombie_has_an_empty_file(exact_mount: Mount) -> None:
    p = subprocess.Popen(["sleep", "0"])
    try:
        os.waitid(os.P_PID, p.pid, os.WEXITED | os.WNOWAIT)  # exited, not reaped: a zombie
        assert exact_mount.read(p.pid) == b""
    finally:
        p.wait()


def test_kernel_thread_has_an_empty_file(exact_mount: Mount) -> None:
    assert Path("/proc/2/smaps").read_bytes() == b""  # kthreadd: no address space
    assert exact_mount.read(2) == b""
    # As in /proc, anyone may read it (the kernel checks access only when there is an mm).
    out = subprocess.run(as_user(NOBODY, ["cat", str(exact_mount.file(2))]), capture_output=True, timeout=30)
    assert (out.returncode, out.stdout) == (0, b"")


def test_partial_reads_reassemble_one_snapshot(exact_mount: Mount, shapes) -> None:
    w = shapes["many"]  # running, not stopped: the snapshot, not the process, holds still
    fd = os.open(exact_mount.file(w.pid), os.O_RDONLY)
    try:
        whole = os.pread(fd, 1 << 20, 0)
        one = b"".join(os.pread(fd, 1, off) for off in range(len(whole) + 1))
        thousand = b"".join(os.pread(fd, 1000, off) for off in range(0, len(whole) + 1000, 1000))
        os.lseek(fd, 17, os.SEEK_SET)
        tail = os.read(fd, 1 << 20)
    finally:
        os.close(fd)
    assert whole and one == whole and thousand == whole and tail == whole[17:]
    for cmd in (["dd", "bs=1", "status=none"], ["head", "-c", "40"], ["cat"]):
        out = subprocess.run(
            [*cmd, "if=" + str(exact_mount.file(w.pid))] if cmd[0] == "dd" else [*cmd, str(exact_mount.file(w.pid))],
            capture_output=True,
            check=True,
        ).stdout
        assert out and LINE.match(out.split(b"\n")[0]), cmd


def test_thousand_reads_never_empty(exact_mount: Mount) -> None:
    path = exact_mount.file("self")
    for _ in range(1000):
        text = path.read_bytes()
        assert b"\nPss:" in text and text.endswith(b" kB\n")


@pytest.mark.parametrize("slowdown", ["1", "50"], ids=["this-machine", "50x-slower"])
def test_new_memory_shows_on_the_very_next_read(mount_factory, workloads, slowdown: str) -> None:
    """Whatever the machine's speed: SLOWDOWN_ENV has the daemon count each walk 50 times over, as an emulator would.

    A small process is exempt from the walk duty by its page tables, not by
    how long its walk took (1.0-1.3 ms under emulation, past the old 1 ms
    exemption, once held its answer); a big one stays held meanwhile.
    """
    mount = mount_factory("--max-age", "3600", env={SLOWDOWN_ENV: slowdown})
    w = workloads()
    for _ in range(3):
        first = fields(mount.read(w.pid))
        w.touch(256)  # 1 MiB of new anonymous memory
        second = fields(mount.read(w.pid))
        assert second["Anonymous"] >= first["Anonymous"] + 1024
    if slowdown != "1":  # here a walk of 2-4 ms counts for 100-200 ms: held for 2-4 s at the default duty
        big = workloads("--private", "256")
        first = fields(mount.read(big.pid))
        big.touch(256)
        assert fields(mount.read(big.pid))["Anonymous"] == first["Anonymous"], "a big process was not held"


def test_reused_pid_never_serves_the_old_numbers(mount_factory, workloads) -> None:
    """Force the kernel to hand a dead process's pid to a new one (ns_last_pid)."""
    mount = mount_factory("--max-age", "3600")
    for _ in range(20):
        old = workloads("--marker", "64")
        old_text = mount.read(old.pid)
        assert fields(old_text)["Anonymous"] >= 65536
        pid = old.pid
        old.close()
        Path("/proc/sys/kernel/ns_last_pid").write_text(str(pid - 1))
        new = workloads("--marker", "4")
        if new.pid != pid:
            new.close()
            continue  # another process forked in between; try again
        with new.stopped():
            ours = agree_with_rollup(mount.read, pid)
        assert ours["Anonymous"] < 65536 - 4096
        return
    pytest.fail("could not get the kernel to reuse a pid in 20 tries")


# -- who may read what ------------------------------------------------------


def read_as(uid: int, path: Path) -> subprocess.CompletedProcess:
    return subprocess.run(as_user(uid, ["cat", str(path)]), capture_output=True, text=True, timeout=30)


def test_access_rule_as_real_users(exact_mount: Mount, workloads) -> None:
    own = workloads(user=NOBODY)
    other = workloads(user=OTHER_USER)
    secret = workloads("--nondumpable", user=NOBODY)
    root = workloads()
    # Same uids, but it holds a capability the reader lacks (cap_ptrace_access_check).
    capable = workloads(user=NOBODY, caps="net_raw")

    r = read_as(NOBODY, exact_mount.file(own.pid))
    assert r.returncode == 0 and "Pss:" in r.stdout
    r = read_as(NOBODY, exact_mount.path / "self" / "totmaps")
    assert r.returncode == 0 and "Pss:" in r.stdout
    for target in (other, secret, root, capable):
        r = read_as(NOBODY, exact_mount.file(target.pid))
        assert r.returncode != 0 and "Permission denied" in r.stderr, (target.proc.args, r)
        # The kernel agrees: the same caller gets the same answer from /proc.
        k = read_as(NOBODY, Path(f"/proc/{target.pid}/smaps"))
        assert k.returncode != 0 and "Permission denied" in k.stderr
    for target in (own, other, secret, root, capable):
        assert b"Pss:" in exact_mount.read(target.pid)  # root reads all

    # ls -l shows owners as /proc does: the directory is the euid's, the file
    # root's when the process is not dumpable.
    for target, owner, file_owner in (
        (own, NOBODY, NOBODY),
        (other, OTHER_USER, OTHER_USER),
        (secret, NOBODY, 0),
        (root, 0, 0),
    ):
        st = os.stat(exact_mount.path / str(target.pid))
        assert st.st_uid == os.stat(f"/proc/{target.pid}").st_uid == owner
        st = os.stat(exact_mount.file(target.pid))
        assert st.st_uid == os.stat(f"/proc/{target.pid}/smaps").st_uid == file_owner


def test_mount_table_and_options(exact_mount: Mount) -> None:
    line = next(line for line in Path("/proc/self/mounts").read_text().splitlines() if f" {exact_mount.path} " in line)
    source, _, fstype, options = line.split()[:4]
    assert source == "totmapsfs" and fstype == "fuse.totmapsfs"
    assert {"ro", "allow_other"} <= set(options.split(",")) or "allow_other" in options
    assert "ro" in options.split(",")
