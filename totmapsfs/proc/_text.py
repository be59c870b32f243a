"""What the /proc files we read say: stat, status and mountinfo text parsed into the fields we use."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass

# CAP_SYS_PTRACE is capability 19 (include/uapi/linux/capability.h): what lets a
# caller read any process's smaps (kernel/ptrace.c, ptrace_has_cap).
CAP_SYS_PTRACE = 19


@dataclass(frozen=True, slots=True)
class Stat:
    """The fields of /proc/<pid>/stat we use (proc(5) numbering in the comments)."""

    state: str  # (3)
    minflt: int  # (10) summed over the thread group when read via /proc/<tgid>
    majflt: int  # (12)
    starttime: int  # (22) clock ticks since boot: with the pid, the process's identity


@dataclass(frozen=True, slots=True)
class Status:
    """The fields of /proc/<pid>/status we use."""

    name: str
    tgid: int
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    gids: tuple[int, int, int, int]
    cap_prm: int
    cap_eff: int
    # The memory counters block (VmSize ... HugetlbPages) as raw bytes: part of
    # the cache signature, compared whole, never parsed. Empty when the task
    # has no address space (kernel thread, zombie): task_mem() is only printed
    # for a task with an mm (proc_pid_status in fs/proc/array.c).
    mm_counters: bytes

    @property
    def has_ptrace_cap(self) -> bool:
        return bool(self.cap_eff >> CAP_SYS_PTRACE & 1)


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/<pid>/mountinfo, the fields we use (proc(5))."""

    root: str  # (4) the directory of the filesystem that is mounted here
    mountpoint: str  # (5)
    fstype: str
    source: str


def parse_stat(data: bytes) -> Stat:
    # comm may hold spaces and parentheses: the fields start after the last ')'.
    fields = data[data.rindex(b")") + 2 :].split()
    return Stat(
        state=fields[0].decode("ascii", "replace"),
        minflt=int(fields[7]),
        majflt=int(fields[9]),
        starttime=int(fields[19]),
    )


def _line(data: bytes, key: bytes) -> bytes:
    """The rest of the first line that starts with ``key``; b"" when there is none."""
    start = data.find(key)
    if start < 0:
        return b""
    start += len(key)
    end = data.find(b"\n", start)
    return data[start:end] if end >= 0 else data[start:]


def _ids(field: bytes) -> tuple[int, int, int, int]:
    if not field:
        return (0, 0, 0, 0)
    a, b, c, d = (int(x) for x in field.split()[:4])
    return (a, b, c, d)


def parse_status(data: bytes) -> Status:
    # Six lines of ~55 are wanted: finding each (a scan in C) is twice as fast
    # as splitting them all, which counts when a view reads every process.
    tgid, prm, eff = _line(data, b"\nTgid:"), _line(data, b"\nCapPrm:"), _line(data, b"\nCapEff:")
    start = data.find(b"\nVmSize:")
    end = data.find(b"\nCoreDumping:", start) if start >= 0 else -1
    return Status(
        name=_line(data, b"Name:").strip().decode("utf-8", "replace"),
        tgid=int(tgid) if tgid else 0,
        uids=_ids(_line(data, b"\nUid:")),
        gids=_ids(_line(data, b"\nGid:")),
        cap_prm=int(prm, 16) if prm else 0,
        cap_eff=int(eff, 16) if eff else 0,
        mm_counters=data[start:end] if start >= 0 else b"",
    )


_OCTAL = re.compile(rb"\\([0-7]{3})")


def _unescape(field: bytes) -> str:
    # mountinfo writes space, tab, newline and backslash as \ooo (fs/proc_namespace.c).
    return os.fsdecode(_OCTAL.sub(lambda m: bytes([int(m.group(1), 8)]), field))


def parse_mountinfo(data: bytes) -> list[Mount]:
    """The mounts of a mountinfo text, in its order (a later mount on the same point is on top)."""
    mounts = []
    for line in data.split(b"\n"):
        # "id parent major:minor root mountpoint options [optional...] - fstype source superopts"
        left, sep, right = line.partition(b" - ")
        parts, tail = left.split(), right.split()
        if sep and len(parts) >= 5 and len(tail) >= 2:
            mounts.append(Mount(_unescape(parts[3]), _unescape(parts[4]), _unescape(tail[0]), _unescape(tail[1])))
    return mounts
