"""What the /proc files we read say: stat, status and mountinfo text parsed into the fields we use."""

from __future__ import annotations

import os
import re
from dataclasses import dataclass
from typing import NamedTuple

# CAP_SYS_PTRACE is capability 19 (include/uapi/linux/capability.h): what lets a
# caller read any process's smaps (kernel/ptrace.c, ptrace_has_cap).
CAP_SYS_PTRACE = 19


class Stat(NamedTuple):
    """The fields of /proc/<pid>/stat we use (proc(5) numbering in the comments)."""

    state: str  # (3)
    minflt: int  # (10) summed over the thread group when read via /proc/<tgid>
    majflt: int  # (12)
    starttime: int  # (22) clock ticks since boot: with the pid, the process's identity


class Status(NamedTuple):
    """The fields of /proc/<pid>/status we use."""

    name: str
    tgid: int
    uids: tuple[int, int, int, int]  # real, effective, saved, filesystem
    gids: tuple[int, int, int, int]
    cap_prm: int
    cap_eff: int
    # The memory counters block (the VmPeak ... HugetlbPages lines, see
    # _MM_BLOCK) as raw bytes: part of the cache signature, compared whole. Empty when the task
    # has no address space (kernel thread, zombie): task_mem() is only printed
    # for a task with an mm (proc_pid_status in fs/proc/array.c).
    mm_counters: bytes
    # NStgid/NSpid: the ids in each pid namespace from the procfs mount's down
    # to the task's own (Linux >= 4.1; empty before).
    ns_tgids: tuple[int, ...] = ()
    ns_pids: tuple[int, ...] = ()


@dataclass(frozen=True, slots=True)
class Mount:
    """One line of /proc/<pid>/mountinfo, the fields we use (proc(5))."""

    root: str  # (4) the directory of the filesystem that is mounted here
    mountpoint: str  # (5)
    fstype: str
    source: str


def parse_stat(data: bytes) -> Stat:
    """The fields of a /proc/<pid>/stat text; ValueError when it has too few.

    comm may hold spaces and parentheses: the fields start after the last ')'.
    """
    fields = data[data.rfind(b")") + 1 :].split()
    if len(fields) < 20:
        raise ValueError(f"stat: {len(fields)} fields after the command name, 20 wanted")
    return Stat(fields[0].decode("ascii", "replace"), int(fields[7]), int(fields[9]), int(fields[19]))


def _value(data: bytes, key: bytes) -> bytes | None:
    """What follows ``key`` on the first line that starts with it; None when no line does."""
    if data.startswith(key):
        start = len(key)
    else:
        at = data.find(b"\n" + key)
        if at < 0:
            return None
        start = at + 1 + len(key)
    end = data.find(b"\n", start)
    return data[start:end] if end >= 0 else data[start:]


def _ints(field: bytes | None, base: int = 10) -> tuple[int, ...]:
    return () if field is None else tuple(int(x, base) for x in field.split())


def _ids(field: bytes | None) -> tuple[int, int, int, int]:
    if field is None:
        return (0, 0, 0, 0)
    ids = _ints(field)
    if len(ids) < 4:
        raise ValueError(f"status: {len(ids)} ids where 4 are printed")
    return (ids[0], ids[1], ids[2], ids[3])


def _number(field: bytes | None, base: int = 10) -> int:
    return 0 if field is None else int(field, base)


# The memory counters: task_mem() (fs/proc/task_mmu.c) prints the Vm* and Rss*
# lines, then hugetlb_report_usage() "HugetlbPages:" (4.4+), one run of lines.
# What follows differs between kernels (CoreDumping: only since 4.15; before
# it, Threads: ... voluntary_ctxt_switches:, which move whenever the process
# runs), so the block ends at the first line of any other name. From the "\n"
# before its first line (never the text's first line) to the "\n" after its last.
_MM_LINE = rb"\n(?:Vm|Rss|HugetlbPages:)[^\n]*"
_MM_BLOCK = re.compile(rb"(?:%s)+" % _MM_LINE)


def _mm_block(data: bytes) -> bytes:
    """The memory counter lines of a status text (see _MM_BLOCK); empty when it has none."""
    found = _MM_BLOCK.search(data)
    return b"" if found is None else found.group(0)


def parse_status(data: bytes) -> Status:
    """The fields of a /proc/<pid>/status text we use; a line missing gives its empty value.

    The reference for the C version (_speedups.c, parse_status), which must
    agree on every input: the tests compare both on live and generated text.
    """
    name = _value(data, b"Name:")
    return Status(
        name="" if name is None else name.strip().decode("utf-8", "replace"),
        tgid=_number(_value(data, b"Tgid:")),
        uids=_ids(_value(data, b"Uid:")),
        gids=_ids(_value(data, b"Gid:")),
        cap_prm=_number(_value(data, b"CapPrm:"), 16),
        cap_eff=_number(_value(data, b"CapEff:"), 16),
        mm_counters=_mm_block(data),
        ns_tgids=_ints(_value(data, b"NStgid:")),
        ns_pids=_ints(_value(data, b"NSpid:")),
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
