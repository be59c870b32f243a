"""CPU per read, daemon plus reader: what a poll really costs the machine, beside the kernel's own files.

One read is what a monitoring agent does: open, read to the end into a
reused buffer, close (``_measure.Reader``), in this thread. Its CPU is the
daemon's, from the scheduler's own accounting (the first field of
/proc/<pid>/task/<tid>/schedstat: nanoseconds on a CPU, user and system, of
every thread), plus this thread's (CLOCK_THREAD_CPUTIME_ID: its syscalls,
the FUSE request path in the kernel, and for a direct /proc read the kernel
generating the file). A direct read has no daemon: its CPU is the reader's.

Variants are measured round-robin in short chunks, so that the machine's
drift (tens of percent over seconds on a shared VM) hits them all alike;
ratios are then taken per round and their median reported.
"""

from __future__ import annotations

import os
import time
from collections.abc import Sequence
from dataclasses import dataclass

from ._measure import Reader
from ._report import Target, fmt, ratios, table


def task_cpu_ns(pid: int) -> int:
    """Nanoseconds on a CPU of every thread of ``pid`` (schedstat's sum_exec_runtime)."""
    total = 0
    for tid in os.listdir(f"/proc/{pid}/task"):
        try:
            with open(f"/proc/{pid}/task/{tid}/schedstat", "rb") as f:
                total += int(f.read().split()[0])
        except (OSError, IndexError, ValueError):
            continue  # a thread that ended meanwhile: its time is lost to both readings alike
    return total


@dataclass(frozen=True)
class Variant:
    """One thing to read: a path, and the daemon that serves it (None: the kernel itself)."""

    name: str
    path: str
    daemon: int | None


@dataclass(frozen=True)
class Figures:
    """Per read: CPU of daemon + reader, the daemon's share, and wall time, in seconds."""

    cpu: float
    daemon: float
    wall: float


def measure(variants: Sequence[Variant], reads: int, chunks: int = 10) -> dict[str, Figures]:
    """One round: ``reads`` reads of each variant, in ``chunks`` round-robin passes."""
    reader = Reader()
    per = max(1, reads // chunks)
    acc = {v.name: [0, 0, 0] for v in variants}  # reader ns, daemon ns, wall ns
    for v in variants:
        reader.read(v.path)  # warm: the entry is looked up, the cache is filled
    for _ in range(chunks):
        for v in variants:
            d0 = task_cpu_ns(v.daemon) if v.daemon else 0
            t0, w0 = time.thread_time_ns(), time.perf_counter_ns()
            for _ in range(per):
                reader.read(v.path)
            w1, t1 = time.perf_counter_ns(), time.thread_time_ns()
            d1 = task_cpu_ns(v.daemon) if v.daemon else 0
            a = acc[v.name]
            a[0] += t1 - t0
            a[1] += d1 - d0
            a[2] += w1 - w0
    n = per * chunks
    return {name: Figures((r + d) / n / 1e9, d / n / 1e9, w / n / 1e9) for name, (r, d, w) in acc.items()}


def report(per_run: dict[str, list[Figures]]) -> tuple[str, list[Target]]:
    """The section's table, and the three per-read speed targets with their measured bounds."""
    names = list(per_run)
    cpu = {n: [f.cpu for f in per_run[n]] for n in names}
    floor = cpu["floor"]
    rows = []
    for n in names:
        daemon = [f.daemon for f in per_run[n]]
        rows.append(
            [
                n,
                fmt(cpu[n], 1e6, 0),
                fmt(daemon, 1e6, 0),
                fmt([f.wall for f in per_run[n]], 1e6, 0),
                fmt(ratios(cpu[n], floor)),
            ]
        )
    text = table(
        "C. CPU per read (daemon + reader), µs: in-process open/read/close, each variant round-robin",
        ["", "CPU", "of it daemon", "wall", "/ floor"],
        rows,
    )
    small_direct, big_direct = cpu["small direct smaps_rollup"], cpu["2000 direct smaps_rollup"]
    hop = [h - f for h, f in zip(cpu["floor + hop"], floor, strict=True)]
    reads = [r - f for r, f in zip(cpu["floor + reads"], floor, strict=True)]
    denominator = [f + d for f, d in zip(floor, small_direct, strict=True)]
    warm_bound = ratios(cpu["floor + reads"], floor)
    cold_bound = [(f + h + r + d) / (f + d) for f, h, r, d in zip(floor, hop, reads, small_direct, strict=True)]
    targets = [
        Target(
            "small warm / floor (CPU)",
            ratios(cpu["small warm"], floor),
            1.3,
            True,
            note=f"bound: floor + the reads a cached answer needs = {fmt(warm_bound)}x the floor",
        ),
        Target(
            "small cold / (floor + direct smaps_rollup) (CPU)",
            ratios(cpu["small cold"], denominator),
            1.5,
            True,
            note=f"bound: floor + one hop + those reads + smaps_rollup = {fmt(cold_bound)}x",
        ),
        Target("2000 warm / direct smaps_rollup (CPU)", ratios(cpu["2000 warm"], big_direct), 0.6, True),
    ]
    return text, targets
