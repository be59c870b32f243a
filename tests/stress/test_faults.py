"""Faults: stopped and lock-hammering targets, a source that never answers, kernel errnos (stderr: test_stderr.py).

Sources that the kernel cannot be made to produce on demand (a read that
blocks forever, an errno on a chosen file) come from a procfs root built for
the test (``--proc``): real /proc entries by symlink, plus planted pids whose
files are a FIFO nobody writes, or links to real kernel files that fail with
the wanted errno. TOTMAPSFS_STRESS_SECONDS (default 5) is how long the
lock-hammering test runs (half of it per source); figures go to the terminal.
"""

from __future__ import annotations

import errno
import os
import signal
import subprocess
import threading
import time
from collections.abc import Iterator
from pathlib import Path

import pytest

from support import PROGRAMS
from support.fakeproc import FIFO, FakeProc
from support.figures import report
from support.kernel import fields, outcome
from totmapsfs.harness import PY, wait_for
from totmapsfs.service import mount_at

SECONDS = float(os.environ.get("TOTMAPSFS_STRESS_SECONDS", "5"))
HANG = 5.0  # seconds: far beyond any answer on a loaded 2-core box, far below a hang
PLANTED = 4_000_000  # planted pids: valid (< PID_MAX_LIMIT) and far above any real one here


def fields_of(text: object) -> dict[str, int]:
    assert isinstance(text, bytes)
    return fields(text)


class Reader(threading.Thread):
    """One whole-file read in its own thread (it may block for long); outcome as in ``outcome``."""

    def __init__(self, path: Path, fake: FakeProc | None = None) -> None:
        super().__init__(daemon=True)
        self.path, self.fake = path, fake
        self.took: float | None = None
        self.result: object = None
        self.start()

    def run(self) -> None:
        if self.fake is not None:
            self.fake.real(threading.get_native_id())
        self.took, self.result = outcome(self.path.read_bytes)


def stuck_on_fifo(pid: int) -> int:
    """How many of ``pid``'s threads are blocked opening a FIFO that has no writer."""
    count = 0
    for task in os.listdir(f"/proc/{pid}/task"):
        try:
            count += Path(f"/proc/{pid}/task/{task}/wchan").read_text() == "wait_for_partner"
        except OSError:
            pass
    return count


def feed(fifo: Path, data: bytes) -> None:
    # Non-blocking: ENXIO unless the daemon is really waiting at the other end.
    fd = os.open(fifo, os.O_WRONLY | os.O_NONBLOCK)
    try:
        os.write(fd, data)
    finally:
        os.close(fd)


@pytest.fixture
def fake(workdir: Path) -> FakeProc:
    proc = FakeProc(workdir / "proc")
    proc.real(os.getpid())  # the main thread reads too
    return proc


# -- targets that are slow or stopped do not stall anyone else -----------------


def test_stopped_target_stalls_nobody(mount_factory, workloads, request: pytest.FixtureRequest) -> None:
    m = mount_factory("--max-age", "0")
    target, other = workloads("--mappings", "2000"), workloads()
    with target.stopped():
        took = {}
        for name, fn in (
            ("target", lambda: m.read(target.pid)),
            ("other", lambda: m.read(other.pid)),
            ("ls -l", lambda: subprocess.run(["ls", "-l", str(m.path)], capture_output=True, check=True)),
        ):
            took[name], result = outcome(fn)
            assert not isinstance(result, str) and took[name] < HANG, (name, result, took)
            if name == "target":
                assert isinstance(result, bytes) and b"\nPss:" in result
    report(request, "stopped target", **{name: f"{t * 1e3:.1f} ms" for name, t in took.items()})


class Hammer:
    """tests/mmap_hammer.py: a process whose threads keep its mmap lock taken for writing."""

    def __init__(self) -> None:
        self.proc = subprocess.Popen(
            [PY, str(PROGRAMS / "mmap_hammer.py"), "--threads", "2", "--mib", "16", "--nice", "0"],
            stdin=subprocess.PIPE,
            stdout=subprocess.PIPE,
            text=True,
        )
        assert self.proc.stdout is not None
        words = self.proc.stdout.readline().split()
        assert words[:1] == ["ready"], words
        self.pid = int(words[1])

    def stop(self) -> int:
        """Stop hammering; the number of mmap/munmap/mprotect calls made."""
        out, _ = self.proc.communicate(timeout=30)
        return int(out.split()[1])


