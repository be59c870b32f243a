"""The benchmark's report: every section's table, the targets with their verdicts, and the scaling plot."""

from __future__ import annotations

import os
import statistics

from . import _cpu, _groups, _target, _whole
from ._bench import CAT, CONC, INPROC, READERS, SCALING, SIZES, Bench, log
from ._report import Target, fmt, plot, ratios, table, targets_table


def report(b: Bench) -> str:
    sizes = [s for s, *_ in SIZES]
    head = ["", *[f"{s} maps" if "x" not in s else "2000 maps x64 pages" for s in sizes]]
    out = []
    base = b.cat["2000"]["cat smaps_rollup"]
    rows = [[v, *[fmt(b.cat[s][v], 1e3) for s in sizes], fmt(ratios(b.cat["2000"][v], base))] for v in CAT]
    out.append(
        table(
            "a. Whole process, ms (cat MOUNT/<pid>/totmaps, cat /proc/<pid>/..., awk summing Rss and Pss)",
            [*head, "/ cat smaps_rollup @2000"],
            rows,
        )
    )
    base = b.inproc["2000"]["direct smaps_rollup"]
    rows = [[v, *[fmt(b.inproc[s][v], 1e6, 0) for s in sizes], fmt(ratios(b.inproc["2000"][v], base))] for v in INPROC]
    out.append(
        table(
            "b. In-process open/read/close, µs (cold: --max-age 0; warm: a cached answer)",
            [*head, "/ direct rollup @2000"],
            rows,
        )
    )
    rows = []
    for s in sizes:
        p = b.parse[s]
        mb = {k: [b / t / 1e6 for b, t in zip(p["bytes"], p[k], strict=True)] for k in ("c", "python", "regex")}
        rows.append(
            [
                head[1 + sizes.index(s)],
                f"{p['bytes'][0] / 1024:.0f}",
                fmt(p["kernel"], 1e3),
                fmt(mb["c"], 1, 0),
                fmt(mb["python"], 1, 0),
                fmt(mb["regex"], 1, 0),
                fmt(ratios(p["python"], p["c"]), 1, 1),
                fmt(ratios(p["c"], p["kernel"]), 100, 1),
            ]
        )
    out.append(
        table(
            "c. Parsers on real smaps bytes (MB/s), and C parse time as % of the kernel generating them",
            [
                "process",
                "smaps KiB",
                "kernel ms",
                "C MB/s",
                "Python ref MB/s",
                "regex MB/s",
                "C / Python",
                "C % of kernel",
            ],
            rows,
        )
    )
    rows = [[mode, *[fmt(b.tput[mode][n], 1, 0) for n in READERS]] for mode in CONC]
    readers = [f"{n} reader{'s' if n > 1 else ''}" for n in READERS]
    out.append(
        table(
            f"d. Concurrent readers, reads/s: thread i reads pid i of 8 2000-mapping processes; {os.cpu_count()} CPUs",
            ["", *readers],
            rows,
        )
    )
    rows = [[mode, *[fmt(ratios(b.tput[mode][n], b.tput[mode][1])) for n in READERS[1:]]] for mode in CONC]
    out.append(table("d. Concurrent readers, speedup over 1 reader (per run)", ["", *readers[1:]], rows))
    rows = [
        [
            mode,
            *[fmt(b.busy[mode][n], 1, 2) for n in READERS],
            *[fmt([b / r * 1e3 for b, r in zip(b.busy[mode][n], b.tput[mode][n], strict=True)]) for n in READERS[:2]],
        ]
        for mode in CONC
    ]
    out.append(
        table(
            "d. Concurrent readers: CPUs busy (machine-wide, all processes) and CPU ms per read",
            ["", *readers, "CPU ms/read @1", "@2"],
            rows,
        )
    )
    out.append(
        "d. Scaling with mappings: the 200 / 2000 / 8000 columns of a, b and c (4 pages each);"
        " 2000x64 shows the page walk."
    )
    rows = [[what, f"{rss:,}", str(fds)] for what, rss, fds in b.fp]
    out.append(
        table(
            f"e. Daemon footprint (default options), reads over {b.fp_pids} pids; {b.fp_failures} failed reads",
            ["", "RSS kB", "open fds"],
            rows,
        )
    )
    views_table, view_targets = _whole.report(b.views, b.view_processes)
    out.append(views_table)
    out.append(_groups.report(b.groups, b.view_processes))
    target_table, target_targets = _target.report(b.target)
    out.append(target_table)
    cpu_table, cpu_targets = _cpu.report(b.cpu)
    out.insert(0, cpu_table)
    out.append(targets_table(cpu_targets + view_targets + target_targets + targets(b)))
    return "\n\n".join(out)


