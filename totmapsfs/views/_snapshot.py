"""A snapshot: the rows of one pass over the processes a caller may read, and what every view sums them by."""

from __future__ import annotations

import functools
import pwd
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

# USS, as smem and psutil define it: the memory that would be freed if the
# process exited, i.e. the pages only it maps.
USS_PARTS = ("Private_Clean", "Private_Dirty", "Private_Hugetlb")


@dataclass(frozen=True, slots=True)
class Row:
    """One process of a snapshot: who it is and its totmaps fields (kB)."""

    pid: int
    uid: int  # effective uid: whose process it is, as ps's USER column shows
    comm: str  # the Name line of /proc/<pid>/status; the kernel escapes "\n" and "\\" in it
    cgroup: str | None  # its cgroup v2 path in the mirrored hierarchy, when asked for and inside it
    fields: Mapping[str, int]
    age: float = 0.0  # seconds since the walk that gave these fields began
    walk: float = 0.0  # how long that walk took
    mappings: Mapping[str, tuple[int, ...]] | None = None  # per mapping key, engine.FILE_SUMS (files passes)
    program: str = ""  # what it runs (views._groups.program_name), when the pass was asked for it

    @property
    def uss(self) -> int:
        return sum(self.fields.get(name, 0) for name in USS_PARTS)

    @property
    def pss(self) -> int:
        return self.fields.get("Pss", 0)


@dataclass(frozen=True, slots=True)
class WalkStats:
    """The engine's walking since it started, as metrics counts it (engine.Counters)."""

    source: str  # "rollup" or "smaps"
    walks: int
    walk_seconds: float
    held_not_due: int  # older answers served: the process was walked too recently (the duty)
    held_walk_in_flight: int  # ... another reader's walk of it was under way
    held_budget: int  # ... the views' walk budget was spent


class Snapshot(list[Row]):
    """The rows of one pass, how many processes it had to leave out, and the walking behind it (see Views)."""

    left_out: int = 0
    denied: int = 0  # processes of the pass the caller may not read (only counted, never shown)
    numeric_users: bool = False  # uids as the caller's user namespace numbers them: our names would not be its
    deferred_at: int | None = None  # the first position in the pass whose walk the budget deferred
    stats: WalkStats | None = None
    not_due: int = 0  # processes left out: walked too recently for their duty, no mappings answer yet (files)
    extra: tuple[Any, ...] = ()  # more metric families (_metrics.Family) computed from the rows: meminfo, files
    # The pass's processes, (our pid, the caller's), translated when the plan was made (the caller's
    # pid namespace is closed by the time the rows are finished): meminfo's unread ones.
    visible: Sequence[tuple[int, int]] = ()

    def extend_from(self, other: Snapshot) -> None:
        self.extend(other)
        self.left_out += other.left_out
        self.denied += other.denied
        self.numeric_users = self.numeric_users or other.numeric_users
        self.not_due += other.not_due
        if other.deferred_at is not None and (self.deferred_at is None or other.deferred_at < self.deferred_at):
            self.deferred_at = other.deferred_at


def total(rows: Iterable[Row], names: Iterable[str] = ()) -> dict[str, int]:
    """Field-wise sum, fields in the order the kernel prints them; ``names`` are there even at 0."""
    out: dict[str, int] = dict.fromkeys(names, 0)
    for row in rows:
        for name, value in row.fields.items():
            out[name] = out.get(name, 0) + value
    return out


def by_pss(rows: Iterable[Row]) -> list[Row]:
    """Largest Pss first; pid breaks ties so that equal readings print in a stable order."""
    return sorted(rows, key=lambda r: (-r.pss, r.pid))


def user_of(rows: Snapshot | Iterable[Row], uid: int) -> str:
    """What a view prints for ``uid``: its account name, or the number for a caller in another user namespace."""
    return str(uid) if getattr(rows, "numeric_users", False) else user_name(uid)


@functools.lru_cache(maxsize=4096)
def user_name(uid: int) -> str:
    """The account name of ``uid``, or the number when it has none (as ps prints it)."""
    # Cached: NSS may be slow (LDAP, sssd) and a view may ask for every process.
    try:
        return pwd.getpwuid(uid).pw_name
    except KeyError:
        return str(uid)
