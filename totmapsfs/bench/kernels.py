"""The rows that differ between kernels (old-kernel paths), on their own: ``python -m totmapsfs.bench.kernels``.

    python -m totmapsfs.bench.kernels [--repeat N] [--crowd N] [--mappings N]

K1. One read of a 60,000-mapping process through the smaps source, cold
    (``--source smaps --max-age 0 --duty 1``): ``cat MOUNT/<pid>/totmaps``
    beside ``awk '/^Pss:/...'`` over the same /proc/<pid>/smaps, alternated,
    each run: wall time, and CPU of the reader plus the daemon (schedstat,
    every thread). The smaps source is what kernels before 4.14 have.
K2. The first request of a container: a fresh pid namespace (``unshare
    --pid --fork --mount-proc``) reads MOUNT/self/totmaps (its own pid) and
    MOUNT/1/totmaps from pid 2 (another process of it), timed inside, from a
    mount that uses the nsfs pid ioctls (6.11+) and from one that behaves as
    a kernel without them (proc.FALLBACK_ENV): on 6.1 both are the fallback.
    ``--crowd N`` adds N idle host processes (a fallback scan reads all).

Figures: median [min–max] over runs; ratios per run, then their median.
Meant to be run on each kernel compared (the emulator's absolute times are
not comparable between kernels; the ratios within one run are).
"""

from __future__ import annotations

import argparse
import datetime
import os
import platform
import resource
import shutil
import subprocess
import sys
import time

from ..harness import PY
from ..proc import FALLBACK_ENV
from ._cpu import task_cpu_ns
from ._env import BenchError, Env, environment
from ._measure import run_command, which
from ._report import fmt, table

AWK_PSS = "/^Pss:/{s+=$2} END{print s}"
# Run as ``PY -c INSIDE INSIDE MOUNT MODE`` by a fresh pid namespace's pid 1:
# "own" times its read of MOUNT/self/totmaps; "other" has its child (pid 2)
# time a read of MOUNT/1/totmaps (the child is run with MODE "child").
INSIDE = """
import os, subprocess, sys, time
code, mount, mode = sys.argv[1:4]
def timed(path):
    t = time.perf_counter()
    with open(path, "rb") as f:
        f.read()
    return time.perf_counter() - t
if mode == "own":
    print(timed(os.path.join(mount, "self", "totmaps")))
elif mode == "other":
    child = [sys.executable, "-c", code, code, mount, "child"]
    sys.stdout.write(subprocess.run(child, capture_output=True, text=True, check=True).stdout)
else:
    print(timed(os.path.join(mount, "1", "totmaps")))
"""


def _child_cpu() -> float:
    r = resource.getrusage(resource.RUSAGE_CHILDREN)
    return r.ru_utime + r.ru_stime


def smaps_vs_awk(env: Env, mappings: int, repeat: int) -> list[list[str]]:
    """K1: per run, (wall, CPU) of the mount's cold smaps read and of awk, alternated."""
    w = env.workload("--mappings", str(mappings))
    mount = env.mount({"smaps-cold": ("--source", "smaps", "--max-age", "0", "--duty", "1", "--walk-budget", "off")})
    daemon = mount["smaps-cold"].proc.pid
    argv = {
        "mount, --source smaps, cold": [which("cat"), str(mount["smaps-cold"].file(w.pid))],
        "awk over /proc/<pid>/smaps": [which("awk"), AWK_PSS, f"/proc/{w.pid}/smaps"],
    }
    run_command(next(iter(argv.values())))  # the daemon's first read (its calibration, its buffers)
    wall: dict[str, list[float]] = {k: [] for k in argv}
    cpu: dict[str, list[float]] = {k: [] for k in argv}
    for _ in range(repeat):
        for name, args in argv.items():
            d0, c0, t0 = task_cpu_ns(daemon), _child_cpu(), time.perf_counter()
            run_command(args)
            t1, c1, d1 = time.perf_counter(), _child_cpu(), task_cpu_ns(daemon)
            wall[name].append(t1 - t0)
            cpu[name].append(c1 - c0 + (d1 - d0) / 1e9)
    mine, awk = argv
    rows = [[name, fmt(wall[name], 1e3, 0), fmt(cpu[name], 1e3, 0)] for name in argv]
    ratio_wall = [a / b for a, b in zip(wall[mine], wall[awk], strict=True)]
    ratio_cpu = [a / b for a, b in zip(cpu[mine], cpu[awk], strict=True)]
    rows.append(["mount / awk", fmt(ratio_wall) + "x", fmt(ratio_cpu) + "x"])
    return rows


def _inside(mount: str, mode: str) -> float:
    """Seconds of one read from a fresh pid namespace (see INSIDE for ``mode``)."""
    argv = [which("unshare"), "--pid", "--fork", "--mount-proc", PY, "-c", INSIDE, INSIDE, mount, mode]
    out = subprocess.run(argv, capture_output=True, text=True, timeout=120)
    if out.returncode != 0:
        raise BenchError(f"a read from a new pid namespace failed: {out.stderr.strip()[-300:]}")
    return float(out.stdout.split()[-1])


def first_request(env: Env, repeat: int, crowd: int) -> list[list[str]]:
    """K2: a fresh pid namespace's first reads, through the ioctls and through the fallback."""
    mounts = env.mount({"ioctls": ("--max-age", "3600")})
    mounts.update(env.mount({"fallback": ("--max-age", "3600")}, extra_env={FALLBACK_ENV: "1"}))
    for _ in range(crowd):  # each its own program: Env.close() kills every one
        env.program("sleep", "3600")
    took: dict[str, list[float]] = {}
    for _ in range(repeat):
        for label, m in mounts.items():
            for mode, what in (("own", "its own pid (self)"), ("other", "pid 2 reads pid 1")):
                took.setdefault(f"{what}, {label}", []).append(_inside(str(m.path), mode))
    return [[name, fmt(values, 1e3, 2)] for name, values in took.items()]


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(prog="python -m totmapsfs.bench.kernels", description=__doc__.split("\n")[0])
    p.add_argument("--repeat", type=int, default=7, help="runs of each figure (default %(default)s)")
    p.add_argument("--mappings", type=int, default=60_000, help="K1's process (default %(default)s)")
    p.add_argument("--crowd", type=int, default=0, help="idle host processes added for K2 (default none)")
    args = p.parse_args(argv)
    if shutil.which("unshare") is None or shutil.which("awk") is None:
        print("totmapsfs.bench.kernels: error: unshare and awk are needed", file=sys.stderr)
        return 1
    hosts = sum(name.isdigit() for name in os.listdir("/proc"))
    try:
        with environment() as env:
            k1 = smaps_vs_awk(env, args.mappings, args.repeat)
            k2 = first_request(env, args.repeat, args.crowd)
    except BenchError as exc:
        print(f"totmapsfs.bench.kernels: error: {exc}", file=sys.stderr)
        return 1
    print(
        f"totmapsfs kernel rows, {datetime.date.today()}: {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"{hosts} host processes (+{args.crowd}); {args.repeat} runs. Figures: median [min\u2013max].\n"
    )
    print(table(f"K1. {args.mappings:,} mappings, one cold read", ["", "wall ms", "CPU ms (reader + daemon)"], k1))
    print()
    print(table("K2. First request of a container (a fresh pid namespace), ms", ["", "read"], k2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
