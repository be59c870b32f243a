"""Benchmark section f: the whole-system views, read side by side with a psutil memory_full_info() loop."""

from __future__ import annotations

import functools
import os
from collections.abc import Callable
from pathlib import Path

from . import _measure as m
from ._report import Target, fmt, ratios, table

PSUTIL = "psutil memory_full_info() loop"


def _own_cgroup() -> str:
    """This process's cgroup v2 path relative to the hierarchy's root ("" for the root)."""
    for line in Path("/proc/self/cgroup").read_text().splitlines():
        if line.startswith("0::"):
            return line[3:].strip("/")
    return ""


def views() -> list[str]:
    """The view files read, relative to the mount: the whole-system ones and our own cgroup's."""
    names = ["summary", "totmaps", "metrics", "cgroup/totmaps"]
    own = _own_cgroup()
    if own:
        names.append(f"cgroup/{own}/totmaps")
    return names


def psutil_loop(pids: list[int]) -> None:
    """What a monitor does without us: one psutil.Process per pid, memory_full_info() (smaps_rollup)."""
    import psutil

    for pid in pids:
        try:
            psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


def measure(cold: Path, warm: Path, reader: m.Reader, rounds: int) -> dict[str, float]:
    """Median seconds per read of each view on the cold (--max-age 0) and warm mounts, and of the loop."""
    pids = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
    variants: dict[str, Callable[[], object]] = {PSUTIL: functools.partial(psutil_loop, pids)}
    for name in views():
        reader.read(str(warm / name))  # primes the warm mount's cache for every process
        variants[f"{name} cold"] = functools.partial(reader.read, str(cold / name))
        variants[f"{name} warm"] = functools.partial(reader.read, str(warm / name))
    return m.medians(m.interleaved(variants, rounds))


def report(per_run: dict[str, list[float]], processes: int) -> tuple[str, list[Target]]:
    """Section f's table, and its two targets (summary warm >= 5x the loop; cold no slower)."""
    loop = per_run[PSUTIL]
    rows = [[PSUTIL, fmt(loop, 1e3), "", "1.00"]]
    for name in views():
        cold, warm = per_run[f"{name} cold"], per_run[f"{name} warm"]
        rows.append([name, fmt(cold, 1e3), fmt(warm, 1e3), f"{fmt(ratios(loop, cold))} / {fmt(ratios(loop, warm))}"])
    text = table(
        f"f. Whole-system views over {processes} processes (300 of them idle workloads), ms per read",
        ["", "cold", "warm", "loop / cold / warm"],
        rows,
    )
    targets = [
        Target("summary warm: psutil loop / summary", ratios(loop, per_run["summary warm"]), 5.0, False),
        Target("summary cold: psutil loop / summary", ratios(loop, per_run["summary cold"]), 1.0, False),
    ]
    return text, targets
