"""Independent readings of what the kernel says, for comparing the mount with it; and the test users."""

from __future__ import annotations

import contextlib
import errno
import operator
import threading
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import TypeVar

import pytest

P = TypeVar("P")
W = TypeVar("W")
NOBODY = 65534
OTHER_USER = 65533  # a uid with no account: the kernel does not care
# The Pss family is summed from per-mapping lines that the kernel truncates to
# whole kB (smaps) where smaps_rollup truncates once: each mapping may lose < 1 kB.
PSS_FAMILY = frozenset({"Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "SwapPss"})


def fields(text: bytes) -> dict[str, int]:
    """An independent reading of smaps-format text: every "Name: N kB" line, summed."""
    out: dict[str, int] = {}
    for line in text.decode().splitlines():
        parts = line.split()
        if len(parts) == 3 and parts[0].endswith(":") and parts[2] == "kB":
            name = parts[0][:-1]
            if name not in ("Size", "KernelPageSize", "MMUPageSize"):
                out[name] = out.get(name, 0) + int(parts[1])
    return out


def read_rollup(pid: int) -> dict[str, int]:
    return fields(Path(f"/proc/{pid}/smaps_rollup").read_bytes())


def settled(parts: Callable[[], P], whole: Callable[[], W], attempts: int = 30) -> tuple[P, W]:
    """(parts, whole) read as parts, whole, parts again until the parts held still around the whole.

    Stopped processes hold their own memory still, but their Pss and the
    Shared/Private split move whenever any other process maps or unmaps the
    same pages (libc, the interpreter): other suites may run on this machine.
    """
    for _ in range(attempts):
        before = parts()
        value = whole()
        if parts() == before:
            return before, value
    pytest.fail(f"the processes' numbers never held still across {attempts} attempts")


def vma_count(pid: int) -> int:
    """How many mappings (VMAs) the process has: the lines of /proc/<pid>/maps."""
    return Path(f"/proc/{pid}/maps").read_bytes().count(b"\n")


def own_cgroup() -> str:
    """This process's cgroup v2 path, read from /proc/self/cgroup."""
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    return next(line[3:] for line in lines if line.startswith("0::"))


def outcome(fn: Callable[[], object]) -> tuple[float, object]:
    """(seconds taken, result or errno name) of one call."""
    t0 = time.monotonic()
    try:
        result: object = fn()
    except OSError as exc:
        result = errno.errorcode.get(exc.errno or 0, str(exc.errno))
    return time.monotonic() - t0, result


@contextlib.contextmanager
def parked_thread() -> Iterator[int]:
    """A thread of ours, parked for the with-block: its id (which resolves in /proc as a pid does, unlisted)."""
    started, stop = threading.Event(), threading.Event()
    tids: list[int] = []

    def park() -> None:
        tids.append(threading.get_native_id())
        started.set()
        stop.wait(60)

    thread = threading.Thread(target=park)
    thread.start()
    try:
        assert started.wait(10), "set-up: the thread did not start"
        yield tids[0]
    finally:
        stop.set()
        thread.join()


def held(
    parts: Callable[[], P], whole: Callable[[], W], still: Callable[[W], object] = lambda w: w, attempts: int = 200
) -> tuple[P, W]:
    """(parts, whole) read as parts, whole, parts, whole, parts until the parts and the two wholes held still.

    ``settled``, made stricter: other suites' processes come and go
    meanwhile, and every process that maps libc moves the Pss_File of every
    other one that does, stopped or not; a change and its undoing between two
    readings of the parts must not pass for stillness, so the whole is read
    twice and must agree with itself (``still``: the part of it that must).
    """
    for _ in range(attempts):
        before, first = parts(), whole()
        middle, second = parts(), whole()
        if before == middle == parts() and still(first) == still(second):
            return before, first
    pytest.fail(f"the processes' numbers never held still across {attempts} attempts")


def bracketed(
    ours: Callable[[], P],
    theirs: Callable[[], W],
    what: str,
    agree: Callable[[W, W], bool] = operator.eq,
    attempts: int = 5,
) -> tuple[P, W]:
    """(ours, theirs) from a stillness window: ours, the tool, ours, the tool again, ours.

    A tool that reads /proc (ps_mem, smem) sees Pss that every process mapping
    the same libraries moves: ~0.5% of a small workload's, ±1% under load. So
    it is compared with ours only from a window in which nothing moved: our
    three readings the same (nothing came or went across it) and the tool's
    two answers in ``agree``ment (nothing lived and died within one run; a
    tool's own process varies its answer by a few kB from run to run). Up to
    ``attempts`` windows; the failure lists every one.
    """
    seen = []
    for _ in range(attempts):
        first, tool = ours(), theirs()
        middle, tool_again = ours(), theirs()
        last = ours()
        if first == middle == last and agree(tool, tool_again):
            return first, tool
        seen.append(f"ours {first}, {middle}, {last}; theirs {tool}, {tool_again}")
        print(f"{what}: something moved while the tool ran ({seen[-1]}), tried again")
    pytest.fail(f"{what}: something moved while the tool ran, in all {attempts} attempts: " + " | ".join(seen))
