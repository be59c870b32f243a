"""``python -m totmapsfs.bench``: totmaps through a real mount, measured side by side with the kernel's own files."""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import functools
import os
import platform
import shutil
import statistics
import sys
import time
from dataclasses import dataclass
from typing import Callable

from . import _bench_measure as m
from . import _bench_views
from ._bench_env import BenchError, Env, Workload, environment
from ._bench_report import Target, fmt, plot, ratios, table, targets_table

# (label, mappings, pages per mapping, forked copies). The 2000-mapping process
# has 7 copies: eight pids of the same size for the concurrent readers.
SIZES = [("200", 200, 4, 0), ("2000", 2000, 4, 7), ("8000", 8000, 4, 0), ("2000x64", 2000, 64, 0)]
SCALING = ["200", "2000", "8000"]  # the mapping-count axis (4 pages each)
IDLE = 300  # small idle processes, read in the footprint run
READERS = [1, 2, 4, 8]
MOUNTS = {  # label -> daemon arguments; "warm" holds answers long enough to stay warm
    "rollup-cold": ("--source", "rollup", "--max-age", "0"),
    "rollup-warm": ("--source", "rollup", "--max-age", "3600"),
    "smaps-cold": ("--source", "smaps", "--max-age", "0"),
    "smaps-warm": ("--source", "smaps", "--max-age", "3600"),
    "default": (),  # the footprint run: as users run it
}
CAT = ["mount rollup cold", "mount rollup warm", "mount smaps cold", "mount smaps warm",
       "cat smaps_rollup", "cat smaps", "awk over smaps"]
INPROC = ["mount rollup cold", "mount rollup warm", "mount smaps cold", "mount smaps warm",
          "direct smaps_rollup", "direct smaps", "psutil memory_full_info"]
CONC = ["mount rollup cold", "mount rollup warm", "mount smaps cold", "direct smaps_rollup"]


@dataclass(frozen=True)
class Config:
    repeat: int
    cat_rounds: dict[str, int]
    inproc_rounds: dict[str, int]
    parse_time: float  # seconds per parser per process per run
    conc_time: float  # seconds per (mode, readers) per run
    warmup_reads: int
    footprint_reads: int
    view_rounds: int


FULL = Config(5, {"200": 60, "2000": 40, "8000": 12, "2000x64": 20}, {"200": 300, "2000": 150, "8000": 40, "2000x64": 60},
              0.25, 0.5, 5_000, 100_000, 9)
