"""Real cgroup v2 directories made by a test: processes moved in, then out again, and the directories removed."""

from __future__ import annotations

import contextlib
from pathlib import Path

import pytest

from totmapsfs.harness import wait_for

from .kernel import own_cgroup


def cgroup2_mount() -> Path:
    """The cgroup2 mount point, read independently of the code under test; skip only if there is none."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4].replace("\\040", " "))
    pytest.skip("cgroup2 is not mounted on this host (no cgroup2 line in /proc/self/mountinfo)")


class Cgroup:
    """A cgroup v2 directory made by the test; ``path`` is the directory, ``rel`` its cgroup path ("/a/b")."""

    def __init__(self, path: Path, mount: Path) -> None:
        self.path = path
        self.rel = "/" + str(path.relative_to(mount))
        self.mount = mount

    def child(self, name: str) -> Cgroup:
        (self.path / name).mkdir()
        return Cgroup(self.path / name, self.mount)

    def add(self, *pids: int) -> None:
        for pid in pids:
            (self.path / "cgroup.procs").write_text(str(pid))  # one pid per write: the kernel's rule

    def procs(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def remove(self) -> None:
        """Move every process back to the test's own cgroup (a leaf that takes processes), then rmdir, deepest first."""
        home = self.mount / own_cgroup().lstrip("/")
        for sub in [*sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)), self.path]:
            for pid in Cgroup(sub, self.mount).procs():
                with contextlib.suppress(ProcessLookupError, OSError):
                    (home / "cgroup.procs").write_text(str(pid))
            group = Cgroup(sub, self.mount)
            wait_for(lambda g=group: not g.procs(), what=f"{sub} to empty")
            sub.rmdir()
