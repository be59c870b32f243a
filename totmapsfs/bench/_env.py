"""The benchmark's environment: workload processes and totmapsfs mounts it starts, and always stops."""

from __future__ import annotations

import contextlib
import ctypes
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path
from types import FrameType

from ..harness import PY, HarnessError, Mount, Workload
from ..service import mount_at


class BenchError(Exception):
    """Something the benchmark needs did not work; printed as one line."""


def _killed_with_us() -> None:
    ctypes.CDLL(None, use_errno=True).prctl(1, signal.SIGKILL, 0, 0, 0)  # PR_SET_PDEATHSIG


def _interrupt(signum: int, frame: FrameType | None) -> None:
    raise KeyboardInterrupt(signal.Signals(signum).name)


class Env:
    """Owns every process and mount of a run; ``close()`` (or the with-block) stops them all."""

    def __init__(self) -> None:
        self.workdir = Path(tempfile.mkdtemp(prefix="totmapsfs-bench-"))
        self.workdir.chmod(0o755)
        self.workloads: list[Workload] = []
        self.mounts: dict[str, Mount] = {}
        self.programs: list[subprocess.Popen[bytes]] = []

    def __enter__(self) -> Env:
        # SIGTERM and SIGHUP unwind like Ctrl-C does, through close(); SIGINT
        # too when started in the background, where it comes ignored.
        for sig in (signal.SIGINT, signal.SIGTERM, signal.SIGHUP):
            signal.signal(sig, _interrupt)
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def workload(self, *args: str) -> Workload:
        """A harness workload (see harness/workload.py for ``args``), stopped by close()."""
        try:
            w = Workload(*args)
        except (HarnessError, TimeoutError) as exc:
            raise BenchError(str(exc)) from None
        self.workloads.append(w)
        return w

    def program(self, *argv: str) -> subprocess.Popen[bytes]:
        """Any other process (``sleep``, the small target), killed by close() or when we die."""
        p = subprocess.Popen(argv, stdin=subprocess.DEVNULL, preexec_fn=_killed_with_us)
        self.programs.append(p)
        return p

    def mount(
        self,
        specs: dict[str, tuple[str, ...]],
        command: tuple[str, ...] = (PY, "-m", "totmapsfs"),
        extra_env: dict[str, str] | None = None,
    ) -> dict[str, Mount]:
        """Start one daemon (``command``, with ``extra_env``) per spec at once, then wait for each to be ready."""
        started = {
            label: Mount(self.workdir / label, *args, wait=False, log_dir=self.workdir, command=command, env=extra_env)
            for label, args in specs.items()
        }
        self.mounts.update(started)
        try:
            for m in started.values():
                m.wait_ready()
        except HarnessError as exc:
            raise BenchError(str(exc)) from None
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
                    w.close()
            for p in self.programs:
                p.kill()
                p.wait()
            if not any(mount_at(str(m.path)) is not None for m in self.mounts.values()):
                shutil.rmtree(self.workdir, ignore_errors=True)
        finally:
            signal.signal(signal.SIGINT, old)
        self.mounts.clear()
        self.workloads.clear()
        self.programs.clear()


@contextlib.contextmanager
def environment() -> Iterator[Env]:
    env = Env()
    with env:
        yield env
