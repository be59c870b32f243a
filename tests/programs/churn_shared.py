"""What churn.py's processes share: the table of live children in one MAP_SHARED mapping, and how a child is made.

Imported by churn.py (see its docstring); beside it, so on sys.path when it runs as a script.
"""

from __future__ import annotations

import mmap
import os
import re
import signal
from pathlib import Path
from typing import NoReturn

PAGE = mmap.PAGESIZE
MAP_LOCKED = 0x2000  # not exported by Python's mmap module (asm-generic/mman-common.h)
LOW = 300  # RESERVED_PIDS: after a wrap the kernel hands out pids from here up
READY, DEAD = 1, 2
COUNTERS = (
    "reads",
    "verified",
    "raced",
    "unverified",
    "enoent",
    "enoent_live",
    "empty",
    "errors",
    "wrong",
    "reused",
    "reused_same_start",
    "listings",
    "listing_errors",
    "views",
    "view_errors",
)
VIEW_NAMES = {
    "self",
    "thread-self",
    "totmaps",
    "summary",
    "metrics",
    "cgroup",
    "programs",
    "users",
    "program",
    "user",
    "files",
    "meminfo",
}
LINE = re.compile(rb"([^\s:]+):\s*(\d+) kB")


def pages_for(pid: int, owner: int) -> int:
    """Locked pages of the owner-th child to hold ``pid``: 63 consecutive owners all differ."""
    return 1 + (pid * 37 + owner) % 64


def pack(owner: int, pages: int, state: int) -> int:
    return owner << 32 | pages << 8 | state


def stat_fields(pid: int | str) -> list[bytes]:
    data = Path(f"/proc/{pid}/stat").read_bytes()
    return data[data.rindex(b")") + 2 :].split()  # fields from (3), state, on


def generation(pid: int) -> tuple[bytes, ...]:
    """What the engine's cache signature is made of: fault counts and the status memory block."""
    status = Path(f"/proc/{pid}/status").read_bytes()
    fields = stat_fields(pid)
    return fields[7], fields[9], status[status.find(b"\nVmSize:") : status.find(b"\nCoreDumping:")]


def parse(text: bytes) -> dict[str, int] | None:
    """The fields of a totmaps text; None if any line is not the kernel's "Name: N kB"."""
    matches = [LINE.fullmatch(line) for line in text.splitlines()]
    if not all(matches):
        return None
    return {m.group(1).decode(): int(m.group(2)) for m in matches if m}


class Shared:
    """State shared by every process through one MAP_SHARED mapping, as 8-byte words.

    An aligned 8-byte load or store is atomic on x86-64 and arm64, so each table
    entry pack(owner, pages, state) is written and read whole, without a lock.
    """

    def __init__(self, size: int, readers: int) -> None:
        self.size = size
        n = len(COUNTERS)
        self._map = mmap.mmap(-1, 8 * (1 + 4 * size + readers * n), flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
        q = memoryview(self._map).cast("Q")
        self.flags = q[0:1]  # [0]: stop
        self.entry = q[1 : 1 + size]  # per pid, written by the child (ready), then the spawner (dead)
        self.start = q[1 + size : 1 + 2 * size]  # per pid: the ready owner's start time, by the child
        self.read_owner = q[1 + 2 * size : 1 + 3 * size]  # per pid: latest owner a reader verified
        self.read_start = q[1 + 3 * size : 1 + 4 * size]  # ... and its start time
        base = 1 + 4 * size
        self.counters = [q[base + i * n : base + (i + 1) * n] for i in range(readers)]

    def total(self, name: str) -> int:
        return sum(c[COUNTERS.index(name)] for c in self.counters)


def child(shared: Shared, owners: dict[int, int]) -> NoReturn:
    """A churn child: lock its amount, announce itself, wait for SIGKILL."""
    keep = []  # the locked mapping, alive until the SIGKILL
    try:
        pid = os.getpid()
        if pid < shared.size:
            owner = owners.get(pid, 0) + 1  # the spawner's count, as it was at our fork
            pages = pages_for(pid, owner)
            flags = mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS | MAP_LOCKED | mmap.MAP_POPULATE
            keep.append(mmap.mmap(-1, pages * PAGE, flags=flags))
            shared.start[pid] = int(stat_fields("self")[19])
            shared.entry[pid] = pack(owner, pages, READY)  # last: readers trust the rest only after this
        while True:
            signal.pause()
    finally:
        os._exit(3)  # only on an exception: the spawner counts it as a failure
