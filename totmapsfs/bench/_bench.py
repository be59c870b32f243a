"""The benchmark run: its workloads and mounts, each section measured per run, the tables and the targets."""

from __future__ import annotations

import functools
import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from ..harness import PY, Workload
from . import _cpu, _groups, _target, _whole
from . import _measure as m
from ._env import BenchError, Env

# (label, mappings, pages per mapping, forked copies). The 2000-mapping process
# has 7 copies: eight pids of the same size for the concurrent readers.
SIZES = [("200", 200, 4, 0), ("2000", 2000, 4, 7), ("8000", 8000, 4, 0), ("2000x64", 2000, 64, 0)]
SCALING = ["200", "2000", "8000"]  # the mapping-count axis (4 pages each)
IDLE = 300  # small idle processes, read in the footprint run
READERS = [1, 2, 4, 8]
# label -> daemon arguments; "warm" holds answers long enough to stay warm, "cold"
# walks on every read: no cache, no walk duty (which would hold the answers of
# the processes that are not light, engine.LIGHT_PAGE_TABLES; section T measures
# it) and no views' walk budget.
MOUNTS = {
    "rollup-cold": ("--source", "rollup", "--max-age", "0", "--duty", "1", "--walk-budget", "off"),
    "rollup-warm": ("--source", "rollup", "--max-age", "3600"),
    "smaps-cold": ("--source", "smaps", "--max-age", "0", "--duty", "1", "--walk-budget", "off"),
    "smaps-warm": ("--source", "smaps", "--max-age", "3600"),
    "default": (),  # the footprint run, and the target section's default duty: as users run it
    **_target.MOUNTS,
}
# and "floor-reads" and "floor-hop-read", which name their targets
FLOORS = {"floor": (), "floor-hop": ("--hop",)}
FLOOR = (PY, "-m", "totmapsfs.bench.floor")
# The CPU section's variants: (name, mount or None for the kernel's own file, target).
CPU_SMALL: list[tuple[str, str | None, str | None]] = [
    ("floor", "floor", None),
    ("floor + hop", "floor-hop", None),
    ("floor + reads", "floor-reads", None),
    ("small warm", "rollup-warm", "small"),
    ("small cold", "rollup-cold", "small"),
    ("small direct smaps_rollup", None, "small"),
]
CPU_BIG: list[tuple[str, str | None, str | None]] = [
    ("2000 warm", "rollup-warm", "2000"),
    ("2000 cold", "rollup-cold", "2000"),
    ("2000 direct smaps_rollup", None, "2000"),
]
CAT = [
    "mount rollup cold",
    "mount rollup warm",
    "mount smaps cold",
    "mount smaps warm",
    "cat smaps_rollup",
    "cat smaps",
    "awk over smaps",
]
INPROC = [
    "mount rollup cold",
    "mount rollup warm",
    "mount smaps cold",
    "mount smaps warm",
    "direct smaps_rollup",
    "direct smaps",
    "psutil memory_full_info",
]
# "floor + hop + rollup": the least a cold read does (see floor.py), the bound of "mount rollup cold"
CONC = ["mount rollup cold", "floor + hop + rollup", "mount rollup warm", "mount smaps cold", "direct smaps_rollup"]


@dataclass(frozen=True)
class Config:
    repeat: int
    cpu_reads: int  # reads per CPU variant per run, small targets (a tenth for the 2000-mapping one)
    cat_rounds: dict[str, int]
    inproc_rounds: dict[str, int]
    parse_time: float  # seconds per parser per process per run
    conc_time: float  # seconds per (mode, readers) per run
    warmup_reads: int
    footprint_reads: int
    view_rounds: int
    target_seconds: float  # per variant per run (section T)


def _rounds(small: int, medium: int, big: int, wide: int) -> dict[str, int]:
    """Rounds per target: the 200-, 2000- and 8000-mapping processes, and the 2000-mapping one of 64 threads."""
    return {"200": small, "2000": medium, "8000": big, "2000x64": wide}