@pytest.mark.parametrize("source", ["rollup", "smaps"])
def test_target_hammering_its_mmap_lock_stalls_nobody(
    mount_factory, workloads, request: pytest.FixtureRequest, source: str
) -> None:
    """The real case: a target in a tight mmap/munmap/mprotect loop, read at the same time as others and ls."""
    m = mount_factory("--source", source, "--max-age", "0")
    other = workloads("--mappings", "2000")
    hammer = Hammer()
    seconds = SECONDS / 2
    loops = {
        "hammered": lambda: m.read(hammer.pid),
        "other": lambda: m.read(other.pid),
        "ls": lambda: os.listdir(m.path),
    }
    took: dict[str, list[float]] = {name: [] for name in loops}
    failed: dict[str, list[object]] = {name: [] for name in loops}

    def loop(name: str) -> None:
        deadline = time.monotonic() + seconds
        while time.monotonic() < deadline:
            t, result = outcome(loops[name])
            took[name].append(t)
            if isinstance(result, str) or not result:
                failed[name].append(result)

    try:
        threads = [threading.Thread(target=loop, args=(name,)) for name in loops]
        for t in threads:
            t.start()
        for t in threads:
            t.join(seconds + 60)
    finally:
        ops = hammer.stop()
    figures = {
        name: f"{len(ts)} reads / median {sorted(ts)[len(ts) // 2] * 1e3:.1f} ms / max {max(ts) * 1e3:.1f} ms"
        for name, ts in took.items()
        if ts
    }
    report(request, f"mmap hammer, {source}", hammer_calls_per_s=f"{ops / seconds:.0f}", **figures)
    assert ops > 100 * seconds, "the hammer hardly ran: nothing was contended"
    assert not any(failed.values()), failed
    assert all(took.values()), figures  # every loop, the hammered target's included, got answers
    assert max(took["other"]) < HANG and max(took["ls"]) < HANG, figures


def test_source_that_never_answers_stalls_only_its_readers(
    fake: FakeProc, mount_factory, workloads, request: pytest.FixtureRequest
) -> None:
    """A read stuck in the kernel holds a worker: with --threads 3, two leave room for others, three fill the pool."""
    like, other = workloads(), workloads("--mappings", "200")
    fake.real(other.pid)
    slow = [fake.plant(PLANTED + i, like.pid, smaps_rollup=FIFO) for i in range(3)]
    m = fake.mount(mount_factory, "--threads", "3", "--max-age", "0")
    daemon = m.proc.pid
    stuck = [Reader(m.file(d.name), fake) for d in slow[:2]]
    wait_for(lambda: stuck_on_fifo(daemon) == 2, HANG, "two reads stuck on their FIFO")
    took: dict[str, float] = {}
    took["other, 2 stuck"], text = outcome(lambda: m.read(other.pid))
    assert isinstance(text, bytes) and b"\nPss:" in text
    took["ls, 2 stuck"], names = outcome(lambda: os.listdir(m.path))
    assert isinstance(names, list) and {str(other.pid), *(d.name for d in slow)} <= set(names)

    stuck.append(Reader(m.file(slow[2].name), fake))
    wait_for(lambda: stuck_on_fifo(daemon) == 3, HANG, "three reads stuck")
    waiting = Reader(m.file(other.pid), fake)
    waiting.join(1.0)
    assert waiting.is_alive(), "a read got a worker that --threads 3 does not have"  # the documented limit
    took["ls, 3 stuck"], names = outcome(lambda: os.listdir(m.path))  # listing has its own pool
    assert isinstance(names, list) and str(other.pid) in names
    ls_l = fake.linked("ls", "-l", str(m.path))
    took["ls -l, 3 stuck"], ls = outcome(lambda: subprocess.run(ls_l, capture_output=True))
    assert isinstance(ls, subprocess.CompletedProcess) and ls.returncode == 0 and str(other.pid) in ls.stdout.decode()
    assert max(took.values()) < HANG, took

    # The sources answer at last: every stuck read gets the text fed to it, the waiting one its own.
    text = Path(f"/proc/{like.pid}/smaps_rollup").read_bytes()
    for d in slow:
        feed(d / "smaps_rollup", text)
    for r in [*stuck, waiting]:
        r.join(HANG)
        assert isinstance(r.result, bytes) and b"\nPss:" in r.result, r.result
    assert all(fields_of(r.result) == fields_of(text) for r in stuck)
    report(
        request,
        "source that never answers",
        **{name: f"{t * 1e3:.1f} ms" for name, t in took.items()},
        queued_read=f"served {waiting.took:.2f} s after it began",
    )


