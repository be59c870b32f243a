"""Command line: ``totmapsfs [options] MOUNTPOINT`` mounts and serves in the foreground."""

from __future__ import annotations

import argparse
import logging
import signal
import sys

from ._errors import UserError

log = logging.getLogger("totmapsfs")


def _max_age(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _whole(text: str) -> int:
    try:
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a whole number: {text!r}") from None


def _threads(text: str) -> int:
    value = _whole(text)
    if not 1 <= value <= 1024:
        raise argparse.ArgumentTypeError(f"must be between 1 and 1024, not {value}")
    return value


def _count(text: str) -> int:
    value = _whole(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"must be >= 0, not {value}")
    return value


def _depth(text: str) -> int | None:
    return None if text == "all" else _count(text)


def _fields(text: str) -> tuple[str, ...] | None:
    from ._metrics import parse_fields

    try:
        return parse_fields(text)
    except ValueError as exc:
        raise argparse.ArgumentTypeError(str(exc)) from None


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="totmapsfs",
        description="Mount a tree mirroring /proc where MOUNTPOINT/<pid>/totmaps is the process's "
        "smaps summed over all its mappings (Rss, Pss, Swap, SwapPss, ...), in the kernel's "
        "smaps line format. Runs in the foreground until SIGINT or SIGTERM, then unmounts.",
        epilog="Example: totmapsfs /run/totmaps && cat /run/totmaps/self/totmaps",
    )
    p.add_argument("mountpoint", metavar="MOUNTPOINT", help="directory to mount on (created if missing)")
    p.add_argument(
        "--source",
        choices=["auto", "rollup", "smaps"],
        default="auto",
        help="where the numbers come from: rollup reads /proc/<pid>/smaps_rollup (Linux >= 4.14, "
        "the kernel's exact sums, cheapest); smaps sums /proc/<pid>/smaps (every kernel; Pss-family "
        "fields may read up to 1 kB per mapping low); auto (default) uses rollup when the kernel has it",
    )
    p.add_argument(
        "--max-age",
        type=_max_age,
        default=1.0,
        metavar="SECONDS",
        help="longest time a cached answer for an unchanged process is served (default 1.0; "
        "0 disables the cache). A process whose own memory changed is always recomputed",
    )
    p.add_argument(
        "--threads",
        type=_threads,
        default=16,
        metavar="N",
        help="worker threads for /proc reads, per pool (default 16): this many slow targets can be "
        "read at once before further reads wait; listing has its own pool",
    )
    p.add_argument(
        "--metrics-top",
        type=_count,
        default=50,
        metavar="N",
        help="MOUNTPOINT/metrics has per-process series for the N processes with the largest Pss "
        "(default 50; 0: per-cgroup series only)",
    )
    p.add_argument(
        "--metrics-cgroup-depth",
        type=_depth,
        default=None,
        metavar="D",
        help="per-cgroup series in MOUNTPOINT/metrics down to depth D: 0 is the root cgroup only, "
        "1 adds system.slice and its siblings, ... (default: all)",
    )
    p.add_argument(
        "--metrics-fields",
        type=_fields,
        default=None,
        metavar="LIST",
        help="comma-separated fields exported in MOUNTPOINT/metrics, e.g. Rss,Pss,USS,Swap,SwapPss "
        "(default: all that the kernel reports, and USS)",
    )
    p.add_argument("--proc", default="/proc", metavar="DIR", help="procfs root to read (default /proc; for testing)")
    p.add_argument("--debug", action="store_true", help="log every request and libfuse's debug output")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from . import _daemon

    _daemon.setup_logging(args.debug)
    # Until the serving loop takes over the signals, a SIGTERM stops us as
    # cleanly as Ctrl-C does (unmounting if we got that far).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        # Imported late so that --help and usage errors work without pyfuse3.
        from ._engine import Engine
        from ._metrics import MetricsOptions
        from ._mountpoint import check_host, prepare
        from ._ops import Operations
        from ._parser import IMPLEMENTATION
        from ._procfs import ProcReader
        from ._tree import Tree

        check_host()
        engine = Engine(ProcReader(args.proc), args.source, args.max_age)
        mountpoint = prepare(args.mountpoint)
        if IMPLEMENTATION != "c":
            log.warning("C parser not built: using the pure-Python parser (slower)")
        metrics = MetricsOptions(args.metrics_top, args.metrics_cgroup_depth, args.metrics_fields)
        ops = Operations(Tree(engine, metrics), threads=args.threads)
        detail = f" (source {engine.source.value}, max-age {args.max_age:g}s, parser {IMPLEMENTATION})"
        _daemon.serve(ops, mountpoint, debug=args.debug, detail=detail)
    except UserError as exc:
        print(f"totmapsfs: error: {exc}", file=sys.stderr)
        return 1
    except RuntimeError as exc:
        # pyfuse3.init raises RuntimeError when the kernel refuses the mount.
        print(f"totmapsfs: error: mounting {args.mountpoint} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    return 0
