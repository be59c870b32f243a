"""Fixtures: real processes with known memory layouts, real FUSE mounts, real unprivileged users."""

from __future__ import annotations

import contextlib
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Callable, Iterator, TypeVar

import pytest

from parser_support import impl  # noqa: F401 (the parser tests' fixture: each implementation in turn)
from totmapsfs._mountpoint import lazy_unmount, mount_at, stop_daemon

HERE = Path(__file__).resolve().parent
WORKLOAD = HERE / "workload.py"
PY = sys.executable
P = TypeVar("P")
W = TypeVar("W")
NOBODY = 65534
OTHER_USER = 65533  # a uid with no account: the kernel does not care


def as_user(uid: int, argv: list[str], caps: str = "") -> list[str]:
    """argv run with every uid and gid set to ``uid``; no capabilities, or the ambient ``caps``."""
    extra = [f"--inh-caps=+{caps}", f"--ambient-caps=+{caps}"] if caps else []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *extra, *argv]


def fields(text: bytes) -> dict[str, int]:
    """An independent reading of smaps-format text: every "Name: N kB" line, summed."""
    out: dict[str, int] = {}
    for line in text.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            name = parts[0][:-1]
            if name not in ("Size", "KernelPageSize", "MMUPageSize"):
                out[name] = out.get(name, 0) + int(parts[1])
    return out


def read_rollup(pid: int) -> dict[str, int]:
    return fields(Path(f"/proc/{pid}/smaps_rollup").read_bytes())


def settled(parts: Callable[[], P], whole: Callable[[], W], attempts: int = 30) -> tuple[P, W]:
    """(parts, whole) read as parts, whole, parts again until the parts held still around the whole.

    Stopped processes hold their own memory still, but their Pss and the
    Shared/Private split move whenever any other process maps or unmaps the
    same pages (libc, the interpreter): other suites may run on this machine.
    """
    for _ in range(attempts):
        before = parts()
        value = whole()
        if parts() == before:
            return before, value
    pytest.fail(f"the processes' numbers never held still across {attempts} attempts")


def wait_for(predicate, timeout: float = 10.0, what: str = "condition") -> None:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def state(pid: int) -> str:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2 :].split()[0].decode()


class Workload:
    """A tests/workload.py process; see that file for the layouts it makes."""

    def __init__(self, *args: str, user: int | None = None, caps: str = "", timeout: float = 60.0) -> None:
        argv = [PY, str(WORKLOAD), *args]
        if user is not None:
            argv = as_user(user, argv, caps)
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._readline(timeout)
        words = line.split()
        assert words and words[0] == "ready", f"workload said {line!r}"
        self.pid = int(words[1])
        self.children = [int(w) for w in words[2:]]
        assert self.pid == self.proc.pid

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError("workload did not answer")
        return self.proc.stdout.readline()

    def touch(self, pages: int) -> None:
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"touch {pages}\n")
        self.proc.stdin.flush()
        assert self._readline(30).strip() == "touched"

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP the process and its children so their memory holds still."""
        pids = [self.pid, *self.children]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for pid in pids:
            wait_for(lambda: state(pid) == "T", what=f"{pid} to stop")
        try:
            yield
        finally:
            for pid in pids:
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()
            try:
                self.proc.wait(5)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.children:
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)


class Mount:
    """A totmapsfs daemon run as users run it (python -m totmapsfs), mounted at ``path``."""

    def __init__(
        self,
        path: Path,
        *args: str,
        timeout: float = 15.0,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = (PY, "-m", "totmapsfs"),
    ) -> None:
        self.path = path
        self.log = Path(tempfile.mkstemp(prefix=f"{path.name}-", suffix=".log")[1])
        self._logf = open(self.log, "wb")
        self.proc = subprocess.Popen(
            [*command, *args, str(path)],
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {})},
        )
        try:
            wait_for(self._answers, timeout, f"the mount at {path} ({self.log_text()})")
        except TimeoutError:
            self.stop()
            raise

    def _answers(self) -> bool:
        if self.proc.poll() is not None:
            raise RuntimeError(f"daemon exited {self.proc.returncode}: {self.log_text()}")
        # The daemon logs "serving" only after a lookup through the mount was
        # answered (as it tells systemd READY=1); an old stale mount at the
        # same path must not pass for this one.
        return "serving" in self.log_text()

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def file(self, pid: int | str) -> Path:
        return self.path / str(pid) / "totmaps"

    def read(self, pid: int | str) -> bytes:
        return self.file(pid).read_bytes()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        status = stop_daemon(self.proc, str(self.path), sig)
        self._logf.close()
        return status


def is_mounted(path: Path) -> bool:
    return mount_at(str(path)) is not None


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is 0700, closed to nobody)."""
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-test-"))
    d.chmod(0o755)
    yield d
    for sub in d.iterdir():
        if sub.is_dir() and is_mounted(sub):
            lazy_unmount(str(sub))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mount_factory(workdir: Path) -> Iterator:
    mounts: list[Mount] = []

    def make(*args: str, name: str = "mnt", **kw) -> Mount:
        m = Mount(workdir / name, *args, **kw)
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.stop()


@pytest.fixture
def workloads() -> Iterator:
    made: list[Workload] = []

    def make(*args: str, **kw) -> Workload:
        w = Workload(*args, **kw)
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture(scope="module")
def exact_mount(tmp_path_factory) -> Iterator[Mount]:
    """One rollup mount with the cache off, shared by a module's exactness tests."""
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-test-"))
    d.chmod(0o755)
    m = Mount(d / "mnt", "--max-age", "0")
    yield m
    assert m.stop() == 0
    shutil.rmtree(d, ignore_errors=True)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root to mount FUSE with allow_other")