def targets(b: Bench) -> list[Target]:
    cat, inp, p = b.cat["2000"], b.inproc["2000"], b.parse["2000"]
    t, ts, tf = b.tput["mount rollup cold"], b.tput["mount smaps cold"], b.tput["floor + hop + rollup"]
    (_, rss0, fd0), (_, rss1, fd1) = b.fp[-2], b.fp[-1]
    # No cold smaps-source read can beat the kernel generating smaps once.
    bound = ratios(cat["awk over smaps"], inp["direct smaps"])
    # A cold read costs at least a warm one (the FUSE round trips, the
    # signature and the access check) plus the kernel generating smaps_rollup.
    floor = [
        (w + r) / c
        for w, r, c in zip(cat["mount rollup warm"], inp["direct smaps_rollup"], cat["cat smaps_rollup"], strict=True)
    ]
    kernel_rollup, kernel_rollup_inp, awk = cat["cat smaps_rollup"], inp["direct smaps_rollup"], cat["awk over smaps"]

    def ratio(name: str, over: list[float], under: list[float], limit: float, at_most: bool, note: str = "") -> Target:
        return Target(name, ratios(over, under), limit, at_most, note=note)

    rollup_floor = f"floor: (cat warm + direct rollup read) / cat smaps_rollup = {fmt(floor)}x"
    smaps_bound = f"bound: awk / kernel smaps generation alone = {fmt(bound, digits=2)}x"
    return [
        ratio(
            "cat mount rollup cold / cat smaps_rollup", cat["mount rollup cold"], kernel_rollup, 1.3, True, rollup_floor
        ),
        ratio("cat mount rollup warm / cat smaps_rollup", cat["mount rollup warm"], kernel_rollup, 1.1, True),
        ratio("in-process mount cold / direct smaps_rollup", inp["mount rollup cold"], kernel_rollup_inp, 2.0, True),
        ratio("in-process mount warm / direct smaps_rollup", inp["mount rollup warm"], kernel_rollup_inp, 1.0, True),
        ratio("awk over smaps / cat mount smaps source, cold", awk, cat["mount smaps cold"], 3.0, False, smaps_bound),
        ratio("awk over smaps / cat mount smaps source, warm", awk, cat["mount smaps warm"], 3.0, False),
        Target("C parser / Python reference (MB/s)", ratios(p["python"], p["c"]), 10.0, False),
        Target(
            "C parse time / kernel smaps generation",
            [x * 100 for x in ratios(p["c"], p["kernel"])],
            15.0,
            True,
            "%",
        ),
        Target(
            "2 readers / 1 reader, mount rollup cold",
            ratios(t[2], t[1]),
            1.6,
            False,
            note=(
                f"bound: the floor doing one hop and the smaps_rollup read scales {fmt(ratios(tf[2], tf[1]))}x;"
                f" CPUs busy with 2 readers: {fmt(b.busy['mount rollup cold'][2])} of {os.cpu_count()}"
            ),
        ),
        Target("2 readers / 1 reader, mount smaps cold", ratios(ts[2], ts[1]), 1.6, False),
        Target(
            "daemon RSS change over the reads",
            [abs(rss1 / rss0 - 1) * 100],
            5.0,
            True,
            "%",
            f"{rss0:,} -> {rss1:,} kB",
        ),
        Target("daemon open fds change over the reads", [abs(fd1 / fd0 - 1) * 100], 5.0, True, "%", f"{fd0} -> {fd1}"),
    ]


def plot_curves(b: Bench, path: str) -> None:
    os.makedirs(os.path.dirname(os.path.abspath(path)), exist_ok=True)
    counts = [next(maps for label, maps, *_ in SIZES if label == s) for s in SCALING]
    med = statistics.median
    latency = {v: [med(b.inproc[s][v]) for s in SCALING] for v in INPROC}
    cat = {v: [med(b.cat[s][v]) for s in SCALING] for v in CAT}
    tput = {mode: [med(b.tput[mode][n]) for n in READERS] for mode in CONC}
    plot(path, counts, latency, cat, READERS, tput, log)