FULL = Config(5, 3000, _rounds(60, 40, 12, 20), _rounds(300, 150, 40, 60), 0.25, 0.5, 5_000, 100_000, 9, 4.0)
QUICK = Config(3, 600, _rounds(12, 10, 3, 5), _rounds(60, 40, 10, 15), 0.05, 0.15, 1_000, 10_000, 5, 2.0)


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", file=sys.stderr, flush=True)


class Bench:
    """One benchmark run over an Env: per-run figures collected, then reported."""

    def __init__(self, env: Env, cfg: Config) -> None:
        self.env, self.cfg = env, cfg
        self.w: dict[str, Workload] = {}
        self.cat: dict[str, dict[str, list[float]]] = {}  # size -> variant -> per-run medians (s)
        self.inproc: dict[str, dict[str, list[float]]] = {}
        self.parse: dict[str, dict[str, list[float]]] = {}  # size -> figure -> per run
        self.tput: dict[str, dict[int, list[float]]] = {}  # mode -> readers -> reads/s per run
        self.busy: dict[str, dict[int, list[float]]] = {}  # mode -> readers -> CPUs busy per run
        self.fp: list[tuple[str, int, int]] = []
        self.fp_failures = 0
        self.fp_pids = 0
        self.cpu: dict[str, list[_cpu.Figures]] = {}  # variant -> per run
        self.views: dict[str, list[float]] = {}  # view variant -> per-run medians (s)
        self.groups: dict[str, list[float]] = {}  # section G's variant -> per-run medians (s)
        self.target: dict[str, list[_target.Figures]] = {}  # variant -> per run
        self.view_processes = 0
        self.reader = m.Reader()
        self.cat_bin, self.awk_bin = m.which("cat"), m.which("awk")

    # -- setup ------------------------------------------------------------------

    def setup(self) -> None:
        for label, maps, pages, copies in SIZES:
            log(f"workload: {maps} mappings of {pages} pages" + (f", with {copies} forked copies" if copies else ""))
            self.w[label] = self.env.workload("--mappings", str(maps), "--pages", str(pages), "--children", str(copies))
        log(f"workload: {IDLE} small idle processes")
        self.w["idle"] = self.env.workload("--children", str(IDLE))
        self.small = self.env.program("sleep", "infinity")  # ~37 mappings, the small process
        log(f"mounting {len(MOUNTS)} daemons and {len(FLOORS) + 2} pyfuse3 floors in {self.env.workdir}")
        self.env.mount(MOUNTS)
        big = ",".join(map(str, self.w["2000"].pids))
        floors = {**FLOORS, "floor-reads": ("--reads", str(self.small.pid)), "floor-hop-read": ("--hop-read", big)}
        self.env.mount(floors, command=FLOOR)
        for size, *_ in SIZES:  # every mount answers, with the kernel's Rss (these workloads are idle)
            pid = self.w[size].pid
            rss = _rss(self.reader.read_bytes(f"/proc/{pid}/smaps_rollup"))
            for label in MOUNTS:
                mnt = self.env.mounts[label]
                text = self.reader.read_bytes(mnt.file(pid))
                if not text.startswith(b"Rss:") or _rss(text) != rss:
                    raise BenchError(f"{mnt.file(pid)} does not match smaps_rollup (Rss {rss} kB): {text[:80]!r}")

    def path(self, mount: str, pid: int) -> str:
        return str(self.env.mounts[mount].file(pid))

    # -- a. whole process ----------------------------------------------------------

    def run_cat(self, size: str) -> None:
        pid, cat, awk = self.w[size].pid, self.cat_bin, self.awk_bin
        argv = {
            "mount rollup cold": [cat, self.path("rollup-cold", pid)],
            "mount rollup warm": [cat, self.path("rollup-warm", pid)],
            "mount smaps cold": [cat, self.path("smaps-cold", pid)],
            "mount smaps warm": [cat, self.path("smaps-warm", pid)],
            "cat smaps_rollup": [cat, f"/proc/{pid}/smaps_rollup"],
            "cat smaps": [cat, f"/proc/{pid}/smaps"],
            "awk over smaps": [awk, m.AWK_SUM, f"/proc/{pid}/smaps"],
        }
        variants: dict[str, Callable[[], object]] = {k: functools.partial(m.run_command, a) for k, a in argv.items()}
        self._record(self.cat, size, m.interleaved(variants, self.cfg.cat_rounds[size]))

    # -- b. in process ------------------------------------------------------------

    def run_inproc(self, size: str) -> None:
        import psutil

        pid, read = self.w[size].pid, self.reader.read
        ps = psutil.Process(pid)
        files = {
            "mount rollup cold": self.path("rollup-cold", pid),
            "mount rollup warm": self.path("rollup-warm", pid),
            "mount smaps cold": self.path("smaps-cold", pid),
            "mount smaps warm": self.path("smaps-warm", pid),
            "direct smaps_rollup": f"/proc/{pid}/smaps_rollup",
            "direct smaps": f"/proc/{pid}/smaps",
        }
        variants: dict[str, Callable[[], object]] = {k: functools.partial(read, p) for k, p in files.items()}
        variants["psutil memory_full_info"] = ps.memory_full_info
        self._record(self.inproc, size, m.interleaved(variants, self.cfg.inproc_rounds[size]))

    def _record(self, into: dict[str, dict[str, list[float]]], size: str, samples: m.Samples) -> None:
        for name, med in m.medians(samples).items():
            into.setdefault(size, {}).setdefault(name, []).append(med)

    # -- c. parsers ------------------------------------------------------------------

    def run_parse(self, size: str) -> None:
        from ..parser import _reference

        try:
            from ..parser._speedups import parse_smaps as c_parse
        except ImportError:
            raise BenchError("the C parser (totmapsfs.parser._speedups) is not built: run `make venv`") from None
        smaps = f"/proc/{self.w[size].pid}/smaps"
        data = self.reader.read_bytes(smaps)
        if c_parse(data) != _reference.parse_smaps(data):
            raise BenchError("the C parser and the Python reference disagree")
        t = self.cfg.parse_time
        fig = {
            "kernel": m.time_per_call(lambda: self.reader.read(smaps), t),
            "c": m.time_per_call(lambda: c_parse(data), t),
            "python": m.time_per_call(lambda: _reference.parse_smaps(data), t),
            "regex": m.time_per_call(lambda: m.regex_parse(data), t),
        }
        fig["bytes"] = float(len(data))
        for name, value in fig.items():
            self.parse.setdefault(size, {}).setdefault(name, []).append(value)

    # -- d. concurrent readers ----------------------------------------------------

    def run_conc(self) -> None:
        pids = self.w["2000"].pids
        paths: dict[str, Callable[[int], str]] = {
            "mount rollup cold": functools.partial(self.path, "rollup-cold"),
            "floor + hop + rollup": lambda pid: str(self.env.mounts["floor-hop-read"].path / str(pid)),
            "mount rollup warm": functools.partial(self.path, "rollup-warm"),
            "mount smaps cold": functools.partial(self.path, "smaps-cold"),
            "direct smaps_rollup": "/proc/{}/smaps_rollup".format,
        }
        # A mode's reader counts back to back: the speedups are ratios of
        # neighbours, less exposed to a noisy machine's drift.
        for mode, path in paths.items():
            for n in READERS:
                rate, busy = m.throughput([path(p) for p in pids[:n]], self.cfg.conc_time)
                self.tput.setdefault(mode, {}).setdefault(n, []).append(rate)
                self.busy.setdefault(mode, {}).setdefault(n, []).append(busy)

    # -- C. CPU per read --------------------------------------------------------------

    def run_cpu(self) -> None:
        targets = {"small": self.small.pid, "2000": self.w["2000"].pid}

        def variants(spec: list[tuple[str, str | None, str | None]]) -> list[_cpu.Variant]:
            out = []
            for name, mount, target in spec:
                if mount is None:
                    out.append(_cpu.Variant(name, f"/proc/{targets[target or 'small']}/smaps_rollup", None))
                else:
                    mnt = self.env.mounts[mount]
                    path = str(mnt.path / "f") if target is None else str(mnt.file(targets[target]))
                    out.append(_cpu.Variant(name, path, mnt.proc.pid))
            return out

        for spec, reads in ((CPU_SMALL, self.cfg.cpu_reads), (CPU_BIG, max(20, self.cfg.cpu_reads // 10))):
            for name, fig in _cpu.measure(variants(spec), reads).items():
                self.cpu.setdefault(name, []).append(fig)

    # -- W. whole-system views ------------------------------------------------------

    def run_views(self) -> None:
        mounts = self.env.mounts
        per_run = _whole.measure(
            mounts["rollup-cold"].path, mounts["rollup-warm"].path, self.reader, self.cfg.view_rounds
        )
        for name, med in per_run.items():
            self.views.setdefault(name, []).append(med)
        cold, warm = mounts["rollup-cold"].path, mounts["rollup-warm"].path
        tree = self.w["idle"].pid  # and its 300 children
        for name, med in _groups.measure(cold, warm, self.reader, self.cfg.view_rounds, tree).items():
            self.groups.setdefault(name, []).append(med)
        self.view_processes = sum(1 for n in os.listdir("/proc") if n.isdigit())

    # -- T. the target's own latency ---------------------------------------------------

    def run_target(self) -> None:
        # Started for this section only: a busy 1.5 GiB process would weigh on
        # every other (the whole-system views walk it).
        target = Workload(*_target.TARGET)
        try:
            mounts = self.env.mounts
            files = (None, mounts["duty-1"].file(target.pid), mounts["default"].file(target.pid))
            paths = dict(zip(_target.VARIANTS, files, strict=True))
            for name, fig in _target.measure(target, paths, self.cfg.target_seconds).items():
                self.target.setdefault(name, []).append(fig)
        finally:
            target.close()

    # -- e. footprint ------------------------------------------------------------------

    def run_footprint(self) -> None:
        mnt = self.env.mounts["default"]
        pids = [p for w in self.w.values() for p in w.pids]
        daemon = mnt.proc.pid
        self.fp_pids = len(pids)
        self.fp.append(("mounted", *m.footprint(daemon)))
        log(f"e. footprint: {self.cfg.warmup_reads:,} warm-up reads over {len(pids)} pids")
        self.fp_failures += m.hammer(str(mnt.path), pids, self.cfg.warmup_reads)
        self.fp.append((f"after {self.cfg.warmup_reads:,} warm-up reads", *m.footprint(daemon)))
        log(f"e. footprint: {self.cfg.footprint_reads:,} reads")
        self.fp_failures += m.hammer(str(mnt.path), pids, self.cfg.footprint_reads)
        self.fp.append((f"after {self.cfg.footprint_reads:,} more reads", *m.footprint(daemon)))

    def run(self) -> None:
        self.setup()
        for r in range(self.cfg.repeat):
            log(
                f"run {r + 1}/{self.cfg.repeat}: C. CPU per read, a. cat, b. in-process, c. parsers, "
                "d. concurrent readers, W. views, T. the target's latency"
            )
            self.run_cpu()
            for size, *_ in SIZES:
                self.run_cat(size)
                self.run_inproc(size)
                self.run_parse(size)
            self.run_conc()
            self.run_views()
            self.run_target()
        self.run_footprint()

    # -- report ----------------------------------------------------------------------


def _rss(text: bytes) -> int:
    return int(text.split(b"Rss:", 1)[1].split()[0])
