"""Command line: ``totmapsfs [options] MOUNTPOINT`` mounts and serves in the foreground."""

from __future__ import annotations

import argparse
import logging
import resource
import signal
import sys
import types

# Only what --help and usage errors need (no pyfuse3 import: see _run).
from .. import __version__
from ..engine import DEFAULT_DUTY, DEFAULT_MAX_AGE, DEFAULT_WALK_BUDGET, HEAVY_FACTOR, LIGHT_PAGE_TABLES, Source
from ..views import DEFAULT_GROUPS, DEFAULT_TOP, LAYOUTS, parse_fields
from ._mountpoint import UserError

log = logging.getLogger("totmapsfs")

# Worker threads per pool (fuse.Operations): this many reads stuck in the
# kernel at once before further reads wait.
DEFAULT_THREADS = 16


def _max_age(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a number of seconds: {text!r}") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text!r}")
    return value


def _share(text: str) -> float:
    """A share of the time: a number above 0 and at most 1, or a percentage ("5%")."""
    try:
        value = float(text[:-1]) / 100 if text.endswith("%") else float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share of the time: {text!r}") from None
    if not 0 < value <= 1:
        raise argparse.ArgumentTypeError(f"must be above 0 and at most 1 (or 100%), not {text!r}")
    return value


def _budget(text: str) -> float | None:
    if text == "off":
        return None
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a share of one CPU: {text!r}") from None
    if not 0 < value < float("inf"):
        raise argparse.ArgumentTypeError(f"must be a number above 0, or off; not {text!r}")
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
        choices=[s.value for s in Source],
        default=Source.AUTO.value,
        help="where the numbers come from: rollup reads /proc/<pid>/smaps_rollup (Linux >= 4.14, "
        "the kernel's exact sums, cheapest); smaps sums /proc/<pid>/smaps (every kernel; Pss-family "
        "fields may read up to 1 kB per mapping low); auto (default) uses rollup when the kernel has it",
    )
    p.add_argument(
        "--max-age",
        type=_max_age,
        default=DEFAULT_MAX_AGE,
        metavar="SECONDS",
        help=f"longest time a cached answer for an unchanged process is served (default {DEFAULT_MAX_AGE}; "
        "0 disables the cache). A process whose own memory changed is recomputed, within --duty",
    )
    p.add_argument(
        "--duty",
        type=_share,
        default=DEFAULT_DUTY,
        metavar="SHARE",
        help=f"the largest share of the time any one process is walked (default {DEFAULT_DUTY:g}, i.e. "
        f"{DEFAULT_DUTY * 100:.0f}%%): reading smaps holds the process's mmap lock, so a process whose last walk took "
        "W seconds is walked again no sooner than W/SHARE after it began, and readers get its last answer "
        "meanwhile, whatever --max-age says. Light processes are exempt: page tables (VmPTE) of at most "
        f"{LIGHT_PAGE_TABLES} kB and a walk shorter than {HEAVY_FACTOR} times one of the daemon's own. "
        "1 turns this off",
    )
    p.add_argument(
        "--walk-budget",
        type=_budget,
        default=DEFAULT_WALK_BUDGET,
        metavar="CPUS",
        help=f"share of one CPU the whole-system views (totmaps, summary, metrics, cgroup/) may spend walking "
        f"(default {DEFAULT_WALK_BUDGET:g}); past it, processes that have an answer get that answer, oldest "
        "walked first next time. off: no bound",
    )
    p.add_argument(
        "--per-caller-names",
        action="store_true",
        help="answer every walk through a pid or cgroup name per caller from the start (by default: once a caller "
        "from another pid or cgroup namespace, a container, has been seen). Closes the second in which a "
        "container's first walk may reuse a name the kernel cached for a host caller; costs every cached read "
        "two more requests (about 1.65x its CPU)",
    )
    p.add_argument(
        "--threads",
        type=_threads,
        default=DEFAULT_THREADS,
        metavar="N",
        help=f"worker threads for /proc reads, per pool (default {DEFAULT_THREADS}): this many slow targets can be "
        "read at once before further reads wait; listing has its own pool",
    )
    p.add_argument(
        "--metrics-top",
        type=_count,
        default=DEFAULT_TOP,
        metavar="N",
        help="MOUNTPOINT/metrics has per-process series for the N processes with the largest Pss "
        f"(default {DEFAULT_TOP}; 0: per-cgroup series only)",
    )
    p.add_argument(
        "--metrics-files-top",
        type=_count,
        default=0,
        metavar="N",
        help="MOUNTPOINT/metrics has per-file series (4 families of N series, label path) for the N files "
        "of MOUNTPOINT/files with the largest Pss (default 0: none). Each scrape then walks smaps, the "
        "expensive kind, within --duty and --walk-budget",
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
    p.add_argument(
        "--metrics-groups",
        type=_count,
        default=DEFAULT_GROUPS,
        metavar="N",
        help="MOUNTPOINT/metrics has per-program and per-user series for the N programs and the N users with the "
        f"largest Pss (default {DEFAULT_GROUPS}; 0: none)",
    )
    p.add_argument(
        "--layout",
        choices=list(LAYOUTS),
        default="kernel",
        help="the fields of every totmaps file: kernel (default) every field the kernel reports, in its order; "
        "chromeos the ChromeOS kernel's eleven (Rss, Pss, Shared_Clean, Shared_Dirty, Private_Clean, "
        "Private_Dirty, Referenced, Anonymous, AnonHugePages, Swap, Locked), for readers that read by position",
    )
    p.add_argument("--proc", default="/proc", metavar="DIR", help="procfs root to read (default /proc; for testing)")
    p.add_argument("--debug", action="store_true", help="log every request and libfuse's debug output")
    p.add_argument("--version", action="version", version=f"%(prog)s {__version__}")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    from . import _daemon

    _daemon.setup_logging(args.debug)
    # Until the serving loop takes over the signals, a SIGTERM stops us as
    # cleanly as Ctrl-C does (unmounting if we got that far).
    signal.signal(signal.SIGTERM, signal.default_int_handler)
    try:
        return _run(args, _daemon)
    except UserError as exc:
        print(f"totmapsfs: error: {exc}", file=sys.stderr)
        return 1
    except _daemon.MountFailed as exc:
        print(f"totmapsfs: error: mounting {args.mountpoint} failed: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 0
    finally:
        _daemon.flush_std_streams()


def _raise_fd_limit() -> None:
    """The soft fd limit up to the hard one (capped at 65,536): namespaces are held open (proc._nsfs).

    systemd and most shells start services at a soft 1024; the daemon's
    namespace tables take at most a quarter of whatever it gets.
    """
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    wanted = 65536 if hard == resource.RLIM_INFINITY else min(hard, 65536)
    if soft != resource.RLIM_INFINITY and soft < wanted:
        try:
            resource.setrlimit(resource.RLIMIT_NOFILE, (wanted, hard))
        except (OSError, ValueError) as exc:
            log.warning("could not raise the fd limit from %d (%s)", soft, exc)


def _run(args: argparse.Namespace, daemon: types.ModuleType) -> int:
    # Imported late so that --help and usage errors work without pyfuse3.
    from ..engine import Engine, SourceUnavailable, WalkBudget, choose_source
    from ..fuse import Operations
    from ..parser import IMPLEMENTATION, MISSING_C
    from ..proc import Access, Cgroup2, ProcReader
    from ..tree import Tree
    from ..views import MetricsOptions, Views
    from ._mountpoint import check_host, prepare

    check_host()
    _raise_fd_limit()
    reader = ProcReader(args.proc)
    try:
        source = choose_source(args.source, reader)
    except SourceUnavailable as exc:
        raise UserError(f"--source {args.source}: {exc}; use --source smaps or auto") from None
    access = Access(reader)
    engine = Engine(reader, source, args.max_age, duty=args.duty, access=access)
    mountpoint = prepare(args.mountpoint)
    if MISSING_C is not None:
        log.warning("C parser not built (%s): using the pure-Python parser (slower)", MISSING_C)
    metrics = MetricsOptions(
        args.metrics_top,
        args.metrics_cgroup_depth,
        args.metrics_fields,
        files_top=args.metrics_files_top,
        groups=args.metrics_groups,
    )
    budget = None if args.walk_budget is None else WalkBudget(args.walk_budget)
    views = Views(engine, Cgroup2(reader), metrics, budget, LAYOUTS[args.layout])
    ops = Operations(Tree(engine, views, per_caller_names=args.per_caller_names), threads=args.threads)
    budget_text = "off" if budget is None else f"{budget.rate:g} CPU"
    detail = (
        f" (source {engine.source.value}, max-age {args.max_age:g}s, duty {args.duty:.0%}, "
        f"walk budget {budget_text}, parser {IMPLEMENTATION})"
    )
    daemon.serve(ops, mountpoint, debug=args.debug, detail=detail)
    return 0
