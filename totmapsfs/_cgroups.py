"""The cgroup v2 hierarchy: where it is mounted, each process's place in it, and stable ids for its directories."""

from __future__ import annotations

import os
import stat
import threading
from dataclasses import dataclass

from ._errors import NameTooLong, NoSuchEntry, NotADirectory
from ._procfs import Mount, ProcReader

# The id table is pruned of cgroups that no longer exist once it holds this
# many more entries than were alive after the last pruning: hosts that create
# a cgroup per container or per login must not grow it for ever.
_PRUNE_SLACK = 1024


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
        if mount.root == "/":
            return mount
        found = found or mount
    return found


def unified_path(cgroup_file: bytes) -> str | None:
    """A process's cgroup v2 path: the "0::" line of /proc/<pid>/cgroup; None when there is none.

    The path is relative to the reader's cgroup namespace; a process outside it
    shows as "/../…", which ``Cgroups.relative`` refuses.
    """
    for line in cgroup_file.split(b"\n"):
        if line.startswith(b"0::"):
            return os.fsdecode(line[3:])
    return None


def child_path(parent: str, name: str) -> str:
    """The relative path of cgroup ``name`` under ``parent`` ("" is the root)."""
    return f"{parent}/{name}" if parent else name


def within(member: str, group: str) -> bool:
    """Whether relative cgroup path ``member`` is ``group`` or below it ("" is the root)."""
    return not group or member == group or member.startswith(group + "/")


def ancestors(path: str) -> list[str]:
    """A /proc-style cgroup path and every cgroup above it, root "/" first."""
    out = ["/"]
    if path != "/":
        parts = path.strip("/").split("/")
        out.extend("/" + "/".join(parts[: i + 1]) for i in range(len(parts)))
    return out


def check_name(name: bytes) -> str:
    """A directory entry name a lookup may ask for; anything that could leave the tree is refused."""
    NameTooLong.check(name)
    if not name or name in (b".", b"..") or b"/" in name or b"\0" in name:
        raise NoSuchEntry(name.decode("utf-8", "replace"))
    return os.fsdecode(name)


class Cgroups:
    """The mirrored cgroup2 directories, named by path relative to the mount ("" is its top).

    Each directory gets a small id, stable for as long as the directory exists,
    so the tree can give it an inode: the table maps both ways under one lock
    (FUSE handlers run in many threads).
    """

    def __init__(self, reader: ProcReader) -> None:
        self._reader = reader
        self._lock = threading.Lock()
        self._mount: Cgroup2Mount | None = None
        self._ids: dict[str, int] = {"": 0}
        self._paths: dict[int, str] = {0: ""}
        self._next_id = 1
        self._alive = 1

    def mount(self) -> Cgroup2Mount | None:
        """The cgroup2 mount, found once; looked for again on each call while there is none."""
        if self._mount is None:
            try:
                self._mount = find_cgroup2(self._reader.mounts())
            except OSError:
                return None
        return self._mount

    def relative(self, path: str | None) -> str | None:
        """A process's /proc cgroup path as a path in the mirrored tree; None when it is outside."""
        mount = self.mount()
        if mount is None or path is None or not path.startswith("/"):
            return None
        root = mount.root.rstrip("/")
        if path != root and not path.startswith(root + "/"):
            return None
        rel = path[len(root) :].strip("/")
        # "/../x" is a cgroup outside our cgroup namespace: no directory here.
        if rel and any(part in ("", ".", "..") for part in rel.split("/")):
            return None
        return rel

    def _real(self, rel: str) -> str:
        mount = self.mount()
        if mount is None:
            raise NoSuchEntry("cgroup2 is not mounted")
        return os.path.join(mount.path, rel) if rel else mount.path

    def stat(self, rel: str) -> os.stat_result:
        """The cgroup directory itself (owner, times); NoSuchEntry once it is removed."""
        try:
            st = os.lstat(self._real(rel))
        except FileNotFoundError:
            raise NoSuchEntry(rel) from None
        except NotADirectoryError:
            raise NotADirectory(rel) from None
        if not stat.S_ISDIR(st.st_mode):
            raise NoSuchEntry(rel)
        return st

    def children(self, rel: str) -> list[tuple[str, os.stat_result]]:
        """The child cgroups of ``rel`` with their stats, sorted by name."""
        out = []
        try:
            with os.scandir(self._real(rel)) as it:
                for entry in it:
                    try:
                        if entry.is_dir(follow_symlinks=False):
                            out.append((entry.name, entry.stat(follow_symlinks=False)))
                    except FileNotFoundError:
                        continue  # removed while we listed it
        except FileNotFoundError:
            raise NoSuchEntry(rel) from None
        out.sort()
        return out

    def id_of(self, rel: str) -> int:
        """The id of directory ``rel``, allocated on first sight."""
        with self._lock:
            ident = self._ids.get(rel)
            if ident is None:
                if len(self._ids) > 2 * self._alive + _PRUNE_SLACK:
                    self._prune()
                ident = self._ids[rel] = self._next_id
                self._paths[ident] = rel
                self._next_id += 1
            return ident

    def path_of(self, ident: int) -> str:
        with self._lock:
            rel = self._paths.get(ident)
        if rel is None:
            raise NoSuchEntry(f"cgroup id {ident}")
        return rel

    def _prune(self) -> None:
        # Lock held. Ids are never reused, so a kernel dentry left over from a
        # removed cgroup cannot resolve to another one: it gets ENOENT.
        for rel in [r for r in self._ids if r and not os.path.isdir(self._real(r))]:
            del self._paths[self._ids.pop(rel)]
        self._alive = len(self._ids)

    def __len__(self) -> int:
        return len(self._ids)
