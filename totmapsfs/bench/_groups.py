"""G. The grouped views: programs, users and a tree of 301 processes, beside summary, cold and cached.

References: the one-liner (as section W), and ps_mem over the whole system,
which is what a user runs today for per-program totals. Every view is read
as section W reads its views, ``cat MOUNT/view | awk`` summing its Pss, from
a mount with the cache off (cold) and one whose answers are all cached (warm).
Run with the whole benchmark, or alone: ``python -m totmapsfs.bench.groups``.
"""

from __future__ import annotations

import argparse
import functools
import importlib.util
import os
import sys
from collections.abc import Callable
from pathlib import Path

from ..harness import PY
from . import _measure as m
from ._env import BenchError, environment
from ._report import fmt, ratios, table
from ._whole import ONE_LINER, view_row

PS_MEM = "ps_mem (whole system)"
VIEWS = {  # view -> (its path from the mount, the awk program summing its Pss)
    "summary": ("summary", "NR > 1 { s += $4 } END { print s }"),
    "programs": ("programs", "NR > 1 { s += $3 } END { print s }"),
    "users": ("users", "NR > 1 { s += $3 } END { print s }"),
    "tree (301 processes)": ("{tree}/tree/totmaps", "/^Pss:/ { s += $2 } END { print s }"),
}
MOUNTS = {  # as section W's rollup mounts
    "rollup-cold": ("--source", "rollup", "--max-age", "0", "--duty", "1", "--walk-budget", "off"),
    "rollup-warm": ("--source", "rollup", "--max-age", "3600"),
}


def _shell(command: str) -> Callable[[], None]:
    return functools.partial(m.run_command, ["/bin/sh", "-c", command])


def measure(cold: Path, warm: Path, reader: m.Reader, rounds: int, tree: int) -> dict[str, float]:
    """Median seconds of each variant in one run, measured round-robin; ``tree``: the pid whose tree is read."""
    variants: dict[str, Callable[[], object]] = {"one-liner": _shell(ONE_LINER)}
    if importlib.util.find_spec("ps_mem") is not None:  # the test extra installs it
        variants[PS_MEM] = functools.partial(m.run_command, [PY, "-m", "ps_mem"])
    for name, (path, awk) in VIEWS.items():
        path = path.format(tree=tree)
        reader.read(warm / path)  # primes the warm mount's cache for every process of the view
        variants[f"{name} cold"] = _shell(f"cat {cold / path} | awk '{awk}'")
        variants[f"{name} warm"] = _shell(f"cat {warm / path} | awk '{awk}'")
    return m.medians(m.interleaved(variants, rounds))


def report(per_run: dict[str, list[float]], processes: int) -> str:
    """The section's table: ms per read, and each against the one-liner and ps_mem, run by run."""
    line = per_run["one-liner"]
    ps_mem = per_run.get(PS_MEM)
    rows = [["one-liner (cat /proc/[0-9]*/smaps_rollup | awk)", fmt(line, 1e3), "", "1.00", ""]]
    if ps_mem:
        rows.append([PS_MEM, fmt(ps_mem, 1e3), "", fmt(ratios(ps_mem, line)), "1.00"])
    for name, (path, _) in VIEWS.items():
        path = f"MOUNT/{path.format(tree='PID')}"
        rows.append(view_row(path, per_run[f"{name} cold"], per_run[f"{name} warm"], line, ps_mem))
    return table(
        f"G. Grouped views over {processes} processes (a tree of 301 idle workloads among them), ms per read, wall",
        ["", "cold", "warm", "/ one-liner: cold / warm", "ps_mem / cold / warm"],
        rows,
    )


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m totmapsfs.bench.groups", description=__doc__)
    p.add_argument("--repeat", type=int, default=5, metavar="N", help="runs (default %(default)s)")
    p.add_argument("--rounds", type=int, default=9, metavar="N", help="reads of each variant per run (default 9)")
    args = p.parse_args(argv)
    if args.repeat < 1 or args.rounds < 1:
        p.error("--repeat and --rounds must be at least 1")
    per_run: dict[str, list[float]] = {}
    try:
        with environment() as env:
            tree = env.workload("--children", "300")
            env.mount(MOUNTS)
            for _ in range(args.repeat):
                cold, warm = env.mounts["rollup-cold"].path, env.mounts["rollup-warm"].path
                for name, med in measure(cold, warm, m.Reader(), args.rounds, tree.pid).items():
                    per_run.setdefault(name, []).append(med)
            processes = sum(1 for n in os.listdir("/proc") if n.isdigit())
    except BenchError as exc:
        print(f"totmapsfs.bench.groups: error: {exc}", file=sys.stderr)
        return 1
    print(report(per_run, processes))
    return 0


if __name__ == "__main__":
    sys.exit(main())
