"""Times the whole-system views against a psutil loop: a standalone script, not a test (pytest does not collect it).

    .venv/bin/python tests/bench_views.py [--processes 300] [--rounds 5]

Starts N idle workload processes (tests/workload.py, two of them with forked
children in a cgroup of their own when cgroup2 is mounted), mounts the daemon
twice (--max-age 0: every read recomputes, "cold"; --max-age 3600: "warm",
read after one priming read), and prints the median time of each read next to
a psutil memory_full_info() loop over the same processes.
"""

from __future__ import annotations

import argparse
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path

import psutil

sys.path.insert(0, str(Path(__file__).resolve().parent))
from conftest import Mount, Workload


def median_time(fn, rounds: int) -> float:
    times = []
    for _ in range(rounds):
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def psutil_loop(pids: list[int]) -> None:
    for pid in pids:
        try:
            psutil.Process(pid).memory_full_info()
        except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
            pass


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--processes", type=int, default=300)
    p.add_argument("--rounds", type=int, default=5)
    args = p.parse_args()

    workloads = []
    root = Path(tempfile.mkdtemp(prefix="totmapsfs-bench-"))
    root.chmod(0o755)
    mounts: list[Mount] = []
    try:
        for _ in range(args.processes):
            workloads.append(Workload())
        pids = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
        print(f"{args.processes} idle workload processes; {len(pids)} processes in /proc in all")
        cold = Mount(root / "cold", "--max-age", "0")
        warm = Mount(root / "warm", "--max-age", "3600")
        mounts += [cold, warm]
        cgroup = next(iter(sorted((warm.path / "cgroup").iterdir())), None)
        files = ["summary", "totmaps", "metrics", "cgroup/totmaps"]
        if cgroup is not None and cgroup.is_dir():
            files.append(str(cgroup.relative_to(warm.path) / "totmaps"))

        ps = median_time(lambda: psutil_loop(pids), args.rounds)
        objects = [psutil.Process(pid) for pid in pids if psutil.pid_exists(pid)]

        def reuse() -> None:
            for proc in objects:
                try:
                    proc.memory_full_info()
                except (psutil.NoSuchProcess, psutil.AccessDenied, psutil.ZombieProcess):
                    pass

        ps_reuse = median_time(reuse, args.rounds)
        print(f"psutil memory_full_info() loop, new Process per pid: {ps * 1000:8.1f} ms")
        print(f"psutil memory_full_info() loop, Process objects kept: {ps_reuse * 1000:8.1f} ms")
        print(f"{'file':40} {'cold ms':>9} {'warm ms':>9} {'psutil/cold':>12} {'psutil/warm':>12} {'bytes':>8}")
        for name in files:
            first = time.perf_counter()
            data = (warm.path / name).read_bytes()  # primes the warm mount's cache
            first = time.perf_counter() - first
            c = median_time((cold.path / name).read_bytes, args.rounds)
            w = median_time((warm.path / name).read_bytes, args.rounds)
            print(f"{name:40} {c * 1000:9.1f} {w * 1000:9.1f} {ps / c:11.1f}x {ps / w:11.1f}x {len(data):8}"
                  f"   (first read on the warm mount {first * 1000:.1f} ms)")
    finally:
        for m in mounts:
            m.stop()
        for w in workloads:
            w.close()


if __name__ == "__main__":
    main()
