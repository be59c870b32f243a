"""The cgroup v2 hierarchy as we mirror it: where it is mounted, each process's place in it, its directories."""

from __future__ import annotations

import os
import stat
from dataclasses import dataclass

from ..errors import NoSuchEntry
from ._errnos import translate
from ._reader import ProcReader
from ._text import Mount

# Cgroup paths are written as /proc/<pid>/cgroup writes them: "/" is the top
# of the mirrored hierarchy, "/system.slice/ssh.service" a cgroup below it.
ROOT = "/"


@dataclass(frozen=True, slots=True)
class Cgroup2Mount:
    """The cgroup2 mount we mirror: where it is, and which cgroup it shows at its top."""

    path: str  # the mount point in our mount namespace, e.g. /sys/fs/cgroup (/sys/fs/cgroup/unified on hybrid hosts)
    root: str  # its top as /proc/<pid>/cgroup names cgroups: "/" unless only a subtree is mounted


def find_cgroup2(mounts: list[Mount]) -> Cgroup2Mount | None:
    """The cgroup2 mount among ``mounts``; one showing the whole hierarchy if any."""
    found: Cgroup2Mount | None = None
    for m in mounts:
        if m.fstype != "cgroup2":
            continue
        mount = Cgroup2Mount(m.mountpoint, m.root)
        if mount.root == ROOT:
            return mount
        found = found or mount
    return found


def unified_path(cgroup_file: bytes) -> str | None:
    """A process's cgroup v2 path: the "0::" line of /proc/<pid>/cgroup; None when there is none.

    The path is relative to the reader's cgroup namespace; a process outside it
    shows as "/../..." (cgroup_path_ns in kernel/cgroup/cgroup.c), which
    ``Cgroup2.relative`` refuses.
    """
    for line in cgroup_file.split(b"\n"):
        if line.startswith(b"0::"):
            return os.fsdecode(line[3:])
    return None


def child_path(parent: str, name: str) -> str:
    """The path of cgroup ``name`` under ``parent``."""
    return f"{parent}{name}" if parent == ROOT else f"{parent}/{name}"


def parent_path(path: str) -> str:
    """The path of the cgroup above ``path`` (the root is its own parent)."""
    head = path.rpartition("/")[0]
    return head or ROOT


def within(member: str, group: str) -> bool:
    """Whether cgroup ``member`` is ``group`` or below it."""
    return group == ROOT or member == group or member.startswith(group + "/")


def rebase(path: str | None, top: str) -> str | None:
    """Cgroup ``path`` as a cgroup namespace rooted at ``top`` names it (None stays None).

    A cgroup outside the namespace's root reads as the kernel writes it there:
    up to the common ancestor, then down ("/../system.slice/x", from
    kernfs_path_from_node via cgroup_path_ns).
    """
    if path is None or top == ROOT:
        return path
    if path == top:
        return ROOT
    if path.startswith(top + "/"):
        return path[len(top) :]
    up, down = top.strip("/").split("/"), [] if path == ROOT else path.strip("/").split("/")
    common = 0
    while common < min(len(up), len(down)) and up[common] == down[common]:
        common += 1
    return "/" + "/".join([".."] * (len(up) - common) + down[common:])


def ancestors(path: str) -> list[str]:
    """A cgroup path and every cgroup above it, the root first."""
    out = [ROOT]
    if path != ROOT:
        parts = path.strip("/").split("/")
        out.extend("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


class Cgroup2:
    """Reads the mirrored cgroup2 hierarchy: its mount, a process's path in it, a directory and its children."""

    def __init__(self, reader: ProcReader) -> None:
        self._reader = reader
        self._mount: Cgroup2Mount | None = None

    def mount(self) -> Cgroup2Mount | None:
        """The cgroup2 mount, found once; looked for again on each call while there is none."""
        if self._mount is None:
            try:
                self._mount = find_cgroup2(self._reader.mounts())
            except OSError:
                return None
        return self._mount

    def relative(self, path: str | None) -> str | None:
        """A process's /proc cgroup path as a path in the mirrored tree; None when it is outside.

        The one place that decides "outside": no cgroup2 line, a cgroup outside
        our cgroup namespace ("/../x"), or one outside a subtree mount.
        """
        mount = self.mount()
        if mount is None or path is None or not path.startswith("/"):
            return None
        top = mount.root.rstrip("/")
        if path != top and not path.startswith(top + "/"):
            return None
        rel = path[len(top) :].strip("/")
        if rel and any(part in ("", ".", "..") for part in rel.split("/")):
            return None
        return "/" + rel

    def _real(self, path: str) -> str:
        mount = self.mount()
        if mount is None:
            raise NoSuchEntry("cgroup2 is not mounted")
        return mount.path + (path if path != ROOT else "")

    def stat(self, path: str) -> os.stat_result:
        """The cgroup directory itself (owner, times); NoSuchEntry once it is removed."""
        try:
            st = os.lstat(self._real(path))
        except OSError as exc:
            raise translate(exc, f"cgroup {path}", NoSuchEntry(path)) from None
        if not stat.S_ISDIR(st.st_mode):
            raise NoSuchEntry(path)
        return st

    def exists(self, path: str) -> bool:
        try:
            return stat.S_ISDIR(os.lstat(self._real(path)).st_mode)
        except (OSError, NoSuchEntry):
            return False

    def children(self, path: str) -> list[tuple[str, os.stat_result]]:
        """The child cgroups of ``path`` with their stats, sorted by name."""
        out = []
        try:
            with os.scandir(self._real(path)) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            out.append((entry.name, entry.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # removed while we listed it
        except OSError as exc:
            raise translate(exc, f"cgroup {path}", NoSuchEntry(path)) from None
        out.sort()
        return out