QUICK = Config(3, {"200": 12, "2000": 10, "8000": 3, "2000x64": 5}, {"200": 60, "2000": 40, "8000": 10, "2000x64": 15},
               0.05, 0.15, 1_000, 10_000, 5)


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
        self.views: dict[str, list[float]] = {}  # view variant -> per-run medians (s)
        self.view_processes = 0
        self.reader = m.Reader()
        self.cat_bin, self.awk_bin = m.which("cat"), m.which("awk")

    # -- setup ------------------------------------------------------------------

    def setup(self) -> None:
        for label, maps, pages, copies in SIZES:
            log(f"workload: {maps} mappings of {pages} pages" + (f", with {copies} forked copies" if copies else ""))
            self.w[label] = self.env.workload(label, maps, pages, copies)
        log(f"workload: {IDLE} small idle processes")
        self.w["idle"] = self.env.workload("idle", 0, 1, IDLE)
        log(f"mounting {len(MOUNTS)} daemons in {self.env.workdir}")
        self.env.mount(MOUNTS)
        for size, *_ in SIZES:  # every mount answers, with the kernel's Rss (the workloads are idle)
            pid = self.w[size].pid
            rss = _rss(self.reader.read_bytes(f"/proc/{pid}/smaps_rollup"))
            for mnt in self.env.mounts.values():
                text = self.reader.read_bytes(mnt.file(pid))
                if not text.startswith(b"Rss:") or _rss(text) != rss:
                    raise BenchError(f"{mnt.file(pid)} does not match smaps_rollup (Rss {rss} kB): {text[:80]!r}")

    def path(self, mount: str, pid: int) -> str:
        return self.env.mounts[mount].file(pid)

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
            "mount rollup cold": self.path("rollup-cold", pid), "mount rollup warm": self.path("rollup-warm", pid),
            "mount smaps cold": self.path("smaps-cold", pid), "mount smaps warm": self.path("smaps-warm", pid),
            "direct smaps_rollup": f"/proc/{pid}/smaps_rollup", "direct smaps": f"/proc/{pid}/smaps",
        }
        variants: dict[str, Callable[[], object]] = {k: functools.partial(read, p) for k, p in files.items()}
        variants["psutil memory_full_info"] = ps.memory_full_info
        self._record(self.inproc, size, m.interleaved(variants, self.cfg.inproc_rounds[size]))

    def _record(self, into: dict[str, dict[str, list[float]]], size: str, samples: m.Samples) -> None:
        for name, med in m.medians(samples).items():
            into.setdefault(size, {}).setdefault(name, []).append(med)

    # -- c. parsers ------------------------------------------------------------------

    def run_parse(self, size: str) -> None:
        from . import _native

        try:
            from ._speedups import parse_smaps as c_parse
        except ImportError:
            raise BenchError("the C parser (totmapsfs._speedups) is not built: run `make venv`") from None
        smaps = f"/proc/{self.w[size].pid}/smaps"
        data = self.reader.read_bytes(smaps)
        if c_parse(data) != _native.parse_smaps(data):
            raise BenchError("the C parser and the Python reference disagree")
        t = self.cfg.parse_time
        fig = {
            "kernel": m.time_per_call(lambda: self.reader.read(smaps), t),
            "c": m.time_per_call(lambda: c_parse(data), t),
            "python": m.time_per_call(lambda: _native.parse_smaps(data), t),
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
            "mount rollup warm": functools.partial(self.path, "rollup-warm"),
            "mount smaps cold": functools.partial(self.path, "smaps-cold"),
            "direct smaps_rollup": "/proc/{}/smaps_rollup".format,
        }
        for n in READERS:
            for mode, path in paths.items():
                rate, busy = m.throughput([path(p) for p in pids[:n]], self.cfg.conc_time)
                self.tput.setdefault(mode, {}).setdefault(n, []).append(rate)
                self.busy.setdefault(mode, {}).setdefault(n, []).append(busy)

    # -- f. whole-system views ------------------------------------------------------

    def run_views(self) -> None:
        mounts = self.env.mounts
        per_run = _bench_views.measure(mounts["rollup-cold"].path, mounts["rollup-warm"].path, self.reader,
                                       self.cfg.view_rounds)
        for name, med in per_run.items():
            self.views.setdefault(name, []).append(med)
        self.view_processes = sum(1 for n in os.listdir("/proc") if n.isdigit())

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
            log(f"run {r + 1}/{self.cfg.repeat}: a. cat, b. in-process, c. parsers, d. concurrent readers, f. views")
            for size, *_ in SIZES:
                self.run_cat(size)
                self.run_inproc(size)
                self.run_parse(size)
            self.run_conc()
            self.run_views()
        self.run_footprint()

    # -- report ----------------------------------------------------------------------

    def report(self) -> str:
        sizes = [s for s, *_ in SIZES]
        head = ["", *[f"{s} maps" if "x" not in s else "2000 maps x64 pages" for s in sizes]]
        out = []
        base = self.cat["2000"]["cat smaps_rollup"]
        rows = [[v, *[fmt(self.cat[s][v], 1e3) for s in sizes], fmt(ratios(self.cat["2000"][v], base))] for v in CAT]
        out.append(table("a. Whole process, ms (cat MOUNT/<pid>/totmaps, cat /proc/<pid>/..., awk summing Rss and Pss)",
                         [*head, "/ cat smaps_rollup @2000"], rows))
        base = self.inproc["2000"]["direct smaps_rollup"]
        rows = [[v, *[fmt(self.inproc[s][v], 1e6, 0) for s in sizes], fmt(ratios(self.inproc["2000"][v], base))]
                for v in INPROC]
        out.append(table("b. In-process open/read/close, µs (cold: --max-age 0; warm: a cached answer)",
                         [*head, "/ direct rollup @2000"], rows))
        rows = []
        for s in sizes:
            p = self.parse[s]
            mb = {k: [b / t / 1e6 for b, t in zip(p["bytes"], p[k])] for k in ("c", "python", "regex")}
            rows.append([head[1 + sizes.index(s)], f"{p['bytes'][0] / 1024:.0f}", fmt(p["kernel"], 1e3),
                         fmt(mb["c"], 1, 0), fmt(mb["python"], 1, 0), fmt(mb["regex"], 1, 0),
                         fmt(ratios(p["python"], p["c"]), 1, 1), fmt(ratios(p["c"], p["kernel"]), 100, 1)])
        out.append(table("c. Parsers on real smaps bytes (MB/s), and C parse time as % of the kernel generating them",
                         ["process", "smaps KiB", "kernel ms", "C MB/s", "Python ref MB/s", "regex MB/s",
                          "C / Python", "C % of kernel"], rows))
        rows = [[mode, *[fmt(self.tput[mode][n], 1, 0) for n in READERS]] for mode in CONC]
        readers = [f"{n} reader{'s' if n > 1 else ''}" for n in READERS]
        out.append(table(f"d. Concurrent readers, reads/s: thread i reads pid i of 8 2000-mapping processes; "
                         f"{os.cpu_count()} CPUs", ["", *readers], rows))
        rows = [[mode, *[fmt(ratios(self.tput[mode][n], self.tput[mode][1])) for n in READERS[1:]]] for mode in CONC]
        out.append(table("d. Concurrent readers, speedup over 1 reader (per run)", ["", *readers[1:]], rows))
        rows = [[mode, *[fmt(self.busy[mode][n], 1, 2) for n in READERS],
                 *[fmt([b / r * 1e3 for b, r in zip(self.busy[mode][n], self.tput[mode][n])]) for n in READERS[:2]]]
                for mode in CONC]
        out.append(table("d. Concurrent readers: CPUs busy (machine-wide, all processes) and CPU ms per read",
                         ["", *readers, "CPU ms/read @1", "@2"], rows))
        out.append("d. Scaling with mappings: the 200 / 2000 / 8000 columns of a, b and c (4 pages each);"
                   " 2000x64 shows the page walk.")
        rows = [[what, f"{rss:,}", str(fds)] for what, rss, fds in self.fp]
        out.append(table(f"e. Daemon footprint (default options), reads over {self.fp_pids} pids;"
                         f" {self.fp_failures} failed reads", ["", "RSS kB", "open fds"], rows))
        views_table, view_targets = _bench_views.report(self.views, self.view_processes)
        out.append(views_table)
        out.append(targets_table(self.targets() + view_targets))
        return "\n\n".join(out)

    def targets(self) -> list[Target]:
        cat, inp, p = self.cat["2000"], self.inproc["2000"], self.parse["2000"]
        t, ts = self.tput["mount rollup cold"], self.tput["mount smaps cold"]
        (_, rss0, fd0), (_, rss1, fd1) = self.fp[-2], self.fp[-1]
        # No cold smaps-source read can beat the kernel generating smaps once.
        bound = ratios(cat["awk over smaps"], inp["direct smaps"])
        # A cold read costs at least a warm one (the FUSE round trips, the
        # signature and the access check) plus the kernel generating smaps_rollup.
        floor = [(w + r) / c for w, r, c in zip(cat["mount rollup warm"], inp["direct smaps_rollup"], cat["cat smaps_rollup"])]
        return [
            Target("cat mount rollup cold / cat smaps_rollup", ratios(cat["mount rollup cold"], cat["cat smaps_rollup"]),
                   1.3, True, note=f"floor: (cat warm + direct rollup read) / cat smaps_rollup = {fmt(floor)}x"),
            Target("cat mount rollup warm / cat smaps_rollup", ratios(cat["mount rollup warm"], cat["cat smaps_rollup"]), 1.1, True),
            Target("in-process mount cold / direct smaps_rollup", ratios(inp["mount rollup cold"], inp["direct smaps_rollup"]), 2.0, True),
            Target("in-process mount warm / direct smaps_rollup", ratios(inp["mount rollup warm"], inp["direct smaps_rollup"]), 1.0, True),
            Target("awk over smaps / cat mount smaps source, cold", ratios(cat["awk over smaps"], cat["mount smaps cold"]),
                   3.0, False, note=f"bound: awk / kernel smaps generation alone = {fmt(bound, digits=2)}x"),
            Target("awk over smaps / cat mount smaps source, warm", ratios(cat["awk over smaps"], cat["mount smaps warm"]),
                   3.0, False),
            Target("C parser / Python reference (MB/s)", ratios(p["python"], p["c"]), 10.0, False),
            Target("C parse time / kernel smaps generation", [x * 100 for x in ratios(p["c"], p["kernel"])], 15.0, True, "%"),
            Target("2 readers / 1 reader, mount rollup cold", ratios(t[2], t[1]), 1.6, False,
                   note=f"CPUs busy with 2 readers: {fmt(self.busy['mount rollup cold'][2])} of {os.cpu_count()}"),
            Target("2 readers / 1 reader, mount smaps cold", ratios(ts[2], ts[1]), 1.6, False),
            Target("daemon RSS change over the reads", [abs(rss1 / rss0 - 1) * 100], 5.0, True, "%", f"{rss0:,} -> {rss1:,} kB"),
            Target("daemon open fds change over the reads", [abs(fd1 / fd0 - 1) * 100], 5.0, True, "%", f"{fd0} -> {fd1}"),
        ]

    def plot(self, path: str) -> None:
        os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
        counts = [self.w[s].mappings for s in SCALING]
        med = statistics.median
        latency = {v: [med(self.inproc[s][v]) for s in SCALING] for v in INPROC}
        cat = {v: [med(self.cat[s][v]) for s in SCALING] for v in CAT}
        tput = {mode: [med(self.tput[mode][n]) for n in READERS] for mode in CONC}
        plot(path, counts, latency, cat, READERS, tput, log)


