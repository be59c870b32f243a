"""The daemon's life: errors a user meets, signals, crashes and restarts, requests that go wrong."""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from pathlib import Path

import pytest

from support.cli import assert_one_line_error, run_cli
from support.pace import DAEMON_START, patience
from totmapsfs.harness import PY, Mount
from totmapsfs.service import mount_at

ROOT = Path(__file__).resolve().parents[2]
PROGRAMS = ROOT / "tests" / "programs"


def is_mounted(path: Path) -> bool:
    return mount_at(str(path)) is not None


def test_mountpoint_not_a_directory(workdir: Path) -> None:
    f = workdir / "file"
    f.write_text("")
    assert_one_line_error(run_cli(str(f)), "not a directory")


def test_refuses_a_mountpoint_with_another_filesystem(workdir: Path) -> None:
    d = workdir / "busy"
    d.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "tmpfs-for-test", str(d)], check=True)
    try:
        assert_one_line_error(run_cli(str(d)), "tmpfs")
    finally:
        subprocess.run(["umount", str(d)], check=True)


def test_fusermount3_missing(workdir: Path) -> None:
    bindir = workdir / "bin"
    bindir.mkdir()
    assert_one_line_error(run_cli(str(workdir / "m"), env={"PATH": str(bindir)}), "fusermount3")


def test_dev_fuse_missing(workdir: Path) -> None:
    # A private mount namespace whose /dev is an empty tmpfs: no /dev/fuse there.
    script = f"mount -t tmpfs none /dev && exec {PY} -m totmapsfs {workdir}/m"
    r = subprocess.run(
        ["unshare", "--mount", "--propagation", "private", "sh", "-c", script],
        capture_output=True,
        text=True,
        timeout=60,
        cwd=ROOT,
    )
    assert_one_line_error(r, "/dev/fuse")


def test_rollup_source_on_a_kernel_without_it(workdir: Path) -> None:
    fake = workdir / "proc"
    (fake / "1").mkdir(parents=True)
    (fake / "self").symlink_to("1")
    assert_one_line_error(run_cli("--proc", str(fake), "--source", "rollup", str(workdir / "m")), "smaps_rollup")


def test_creates_a_missing_mountpoint_with_parents(mount_factory, workdir: Path) -> None:
    m = mount_factory(name="a/b/c")
    assert m.path.is_dir() and b"Pss:" in m.read("self")


def test_sigterm_unmounts_and_exits_zero_with_reads_in_flight(mount_factory, workloads) -> None:
    # --max-age 0 and --duty 1: no answer comes from the cache, every read walks smaps.
    m = mount_factory("--max-age", "0", "--duty", "1")
    w = workloads("--mappings", "4000")
    stop = threading.Event()
    lock = threading.Lock()
    inside = [0]  # readers inside a read of the mount right now
    outcomes: list[str] = []

    def reader() -> None:
        while not stop.is_set():
            with lock:
                inside[0] += 1
            try:
                outcomes.append("ok" if m.read(w.pid) else "empty")
            except OSError as exc:
                outcomes.append(errno.errorcode.get(exc.errno, str(exc.errno)))
                return
            finally:
                with lock:
                    inside[0] -= 1

    threads = [threading.Thread(target=reader) for _ in range(4)]
    for t in threads:
        t.start()
    deadline = time.monotonic() + 30
    while outcomes.count("ok") < 8:  # every reader under way: walks done, more going
        assert time.monotonic() < deadline, f"set-up: reads did not get going: {outcomes}"
        time.sleep(0.01)
    with lock:
        in_flight = inside[0]
    t0 = time.monotonic()
    assert m.stop(signal.SIGTERM) == 0
    took = time.monotonic() - t0
    stop.set()
    for t in threads:
        t.join(10)
        assert not t.is_alive(), "a read hung past the daemon's stop"
    assert in_flight >= 1, "set-up: no read was in flight at SIGTERM"
    assert took < patience(10) and not is_mounted(m.path)
    assert "empty" not in outcomes  # a read answers whole, or fails: never an empty file
    assert "Traceback" not in m.log_text()


def test_sighup_does_not_kill_the_mount(mount_factory) -> None:
    m = mount_factory()
    m.proc.send_signal(signal.SIGHUP)
    time.sleep(0.3)
    assert m.proc.poll() is None and b"Pss:" in m.read("self")


def test_restart_after_kill_9_needs_no_manual_step(mount_factory, workdir: Path) -> None:
    m = mount_factory()
    m.proc.kill()
    m.proc.wait()
    with pytest.raises(OSError) as info:
        os.listdir(m.path)
    assert info.value.errno == errno.ENOTCONN  # the stale mount a killed daemon leaves
    again = Mount(m.path, timeout=DAEMON_START)
    try:
        assert b"Pss:" in again.read("self")
        assert "stale" in again.log_text()
    finally:
        assert again.stop() == 0


@pytest.mark.expect_warnings  # the planted bugs are logged as internal errors
def test_survives_planted_bugs(mount_factory) -> None:
    m = mount_factory(
        command=(PY, str(PROGRAMS / "faulty_daemon.py")), env={"FAULT_PID": str(os.getpid()), "PYTHONPATH": str(ROOT)}
    )
    with pytest.raises(OSError) as info:
        os.stat(m.path / "4194000")
    assert info.value.errno == errno.EIO
    with pytest.raises(OSError) as info:
        m.read(os.getpid())
    assert info.value.errno == errno.EIO
    assert m.proc.poll() is None
    other = subprocess.Popen(["sleep", "30"])
    try:
        assert b"Pss:" in m.read(other.pid)
    finally:
        other.kill()
        other.wait()
    log = m.log_text()
    assert "planted bug in lookup" in log and "ZeroDivisionError" in log


def test_targets_exiting_mid_read(mount_factory, workloads) -> None:
    """Readers hammer processes that die under them: full answers or ENOENT, nothing else."""
    m = mount_factory("--max-age", "0")
    outcomes: dict[str, int] = {}
    lock = threading.Lock()

    def hammer(pid: int, stop: threading.Event) -> None:
        while not stop.is_set():
            try:
                text = m.read(pid)
                kind = "ok" if b"\nPss:" in text else ("empty" if not text else "bad")
            except OSError as exc:
                kind = errno.errorcode.get(exc.errno, str(exc.errno))
            with lock:
                outcomes[kind] = outcomes.get(kind, 0) + 1

    for _ in range(5):
        w = workloads("--mappings", "3000")
        stop = threading.Event()
        threads = [threading.Thread(target=hammer, args=(w.pid, stop)) for _ in range(3)]
        for t in threads:
            t.start()
        time.sleep(0.2)
        w.proc.kill()
        w.proc.wait()
        time.sleep(0.1)
        stop.set()
        for t in threads:
            t.join(10)
    # "empty" is allowed only for the instant the process is a zombie.
    assert set(outcomes) <= {"ok", "ENOENT", "empty"}, outcomes
    assert outcomes.get("ok") and outcomes.get("ENOENT")
    assert m.proc.poll() is None and b"Pss:" in m.read("self")