@pytest.mark.expect_warnings  # "views leave out process ...", which the test checks
def test_views_leave_out_a_process_that_fails_or_never_answers(
    fake: FakeProc, mount_factory, workloads, request: pytest.FixtureRequest
) -> None:
    """One process failing (EIO) or stuck must not take summary/totmaps/metrics down or hang them."""
    like = workloads()
    fake.real(like.pid)
    failing = fake.plant(PLANTED, like.pid, smaps_rollup=f"/proc/{like.pid}/mem")  # EIO
    slow = fake.plant(PLANTED + 1, like.pid, smaps_rollup=FIFO)
    m = fake.mount(mount_factory, "--max-age", "0")
    first = Reader(m.path / "summary", fake)  # meets the stuck process first: it waits, as /proc would
    wait_for(lambda: stuck_on_fifo(m.proc.pid) == 1, HANG, "the first summary stuck on the FIFO")
    took: dict[str, float] = {}
    for view in ("summary", "totmaps", "metrics"):
        took[view], text = outcome((m.path / view).read_bytes)
        assert isinstance(text, bytes), (view, text)
    assert max(took.values()) < HANG, took
    pids = {line.split()[0] for line in (m.path / "summary").read_text().splitlines()[1:]}
    assert "\ntotmapsfs_processes_left_out 2.0\n" in (m.path / "metrics").read_text()
    assert str(like.pid) in pids and failing.name not in pids and slow.name not in pids
    assert first.is_alive()
    feed(slow / "smaps_rollup", Path(f"/proc/{like.pid}/smaps_rollup").read_bytes())
    first.join(HANG)
    assert isinstance(first.result, bytes) and slow.name in first.result.decode()  # fed: it counts again
    log = m.log_text()
    assert log.count(f"views leave out process {PLANTED}:") == 1 and f"views leave out process {PLANTED + 1}:" in log
    assert m.proc.poll() is None
    report(request, "views with a failing and a stuck process", **{v: f"{t * 1e3:.0f} ms" for v, t in took.items()})


def test_sigterm_stops_the_daemon_with_a_read_stuck_in_the_kernel(
    fake: FakeProc, mount_factory, workloads, request: pytest.FixtureRequest
) -> None:
    like = workloads()
    d = fake.plant(PLANTED, like.pid, smaps_rollup=FIFO)
    m = fake.mount(mount_factory)
    stuck = Reader(m.file(d.name), fake)
    wait_for(lambda: stuck_on_fifo(m.proc.pid) == 1, HANG, "the read stuck on its FIFO")
    t0 = time.monotonic()
    rc = m.stop(signal.SIGTERM)  # SIGKILLs after 15 s: rc would then be -9
    took = time.monotonic() - t0
    stuck.join(HANG)
    report(request, "SIGTERM with a stuck read", exit_status=rc, took=f"{took:.2f} s", reader_got=stuck.result)
    assert rc == 0 and mount_at(str(m.path)) is None
    assert not stuck.is_alive() and isinstance(stuck.result, str), stuck.result  # an errno, not a hang
    assert "Traceback" not in m.log_text()


