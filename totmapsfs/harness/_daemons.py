"""totmapsfs daemons for the tests and the benchmark, started as users start them and ready when systemd would say so.

Readiness is what systemd relies on: the harness binds a ``NOTIFY_SOCKET`` of
its own and waits for the daemon's ``READY=1`` (sent only once a lookup
through the mount was answered, see ``service._daemon``), so an old stale mount
at the same path can never pass for this one.
"""

from __future__ import annotations

import ctypes
import os
import select
import signal
import socket
import subprocess
import tempfile
import time
from pathlib import Path

from ..service import lazy_unmount, mount_at
from ._workloads import PY, HarnessError


def stop_daemon(proc: subprocess.Popen[bytes], path: str, sig: int = signal.SIGTERM, timeout: float = 15.0) -> int:
    """Stop a daemon started on ``path`` (``sig``, SIGKILL after ``timeout`` s), clear a mount left; its exit status.

    For the benchmark and the tests, which start daemons as users do; SIGKILL
    leaves a dead mount behind, hence the unmount.
    """
    if proc.poll() is None:
        proc.send_signal(sig)
        try:
            proc.wait(timeout)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait()
    if mount_at(path) is not None:
        lazy_unmount(path)
    return proc.returncode


PR_SET_PDEATHSIG = 1


def _sigterm_with_parent() -> None:
    """A preexec_fn: the daemon gets SIGTERM (and unmounts) when whoever started it dies, even by SIGKILL."""
    ctypes.CDLL(None, use_errno=True).prctl(PR_SET_PDEATHSIG, signal.SIGTERM, 0, 0, 0)


class Notifications:
    """A datagram socket standing in for systemd's notification socket: what the daemon says, in order."""

    def __init__(self) -> None:
        self._dir = tempfile.mkdtemp(prefix="totmapsfs-notify-")
        self.path = os.path.join(self._dir, "notify")
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC)
        self._sock.bind(self.path)
        os.chmod(self._dir, 0o755)  # a daemon that drops privileges must still reach it
        self.messages: list[dict[str, str]] = []

    def wait(self, key: str, proc: subprocess.Popen[bytes], timeout: float) -> dict[str, str]:
        """The first message setting ``key`` (e.g. "READY"); HarnessError if ``proc`` exits or time runs out."""
        deadline = time.monotonic() + timeout
        while True:
            for message in self.messages:
                if key in message:
                    return message
            left = deadline - time.monotonic()
            if proc.poll() is not None:
                raise HarnessError(f"the daemon exited {proc.returncode} before {key}=1")
            if left <= 0:
                raise HarnessError(f"no {key}=1 from the daemon in {timeout:g} s")
            ready, _, _ = select.select([self._sock], [], [], min(left, 0.1))
            if ready:
                data = self._sock.recv(4096).decode(errors="replace")
                self.messages.append(dict(line.partition("=")[::2] for line in data.splitlines() if "=" in line))

    def close(self) -> None:
        self._sock.close()
        for name in (self.path, self._dir):
            try:
                os.unlink(name) if name == self.path else os.rmdir(name)
            except OSError:
                pass


class Mount:
    """A totmapsfs daemon (``python -m totmapsfs ARGS PATH``, or ``command``) serving at ``path``.

    ``wait=False`` only starts it (to start several at once); ``wait_ready()``
    then blocks until its READY=1. The log (stdout and stderr) goes to a file.
    """

    def __init__(
        self,
        path: Path,
        *args: str,
        timeout: float = 30.0,
        env: dict[str, str] | None = None,
        command: tuple[str, ...] = (PY, "-m", "totmapsfs"),
        wait: bool = True,
        log_dir: Path | None = None,
    ) -> None:
        self.path = path
        self.args = args
        self.timeout = timeout
        fd, name = tempfile.mkstemp(prefix=f"{path.name}-", suffix=".log", dir=log_dir)
        self.log = Path(name)
        self._logf = os.fdopen(fd, "wb")
        self.notifications = Notifications()
        self.proc = subprocess.Popen(
            [*command, *args, str(path)],
            stdin=subprocess.DEVNULL,
            stdout=self._logf,
            stderr=subprocess.STDOUT,
            env={**os.environ, **(env or {}), "NOTIFY_SOCKET": self.notifications.path},
            preexec_fn=_sigterm_with_parent,
        )
        if wait:
            self.wait_ready()

    def wait_ready(self) -> None:
        try:
            self.notifications.wait("READY", self.proc, self.timeout)
        except HarnessError as exc:
            self.stop()
            raise HarnessError(f"totmapsfs {' '.join(self.args)} at {self.path}: {exc}: {self.log_text()}") from None

    def log_text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def file(self, pid: int | str) -> Path:
        return self.path / str(pid) / "totmaps"

    def read(self, pid: int | str) -> bytes:
        return self.file(pid).read_bytes()

    def stop(self, sig: int = signal.SIGTERM) -> int:
        """Stop the daemon (SIGKILL after 15 s), clear what it left mounted; its exit status."""
        status = stop_daemon(self.proc, str(self.path), sig)
        self._logf.close()
        self.notifications.close()
        return status
