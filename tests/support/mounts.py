"""Daemons the tests share: one mount for a whole module, and what in a daemon's log says something went wrong."""

from __future__ import annotations

import shutil
import tempfile
from collections.abc import Iterator
from pathlib import Path

from support.pace import DAEMON_START
from totmapsfs.harness import Mount


def daemon_problems(mount: Mount) -> list[str]:
    """Lines of a daemon's log that say something went wrong."""
    return [
        line
        for line in mount.log_text().splitlines()
        if any(k in line for k in (": WARNING: ", ": ERROR: ", "Traceback"))
    ]


def module_mount(*args: str, env: dict[str, str] | None = None) -> Iterator[Mount]:
    """A module-scoped fixture's body: a daemon run with ``args`` (and ``env``) in a directory every user can traverse.

    Stopped at the end, cleanly and with nothing wrong in its log.
    """
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-test-"))
    d.chmod(0o755)
    m = Mount(d / "mnt", *args, env=env, timeout=DAEMON_START)
    yield m
    assert m.stop() == 0
    assert daemon_problems(m) == []
    shutil.rmtree(d, ignore_errors=True)