def _rss(text: bytes) -> int:
    return int(text.split(b"Rss:", 1)[1].split()[0])


def preflight() -> None:
    if os.geteuid() != 0:
        raise BenchError("must run as root: it mounts FUSE with allow_other (try: sudo make bench)")
    if not os.path.exists("/dev/fuse"):
        raise BenchError("/dev/fuse is missing: load the fuse module")
    for tool in ("fusermount3", "cat", "awk"):
        if shutil.which(tool) is None:
            raise BenchError(f"{tool} not found in PATH")
    if not os.path.exists("/proc/self/smaps_rollup"):
        raise BenchError("this kernel has no smaps_rollup (Linux < 4.14): nothing to compare the mount with")


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m totmapsfs.bench", description=__doc__.strip("`").split(":", 1)[-1].strip())
    p.add_argument("--quick", action="store_true", help="fewer samples and 10,000 footprint reads: about 30 s")
    p.add_argument("--repeat", type=int, metavar="N", help="runs of each measurement (default 5, or 3 with --quick)")
    p.add_argument("--plot", default="build/bench-scaling.png", metavar="PNG",
                   help="where to write the scaling curves if matplotlib is installed (default %(default)s; '' for none)")
    return p


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    cfg = QUICK if args.quick else FULL
    if args.repeat is not None:
        if args.repeat < 1:
            parser().error("--repeat must be at least 1")
        cfg = dataclasses.replace(cfg, repeat=args.repeat)
    from ._parser import IMPLEMENTATION

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
    print(f"totmapsfs benchmark, {datetime.date.today()}: {os.cpu_count()} CPUs, Linux {platform.release()}, "
          f"Python {platform.python_version()}, parser {IMPLEMENTATION}; {cfg.repeat} runs"
          f"{' (--quick)' if args.quick else ''}, {elapsed:.0f} s. Figures: median [min{chr(0x2013)}max] over runs.\n")
    print(bench.report())
    if args.plot:
        bench.plot(args.plot)
    return 0


if __name__ == "__main__":
    sys.exit(main())
