"""The benchmark's environment: workload processes and totmapsfs mounts it starts, and always stops."""

from __future__ import annotations

import contextlib
import ctypes
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from types import FrameType
from typing import Callable, Iterator

from ._mountpoint import mount_at, stop_daemon

WORKLOAD_SCRIPT = Path(__file__).with_name("_bench_workload.py")
PR_SET_PDEATHSIG = 1


class BenchError(Exception):
    """Something the benchmark needs did not work; printed as one line."""


def _die_with_parent(sig: int) -> Callable[[], None]:
    """A preexec_fn: the child gets ``sig`` when the benchmark dies, even by SIGKILL."""
    libc = ctypes.CDLL(None, use_errno=True)

    def preexec() -> None:
        libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)

    return preexec


@dataclass
class Workload:
    """One workload process (and its forked children) from _bench_workload.py."""

    label: str
    mappings: int
    pages: int
    proc: subprocess.Popen[bytes]
    pid: int
    children: list[int] = field(default_factory=list)

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.children]

    def stop(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # EOF: it kills and reaps its children, then exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in self.children:  # in case the parent could not
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)


def start_workload(label: str, mappings: int, pages: int, children: int = 0, timeout: float = 120.0) -> Workload:
    argv = [sys.executable, str(WORKLOAD_SCRIPT), "--mappings", str(mappings), "--pages", str(pages),
            "--children", str(children), "--parent", str(os.getpid())]
    proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, preexec_fn=_die_with_parent(signal.SIGKILL))
    assert proc.stdout is not None
    ready, _, _ = select.select([proc.stdout], [], [], timeout)
    line = proc.stdout.readline().decode(errors="replace") if ready else ""
    words = line.split()
    if not words or words[0] != "ready":
        proc.kill()
        proc.wait()
        raise BenchError(f"workload {label} did not start (said {line!r})")
    return Workload(label, mappings, pages, proc, int(words[1]), [int(w) for w in words[2:]])


def is_mounted(path: Path) -> bool:
    return mount_at(str(path)) is not None


@dataclass
class Mount:
    """A totmapsfs daemon (``python -m totmapsfs ARGS PATH``) serving at ``path``."""

    label: str
    path: Path
    args: tuple[str, ...]
    proc: subprocess.Popen[bytes]
    log: Path

    def file(self, pid: int) -> str:
        return f"{self.path}/{pid}/totmaps"

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_serving(self, timeout: float = 30.0) -> None:
        deadline = time.monotonic() + timeout
        while "serving" not in self.log_text():
            if self.proc.poll() is not None:
                raise BenchError(f"totmapsfs {' '.join(self.args)} exited {self.proc.returncode}: {self.log_text().strip()}")
            if time.monotonic() > deadline:
                raise BenchError(f"totmapsfs {' '.join(self.args)} did not say 'serving' in {timeout:g}s: {self.log_text().strip()}")
            time.sleep(0.02)

    def stop(self) -> None:
        stop_daemon(self.proc, str(self.path))


def start_mount(label: str, workdir: Path, *args: str) -> Mount:
    path = workdir / label
    log = workdir / f"{label}.log"
    with open(log, "wb") as logf:
        proc = subprocess.Popen(
            [sys.executable, "-m", "totmapsfs", *args, str(path)],
            stdin=subprocess.DEVNULL, stdout=logf, stderr=subprocess.STDOUT,
            preexec_fn=_die_with_parent(signal.SIGTERM),  # the daemon unmounts on SIGTERM
        )
    return Mount(label, path, args, proc, log)


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


class Env:
    """Owns every process and mount of a run; ``close()`` (or the with-block) stops them all."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="totmapsfs-bench-"))
        self.workdir.chmod(0o755)
        self.workloads: list[Workload] = []
        self.mounts: dict[str, Mount] = {}

    def __enter__(self) -> Env:
        # SIGTERM and SIGHUP unwind like Ctrl-C does, through close(); SIGINT
        # too when started in the background, where it comes ignored.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def workload(self, label: str, mappings: int, pages: int, children: int = 0) -> Workload:
        w = start_workload(label, mappings, pages, children)
        self.workloads.append(w)
        return w

    def mount(self, specs: dict[str, tuple[str, ...]]) -> dict[str, Mount]:
        """Start one daemon per spec at once, then wait for each to serve."""
        started = {label: start_mount(label, self.workdir, *args) for label, args in specs.items()}
        self.mounts.update(started)
        for m in started.values():
            m.wait_serving()
        return started

    def close(self) -> None:
        # Ctrl-C again while cleaning up must not leave mounts behind.
        old = signal.signal(signal.SIGINT, signal.SIG_IGN)
        try:
            for m in self.mounts.values():
                with contextlib.suppress(Exception):
                    m.stop()
            for w in self.workloads:
                with contextlib.suppress(Exception):
                    w.stop()
            if not any(is_mounted(m.path) for m in self.mounts.values()):
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)
        self.mounts.clear()
        self.workloads.clear()


@contextlib.contextmanager
def environment() -> Iterator[Env]:
    env = Env()
    with env:
        yield env
