"""``python -m totmapsfs.bench``: the command line, the checks before a run, and the run itself."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import os
import platform
import shutil
import sys
import time

from ..service import UserError, check_host
from ._bench import FULL, QUICK, Bench
from ._env import BenchError, environment
from ._tables import plot_curves, report


def preflight() -> None:
    try:
        check_host()  # root, /dev/fuse, fusermount3: what the daemon itself needs
    except UserError as exc:
        raise BenchError(str(exc)) from None
    for tool in ("cat", "awk"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found in PATH")
    if not os.path.exists("/proc/self/smaps_rollup"):
        raise BenchError("this kernel has no smaps_rollup (Linux < 4.14): nothing to compare the mount with")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m totmapsfs.bench",
        description="totmaps through a real mount, measured side by side with the kernel's own files",
    )
    p.add_argument("--quick", action="store_true", help="fewer samples and 10,000 footprint reads: about 30 s")
    p.add_argument("--repeat", type=int, metavar="N", help="runs of each measurement (default 5, or 3 with --quick)")
    p.add_argument(
        "--plot",
        default="build/bench-scaling.png",
        metavar="PNG",
        help="where to write the scaling curves if matplotlib is installed (default %(default)s; '' for none)",
    )
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.repeat is not None:
        if args.repeat < 1:
            parser().error("--repeat must be at least 1")
        cfg = dataclasses.replace(cfg, repeat=args.repeat)
    from ..parser import IMPLEMENTATION

    started = time.monotonic()
    try:
        preflight()
        with environment() as env:
            bench = Bench(env, cfg)
            bench.run()
    except BenchError as exc:
        print(f"totmapsfs.bench: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        print("totmapsfs.bench: interrupted; workloads stopped and mounts unmounted", file=sys.stderr)
        return 130
    elapsed = time.monotonic() - started
    print(
        f"totmapsfs benchmark, {datetime.date.today()}: {os.cpu_count()} CPUs, Linux {platform.release()}, "
        f"Python {platform.python_version()}, parser {IMPLEMENTATION}; {cfg.repeat} runs"
        f"{' (--quick)' if args.quick else ''}, {elapsed:.0f} s. Figures: median [min{chr(0x2013)}max] over runs.\n"
    )
    print(report(bench))
    if args.plot:
        plot_curves(bench, args.plot)
    return 0
