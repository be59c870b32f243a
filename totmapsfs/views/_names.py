"""Groups of processes: what a program is called, a name fit for a directory and an awk column, sums by group."""

from __future__ import annotations

import os
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass, field

from ._snapshot import Row
from ._summary import one_word

# A program whose executable cannot be named: the kernel's comm stands in,
# after this mark (shell-, awk- and path-safe; never the start of a basename
# we print, since those come from exe, and "comm:" is one in a million).
COMM_MARK = "comm:"

# The ChromeOS kernel's totmaps (2013-2017) printed these fields, in this
# order, and Chromium's ProcessMetrics::GetWorkingSetKBytesTotmaps
# (base/process/process_metrics_linux.cc) reads it by position: the whole
# file split at whitespace, token 3*line+1, Pss on line 1, Private_Clean on
# 4, Private_Dirty on 5, Swap on 9.
CHROMEOS_FIELDS = (
    "Rss",
    "Pss",
    "Shared_Clean",
    "Shared_Dirty",
    "Private_Clean",
    "Private_Dirty",
    "Referenced",
    "Anonymous",
    "AnonHugePages",
    "Swap",
    "Locked",
)


def chromeos(fields: Mapping[str, int]) -> Mapping[str, int]:
    """``fields`` in the ChromeOS layout; empty stays empty (a process with no address space reads empty)."""
    return {name: fields.get(name, 0) for name in CHROMEOS_FIELDS} if fields else {}


# --layout: None is every field the kernel reports, in its order.
LAYOUTS: dict[str, Callable[[Mapping[str, int]], Mapping[str, int]] | None] = {"kernel": None, "chromeos": chromeos}


def program_name(exe: str | None, comm: str) -> str:
    """What a process runs: its executable's basename, as ps_mem groups; else its comm, marked.

    An interpreter is its own program (python3 running a script is
    "python3.13"): the executable is what the kernel mapped and what no
    prctl(PR_SET_NAME) renames, so Firefox's "Web Content" children are
    "firefox-esr" and a renamed process cannot pass for another program.
    An unreadable link (exited meanwhile) or a deleted executable (" (deleted)",
    d_path in fs/d_path.c) has no name to trust: COMM_MARK + comm.
    """
    if exe is None or exe.endswith(" (deleted)"):
        return COMM_MARK + comm
    return os.path.basename(exe)


def entry_name(name: str) -> str:
    """``name`` as one awk column and one directory entry: summary's escaping, and "/" as \\057."""
    return one_word(name).replace("/", "\\057")


@dataclass(slots=True)
class GroupSum:
    """The readable processes of one group (a program, a user): how many, their fields summed, the oldest answer."""

    name: str  # as entry_name prints it
    processes: int = 0
    fields: dict[str, int] = field(default_factory=dict)
    uss: int = 0
    age: float = 0.0

    @property
    def pss(self) -> int:
        return self.fields.get("Pss", 0)


def sums_by(rows: Iterable[Row], key: Callable[[Row], str]) -> list[GroupSum]:
    """The rows summed by ``key`` (an entry name), largest Pss first, then by name: a stable order."""
    groups: dict[str, GroupSum] = {}
    for row in rows:
        name = key(row)
        group = groups.get(name)
        if group is None:
            group = groups[name] = GroupSum(name)
        group.processes += 1
        acc = group.fields
        for part, value in row.fields.items():
            acc[part] = acc.get(part, 0) + value
        group.uss += row.uss
        group.age = max(group.age, row.age)
    return sorted(groups.values(), key=lambda g: (-g.pss, g.name))
