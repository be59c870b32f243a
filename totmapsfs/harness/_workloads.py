"""Workload processes for the tests and the benchmark: ``workload.py`` started, driven and always stopped."""

from __future__ import annotations

import contextlib
import functools
import os
import select
import signal
import subprocess
import sys
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import NamedTuple

WORKLOAD_SCRIPT = Path(__file__).with_name("workload.py")
PY = sys.executable


class HarnessError(Exception):
    """A process the harness started did not come up as it must (one line, for the benchmark's error)."""


def as_user(uid: int, argv: list[str], caps: str = "") -> list[str]:
    """``argv`` run with every uid and gid set to ``uid``; no capabilities, or the ambient ``caps``."""
    extra = [f"--inh-caps=+{caps}", f"--ambient-caps=+{caps}"] if caps else []
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups", *extra, *argv]


def wait_for(predicate: Callable[[], object], timeout: float = 10.0, what: str = "condition") -> None:
    """Poll ``predicate`` every 20 ms; TimeoutError after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            raise TimeoutError(f"timed out after {timeout}s waiting for {what}")
        time.sleep(0.02)


def state(pid: int) -> str:
    """The state letter of /proc/<pid>/stat (R, S, T, Z...)."""
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2 :].split()[0].decode()


def _is_stopped(pid: int) -> bool:
    return state(pid) == "T"


class Latency(NamedTuple):
    """A workload's timed map/fault/unmap rounds (--latency): how many, p50, p99 and max in seconds, and how many
    took over 1 ms."""

    rounds: int
    p50: float
    p99: float
    max: float
    slow: int


class Workload:
    """A ``workload.py`` process (and the children it forked); see that file for the layouts it makes.

    It dies with the thread that started it (PR_SET_PDEATHSIG): start it from
    one that outlives it.
    """

    def __init__(self, *args: str, user: int | None = None, caps: str = "", timeout: float = 120.0) -> None:
        argv = [PY, str(WORKLOAD_SCRIPT), *args, "--parent", str(os.getpid())]
        if user is not None:
            argv = as_user(user, argv, caps)
        self.args = args
        self.proc = subprocess.Popen(argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)
        line = self._readline(timeout)
        words = line.split()
        if not words or words[0] != "ready":
            self.close()
            raise HarnessError(f"workload {' '.join(args)} did not start (said {line!r})")
        self.pid = int(words[1])
        self.children = [int(w) for w in words[2:]]
        assert self.pid == self.proc.pid

    @property
    def pids(self) -> list[int]:
        return [self.pid, *self.children]

    def _readline(self, timeout: float) -> str:
        assert self.proc.stdout is not None
        ready, _, _ = select.select([self.proc.stdout], [], [], timeout)
        if not ready:
            self.close()
            raise TimeoutError(f"workload {' '.join(self.args)} did not answer in {timeout:g} s")
        return self.proc.stdout.readline()

    def touch(self, pages: int) -> None:
        """Fault in ``pages`` new anonymous pages; returns once they are in."""
        assert self.proc.stdin is not None
        self.proc.stdin.write(f"touch {pages}\n")
        self.proc.stdin.flush()
        answer = self._readline(30).strip()
        if answer != "touched":
            raise HarnessError(f"workload answered {answer!r} to touch")

    def latency(self) -> Latency:
        """Its --latency rounds since the last call."""
        assert self.proc.stdin is not None
        self.proc.stdin.write("latency\n")
        self.proc.stdin.flush()
        words = self._readline(30).split()
        if len(words) != 6 or words[0] != "latency":
            raise HarnessError(f"workload answered {' '.join(words)!r} to latency")
        rounds, p50, p99, worst, slow = (int(w) for w in words[1:])
        return Latency(rounds, p50 / 1e6, p99 / 1e6, worst / 1e6, slow)

    @contextlib.contextmanager
    def stopped(self) -> Iterator[None]:
        """SIGSTOP the process and its children so that their own memory holds still."""
        for pid in self.pids:
            os.kill(pid, signal.SIGSTOP)
        for pid in self.pids:
            wait_for(functools.partial(_is_stopped, pid), what=f"{pid} to stop")
        try:
            yield
        finally:
            for pid in self.pids:
                os.kill(pid, signal.SIGCONT)

    def close(self) -> None:
        if self.proc.poll() is None:
            with contextlib.suppress(OSError):
                assert self.proc.stdin is not None
                self.proc.stdin.close()  # EOF: it kills and reaps its children, then exits
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                self.proc.kill()
                self.proc.wait()
        for pid in getattr(self, "children", []):  # in case the parent could not
            with contextlib.suppress(OSError):
                os.kill(pid, signal.SIGKILL)
        for pipe in (self.proc.stdin, self.proc.stdout):
            if pipe is not None:
                with contextlib.suppress(OSError):
                    pipe.close()