@pytest.mark.expect_warnings  # the restart finds the stale mount, and says so
def test_kill_9_with_a_read_stuck_in_the_kernel(
    fake: FakeProc, mount_factory, workloads, request: pytest.FixtureRequest
) -> None:
    """The reader is released with an errno and a restart serves at once (test_daemon covers an idle kill -9)."""
    like = workloads()
    fake.real(like.pid)
    d = fake.plant(PLANTED, like.pid, smaps_rollup=FIFO)
    m = fake.mount(mount_factory)
    stuck = Reader(m.file(d.name), fake)
    wait_for(lambda: stuck_on_fifo(m.proc.pid) == 1, HANG, "the read stuck on its FIFO")
    t0 = time.monotonic()
    m.proc.kill()
    m.proc.wait()
    stuck.join(HANG)
    released = time.monotonic() - t0
    assert not stuck.is_alive() and isinstance(stuck.result, str), stuck.result
    assert outcome(lambda: os.listdir(m.path))[1] == "ENOTCONN"  # the dead mount is still there
    again = fake.mount(mount_factory)  # same mountpoint, nothing done in between
    restarted = time.monotonic() - t0
    try:
        assert b"\nPss:" in again.read(like.pid) and "stale" in again.log_text()
    finally:
        assert again.stop() == 0
    report(
        request,
        "kill -9 with a stuck read",
        reader_got=stuck.result,
        released_after=f"{released:.2f} s",
        serving_again_after=f"{restarted:.2f} s",
    )


# -- errnos: what the kernel says is what the reader gets ----------------------


@pytest.fixture
def dead_process() -> Iterator[tuple[int, int]]:
    """Descriptors (its /proc directory, its stat) of a process that has exited and been reaped."""
    p = subprocess.Popen(["sleep", "60"])
    dirfd = os.open(f"/proc/{p.pid}", os.O_RDONLY | os.O_DIRECTORY)
    statfd = os.open(f"/proc/{p.pid}/stat", os.O_RDONLY)
    p.kill()
    p.wait()
    yield dirfd, statfd
    os.close(dirfd)
    os.close(statfd)


def test_kernel_errnos_reach_the_reader(fake: FakeProc, mount_factory, workloads, dead_process) -> None:
    like = workloads()
    fake.real(like.pid)
    dirfd, statfd = dead_process
    me = os.getpid()  # /proc/<me>/fd/N reopens our descriptor N: a dead task's file, for the daemon too
    # planted pid: (files to plant, what the kernel says reading that file, what the reader must get)
    cases = {
        PLANTED: ({"smaps_rollup": f"/proc/{like.pid}/mem"}, "EIO", "EIO"),  # nothing mapped at address 0
        PLANTED + 1: ({"smaps_rollup": "/proc/sys/vm/compact_memory"}, "EACCES", "EACCES"),  # mode 0200, root too
        PLANTED + 2: ({"stat": f"/proc/{me}/fd/{statfd}"}, "ESRCH", "ENOENT"),  # the process is gone
    }
    for pid, (files, kernel, _) in cases.items():
        d = fake.plant(pid, like.pid, **files)
        name = next(iter(files))
        assert outcome((d / name).read_bytes)[1] == kernel, name  # the kernel really says so
    gone = fake.root / str(PLANTED + 3)
    gone.symlink_to(f"/proc/{me}/fd/{dirfd}")
    assert outcome(lambda: os.listdir(gone))[1] == "ESRCH"
    m = fake.mount(mount_factory, "--max-age", "0")
    for pid, (_, kernel, want) in cases.items():
        for how in (
            lambda: m.read(pid),  # noqa: B023 (called right here, in this iteration)
            lambda: subprocess.run(fake.linked("cat", str(m.file(pid))), capture_output=True, text=True),  # noqa: B023
        ):
            _, got = outcome(how)
            if isinstance(got, subprocess.CompletedProcess):
                assert got.returncode == 1 and os.strerror(getattr(errno, want)) in got.stderr, (kernel, got)
            else:
                assert got == want, (kernel, got)
    assert outcome(lambda: os.stat(m.path / gone.name))[1] == "ENOENT"  # a lookup of a dead task's directory
    assert str(PLANTED + 3) not in os.listdir(m.path)  # and listing skips it, as /proc would
    assert b"\nPss:" in m.read(like.pid) and m.proc.poll() is None
