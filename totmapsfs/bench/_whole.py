"""The whole-system views, against the shell one-liner that does the same from /proc, and a psutil loop.

The one-liner is what a user types instead of us:

    cat /proc/[0-9]*/smaps_rollup | awk '/^Pss:/ { s += $2 } END { print s }'

Each view is read the same way, through ``cat ... | awk`` (so both pay a
shell, cat and awk), from a mount with the cache off (cold: every process's
smaps_rollup generated afresh) and from one whose answers are all cached
(warm). Wall time per read, the one-liner's ratios per run.
"""

from __future__ import annotations

import functools
import os
import shutil
from collections.abc import Callable
from pathlib import Path

from . import _measure as m
from ._report import Target, fmt, ratios, table

ONE_LINER = "cat /proc/[0-9]*/smaps_rollup 2>/dev/null | awk '/^Pss:/ { s += $2 } END { print s }'"
PSUTIL = "psutil memory_full_info() loop"
VIEWS = {  # view -> the awk program that sums its Pss, as a user would
    "totmaps": "/^Pss:/ { s += $2 } END { print s }",
    "summary": "NR > 1 { s += $4 } END { print s }",
    "metrics": "/^totmapsfs_process_pss_bytes/ { s += $2 } END { print s }",
    "cgroup/totmaps": "/^Pss:/ { s += $2 } END { print s }",
    "files": "NR > 1 && !/^#/ { s += $3 } END { print s }",  # smaps walks, per mapped file
    "meminfo": "/^Processes:/ { print $2 }",
}
# What users run for the files view's question today (Debian smem; optional).
SMEM = "smem -m -c 'map pids pss' | awk 'NR > 1 { s += $3 } END { print s }'"
TARGETED = ("totmaps", "summary", "metrics")  # the views the speed targets name


def psutil_loop(pids: list[int]) -> None:
    """What a monitor does without us: one psutil.Process per pid, memory_full_info() (smaps_rollup)."""
    import psutil

    for pid in pids:
        try:
            psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


def _shell(command: str) -> Callable[[], None]:
    return functools.partial(m.run_command, ["/bin/sh", "-c", command])


def measure(cold: Path, warm: Path, reader: m.Reader, rounds: int) -> dict[str, float]:
    """Median seconds of each variant in one run, measured round-robin."""
    pids = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
    variants: dict[str, Callable[[], object]] = {
        "one-liner": _shell(ONE_LINER),
        PSUTIL: functools.partial(psutil_loop, pids),
    }
    if shutil.which("smem"):
        variants["smem -m"] = _shell(SMEM)
    for name, awk in VIEWS.items():
        reader.read(warm / name)  # primes the warm mount's cache for every process
        variants[f"{name} cold"] = _shell(f"cat {cold / name} | awk '{awk}'")
        variants[f"{name} warm"] = _shell(f"cat {warm / name} | awk '{awk}'")
    return m.medians(m.interleaved(variants, rounds))


def view_row(path: str, cold: list[float], warm: list[float], line: list[float], ref: list[float] | None) -> list[str]:
    """A view's row: ms cold and warm, against the one-liner (``line``), and ``ref``'s time against the view's."""
    return [
        f"cat {path} | awk",
        fmt(cold, 1e3),
        fmt(warm, 1e3),
        f"{fmt(ratios(cold, line))} / {fmt(ratios(warm, line))}",
        f"{fmt(ratios(ref, cold))} / {fmt(ratios(ref, warm))}" if ref else "",
    ]


def report(per_run: dict[str, list[float]], processes: int) -> tuple[str, list[Target]]:
    """The section's table and its targets: each view cold <= 1x the one-liner, warm <= 0.5x; summary vs psutil."""
    line, loop = per_run["one-liner"], per_run[PSUTIL]
    rows = [["one-liner (cat /proc/[0-9]*/smaps_rollup | awk)", fmt(line, 1e3), "", "1.00", ""]]
    rows.append([PSUTIL, fmt(loop, 1e3), "", fmt(ratios(loop, line)), ""])
    if "smem -m" in per_run:
        rows.append(
            ["smem -m (files' reference)", fmt(per_run["smem -m"], 1e3), "", fmt(ratios(per_run["smem -m"], line)), ""]
        )
    rows += [view_row(f"MOUNT/{name}", per_run[f"{name} cold"], per_run[f"{name} warm"], line, loop) for name in VIEWS]
    text = table(
        f"W. Whole-system views over {processes} processes (300 of them idle workloads), ms per read, wall",
        ["", "cold", "warm", "/ one-liner: cold / warm", "psutil loop / cold / warm"],
        rows,
    )
    targets = []
    for name in TARGETED:
        targets.append(Target(f"{name} cold / one-liner", ratios(per_run[f"{name} cold"], line), 1.0, True))
        targets.append(Target(f"{name} warm / one-liner", ratios(per_run[f"{name} warm"], line), 0.5, True))
    targets += [
        Target("summary warm: psutil loop / summary", ratios(loop, per_run["summary warm"]), 5.0, False),
        Target("summary cold: psutil loop / summary", ratios(loop, per_run["summary cold"]), 1.0, False),
    ]
    return text, targets
