"""An unwritable stderr (/dev/full, a dead pipe, closed) must not take the daemon down, with or without --debug."""

from __future__ import annotations

import os
import signal
import subprocess
import time
from pathlib import Path

import pytest

from support.kernel import outcome
from support.pace import DAEMON_START, patience
from totmapsfs.harness import PY, wait_for
from totmapsfs.service import mount_at

# -- a full disk or a closed stderr -----------------------------------------------


def daemon_env(buffered: bool) -> dict[str, str]:
    """Our environment with PYTHONUNBUFFERED removed (as systemd starts services) or set (as some CI shells do).

    Unbuffered, nothing is left for Python's flush at exit, which turns a
    failed one into exit status 120; buffered, something is.
    """
    env = {k: v for k, v in os.environ.items() if k != "PYTHONUNBUFFERED"}
    return env if buffered else {**env, "PYTHONUNBUFFERED": "1"}


def start_detached(how: str, workdir: Path, env: dict[str, str], *args: str) -> tuple[subprocess.Popen, Path]:
    """A daemon whose stdout and stderr are /dev/full, a pipe nobody reads, or closed; not waited for."""
    mnt = workdir / "mnt"
    argv = [PY, "-m", "totmapsfs", *args, str(mnt)]
    if how == "closed":
        return subprocess.Popen(["sh", "-c", 'exec "$@" </dev/null >&- 2>&-', "sh", *argv], env=env), mnt
    if how == "full":
        with open("/dev/full", "wb") as full:
            return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=full, stderr=full, env=env), mnt
    r, w = os.pipe()
    os.close(r)  # every write gets EPIPE (Python ignores SIGPIPE, so no signal kills it)
    try:
        return subprocess.Popen(argv, stdin=subprocess.DEVNULL, stdout=w, stderr=w, env=env), mnt
    finally:
        os.close(w)


def answers(p: subprocess.Popen, mnt: Path) -> bool:
    if p.poll() is not None:
        raise AssertionError(f"daemon exited {p.returncode} before serving")
    return mount_at(str(mnt)) is not None and b"\nPss:" in (mnt / "self" / "totmaps").read_bytes()


@pytest.mark.parametrize("buffered", [True, False], ids=["buffered", "unbuffered"])
@pytest.mark.parametrize("debug", [False, True], ids=["quiet", "debug"])
@pytest.mark.parametrize("how", ["full", "broken-pipe", "closed"])
def test_unwritable_stderr_does_not_take_the_daemon_down(workdir: Path, how: str, debug: bool, buffered: bool) -> None:
    """--debug writes a line per request: into /dev/full (ENOSPC), a dead pipe (EPIPE), or nowhere (EBADF)."""
    p, mnt = start_detached(how, workdir, daemon_env(buffered), *(["--debug"] if debug else []))
    try:
        wait_for(lambda: answers(p, mnt), DAEMON_START, f"the daemon with stderr {how}")
        for i in range(100):
            _, text = outcome((mnt / "self" / "totmaps").read_bytes)
            assert isinstance(text, bytes) and b"\nPss:" in text, (i, text, p.poll())
            if i % 10 == 0:
                assert "self" in os.listdir(mnt)
            if i == 50:
                p.send_signal(signal.SIGUSR1)  # a stack dump, to stderr
                p.send_signal(signal.SIGHUP)  # a log line
                time.sleep(0.2)
        for fd in (0, 1, 2):
            # A descriptor left closed would be handed to the next open(), e.g.
            # /dev/fuse, and libfuse's debug output would then go into it.
            assert os.readlink(f"/proc/{p.pid}/fd/{fd}") != "/dev/fuse", fd
        assert p.poll() is None and b"\nPss:" in (mnt / "self" / "totmaps").read_bytes()
        p.send_signal(signal.SIGTERM)
        assert p.wait(patience(15)) == 0 and mount_at(str(mnt)) is None
    finally:
        if p.poll() is None:
            p.kill()
            p.wait()
