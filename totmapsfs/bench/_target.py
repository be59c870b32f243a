"""T. What polling costs the polled: a big busy process's own latency while a reader reads it back to back.

The target (harness/workload.py ``--busy --latency``) holds 1.5 GiB, faults in
a new page every millisecond (its memory never holds still, so no cache can
answer for it) and every millisecond maps, faults in and unmaps 16 pages,
timing each round. munmap takes the mmap lock for writing, so a round that
meets a walk of the target's smaps (which holds it for reading) waits for the
walk to end. The variants: nobody reading; one reader back to back through a
mount with ``--duty 1`` (no bound); the same through one with the default duty.
Figures per variant: the rounds' p50, p99 and max, the share of rounds slower
than 1 ms (a round takes ~100 µs alone), and the share of the time the target was walked (distinct answers
times the walk's cost, measured directly in the same run).
"""

from __future__ import annotations

import statistics
import threading
import time
from dataclasses import dataclass
from pathlib import Path

from ..engine import DEFAULT_DUTY
from ..harness import Workload
from ._report import Target, fmt, table

TARGET = ("--private", "1536", "--busy", "1", "--latency", "1")
MOUNTS = {"duty-1": ("--duty", "1")}  # and the run's "default" mount
VARIANTS = ("not polled", "polled, --duty 1", f"polled, default --duty {DEFAULT_DUTY:g}")


@dataclass(frozen=True)
class Figures:
    rounds: int
    p50: float
    p99: float
    max: float
    slow: float  # share of rounds slower than 1 ms
    walked: float  # share of the time the target was walked
    reads: int


def walk_seconds(pid: int) -> float:
    took = []
    for _ in range(7):
        t0 = time.perf_counter()
        Path(f"/proc/{pid}/smaps_rollup").read_bytes()
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def _poll(path: Path, stop: threading.Event, seen: set[bytes], reads: list[int]) -> None:
    """Read ``path`` back to back until ``stop``: the distinct answers into ``seen``, the count into ``reads``."""
    while not stop.is_set():
        seen.add(path.read_bytes())
        reads[0] += 1


def measure(target: Workload, paths: dict[str, Path | None], seconds: float) -> dict[str, Figures]:
    """Each variant for ``seconds``: the target's rounds meanwhile, and what the reader got."""
    w = walk_seconds(target.pid)
    out: dict[str, Figures] = {}
    for name, path in paths.items():
        target.latency()  # forget the rounds so far
        seen: set[bytes] = set()
        reads = [0]
        if path is not None:
            stop = threading.Event()
            reader = threading.Thread(target=_poll, args=(path, stop, seen, reads), daemon=True)
            reader.start()
            time.sleep(seconds)
            stop.set()
            reader.join(30)
        else:
            time.sleep(seconds)
        lat = target.latency()
        walked = len(seen) * w / seconds
        out[name] = Figures(lat.rounds, lat.p50, lat.p99, lat.max, lat.slow / max(1, lat.rounds), walked, reads[0])
    return out


def report(per_run: dict[str, list[Figures]]) -> tuple[str, list[Target]]:
    rows = []
    for name in VARIANTS:
        figs = per_run[name]
        rows.append(
            [
                name,
                fmt([f.p50 for f in figs], 1e6, 0),
                fmt([f.p99 for f in figs], 1e6, 0),
                fmt([f.max for f in figs], 1e3, 1),
                fmt([f.slow for f in figs], 100, 1),
                fmt([f.walked for f in figs], 100, 1),
                fmt([float(f.reads) for f in figs], 1, 0),
            ]
        )
    text = table(
        "T. The target's own latency: a 1.5 GiB busy process's map/fault/unmap round every ms, "
        "while one reader reads it back to back",
        ["", "round p50 µs", "p99 µs", "max ms", "rounds > 1 ms, %", "walked, % of time", "reads"],
        rows,
    )
    default = per_run[VARIANTS[2]]
    unbounded = per_run[VARIANTS[1]]
    targets = [
        Target(
            "walk share of a busy process, default duty",
            [f.walked * 100 for f in default],
            DEFAULT_DUTY * 100 * 1.5,
            True,
            "%",
            note=f"--duty 1: {fmt([f.walked for f in unbounded], 100, 0)}%",
        ),
        Target(
            "target rounds slowed by walks, default duty",
            [f.slow * 100 for f in default],
            DEFAULT_DUTY * 100 * 2,
            True,
            "%",
            note=f"--duty 1: {fmt([f.slow for f in unbounded], 100, 0)}%; "
            f"not polled: {fmt([f.slow for f in per_run[VARIANTS[0]]], 100, 1)}%",
        ),
    ]
    return text, targets
