"""One fake procfs root, for ProcReader(root) and the daemon's --proc: what the kernel cannot be made to do on demand.

Real /proc entries are linked in one by one; copies stand in for a kernel
without smaps_rollup; planted pids have files that are a FIFO nobody writes (a
read that blocks for ever) or links to real kernel files that fail with the
wanted errno.
"""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable
from pathlib import Path

from totmapsfs.harness import PY, Mount

FIFO = "fifo"


class FakeProc:
    """A procfs root at ``root``; its ``self`` points at ``self_link``."""

    def __init__(self, root: Path, self_link: str = "/proc/self") -> None:
        self.root = root
        root.mkdir()
        # "/proc/self" is resolved by whoever reads it: the daemon finds its own
        # mountinfo and smaps_rollup through it.
        (root / "self").symlink_to(self_link)

    def real(self, pid: int) -> None:
        """Link /proc/<pid> in; a caller's thread must be, or the daemon cannot tell who is asking."""
        link = self.root / str(pid)
        if not link.is_symlink():
            link.symlink_to(f"/proc/{pid}")

    def copy(self, pid: int, names: Iterable[str]) -> Path:
        """A directory holding copies of /proc/<pid>/<name> for ``names`` only (take the process's state first)."""
        d = self.root / str(pid)
        d.mkdir()
        for name in names:
            (d / name).write_bytes(Path(f"/proc/{pid}/{name}").read_bytes())
        return d

    def plant(self, pid: int, like: int, **files: str) -> Path:
        """A pid whose files are /proc/<like>'s, except ``files``: name -> link target, or FIFO."""
        d = self.root / str(pid)
        d.mkdir()
        for name in ("stat", "status", "cgroup", "smaps", "smaps_rollup", "ns"):
            target = files.get(name, f"/proc/{like}/{name}")
            if target == FIFO:
                os.mkfifo(d / name)
            else:
                (d / name).symlink_to(target)
        return d

    def linked(self, *argv: str) -> tuple[str, ...]:
        """``argv`` run so that its pid is linked in before it starts: a shell links its own, then execs."""
        return ("sh", "-c", 'ln -s /proc/$$ "$0/$$" && exec "$@"', str(self.root), *argv)

    def mount(self, factory: Callable[..., Mount], *args: str) -> Mount:
        # The daemon finds its own user namespace through <root>/<its pid>.
        return factory("--proc", str(self.root), *args, command=self.linked(PY, "-m", "totmapsfs"))
