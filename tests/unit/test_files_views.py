"""FileWalks and the files/meminfo formats without FUSE: the duty across both kinds of walk, the table, the sums."""

from __future__ import annotations

import functools
import os
import re

import pytest

from support.passes import snapshot
from support.views import render_with_client
from totmapsfs.engine import Engine, FileWalks, NotDue
from totmapsfs.parser import parse_smaps, parse_smaps_mappings
from totmapsfs.proc import Cgroup2
from totmapsfs.views import (
    FileViews,
    MeminfoViews,
    MetricsOptions,
    Views,
    files_families,
    format_meminfo,
    parse_meminfo,
    reconcile,
    render,
)
from totmapsfs.views._meminfo import cgroup_lines

pytestmark = pytest.mark.unit


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


def test_files_walk_waits_for_the_totmaps_walks_duty() -> None:
    """A process whose totmaps walk (0.1 s, duty 5%) holds it is not walked for files for 2 s in a whole pass."""
    clock = Clock()

    def slow_parse(data: bytes | memoryview) -> dict[str, int]:
        clock.now += 0.1  # the walk's cost, on the injected clock the cache measures walks with
        return parse_smaps(data)

    engine = Engine(max_age=0.5, duty=0.05, clock=clock, parse=slow_parse, light_page_tables=-1)  # none light
    walks = FileWalks(engine)
    pid = os.getpid()
    engine.totmaps(pid)
    with engine.reader.open(pid) as proc:
        checked = engine.check(proc)
        with pytest.raises(NotDue):
            walks.resolve(checked, strict=True)
        assert walks.not_due == 1
        first = walks.resolve(checked)  # one process's file, asked by name: its first answer is walked
        assert first.by_key and first.fields["Rss"] == sum(rss for rss, *_ in first.by_key.values())
        clock.now += 1.0
        assert walks.resolve(engine.check(proc), strict=True) is first  # still held: its last answer
        clock.now += 1.0  # 2 s after the 0.1 s walk began: due again
        again = walks.resolve(engine.check(proc), strict=True)
        assert again is not first and again.at == clock.now


def test_totmaps_walk_waits_for_the_files_walks_duty() -> None:
    """The other way: a process a files walk (0.1 s, duty 5%) holds keeps its last totmaps answer for 2 s."""
    clock = Clock()

    def slow_parse(data: bytes | memoryview) -> dict[str, int]:
        clock.now += 0.1
        return parse_smaps(data)

    def slow_mappings(data: bytes | memoryview) -> dict[str, dict[str, int]]:
        clock.now += 0.1
        return parse_smaps_mappings(data)

    engine = Engine(max_age=0.5, duty=0.05, clock=clock, parse=slow_parse, light_page_tables=-1)  # none light
    walks = FileWalks(engine, parse=slow_mappings)
    pid = os.getpid()
    first = engine.totmaps(pid)
    clock.now += 3.0  # the totmaps walk's hold (2 s) is over
    with engine.reader.open(pid) as proc:
        mapped = walks.resolve(engine.check(proc), strict=True)  # due: walked now
        assert mapped.walk == pytest.approx(0.1) and walks.cache.counters.walks == 1
        clock.now += 1.0  # totmaps is 4.1 s old (past max-age and its own hold), the files walk 1 s
        walked, held = engine.counters.walks, engine.counters.held_not_due
        assert engine.resolve(engine.check(proc)) is first
        assert engine.cached(engine.check(proc)) is first  # the open path's, on the event loop
        assert (engine.counters.walks, engine.counters.held_not_due) == (walked, held + 2)
        clock.now += 1.0  # 2 s after the files walk began: due again
        again = engine.resolve(engine.check(proc))
        assert again is not first and again.at == clock.now - 0.1 and engine.counters.walks == walked + 1


def test_files_view_counts_what_the_duty_left_out() -> None:
    clock = Clock()

    def slow_parse(data: bytes | memoryview) -> dict[str, int]:
        clock.now += 0.1
        return parse_smaps(data)

    # 0.1 s walks at a 0.01% duty are held for 1000 s: longer than the pass itself moves the clock.
    engine = Engine(max_age=0.5, duty=0.0001, clock=clock, parse=slow_parse, light_page_tables=-1)  # none light
    views = Views(engine, Cgroup2(engine.reader))
    walked = len(snapshot(views, None))  # every process walked for totmaps just now, 0.1 s each: none due
    text = FileViews(views).files(None).run().decode().splitlines()
    assert text[0].split() == ["PROCS", "Rss", "Pss", "USS", "Swap", "SwapPss", "AGE", "PATH"]
    # Every process of that pass is left out (a host's processes come and go meanwhile: those new since are walked).
    match = re.fullmatch(
        r"# not counted: (\d+) processes walked too recently for their walk duty, 0 left out "
        r"\(unreadable or busy\)",
        text[-1],
    )
    assert match is not None and walked / 2 < int(match.group(1)) <= walked
    clock.now += 3600  # all due again (1000 s after the last walk)
    text = FileViews(views).files(None).run().decode().splitlines()
    assert len(text) > 2 and not text[-1].startswith("#")


def test_reconcile_adds_up_whatever_the_counters() -> None:
    info = parse_meminfo(
        b"MemTotal: 1000 kB\nMemFree: 100 kB\nBuffers: 10 kB\nCached: 300 kB\nSwapCached: 5 kB\n"
        b"AnonPages: 200 kB\nMapped: 80 kB\nShmem: 40 kB\nKReclaimable: 30 kB\nSReclaimable: 20 kB\n"
        b"SUnreclaim: 15 kB\nKernelStack: 4 kB\nPageTables: 6 kB\nSecPageTables: 0 kB\nVmallocUsed: 9 kB\n"
        b"Percpu: 2 kB\nHugePages_Total: 3\nHugepagesize: 2048 kB\n"
    )
    lines = reconcile(info, {"Pss_Anon": 190, "Pss_File": 50, "Pss_Shmem": 20}, unread=12)
    got = {line.name: line.kb for line in lines}
    top = [line.kb for line in lines[1:] if line.depth == 0]
    assert sum(top) == got["MemTotal"] == 1000
    assert got["ProcessesUnread"] == (200 - 190) + (80 - 50 - 20)
    assert got["PageCacheUnmapped"] == 10 + 300 - 40 - (80 - 20)
    assert got["ShmemUnmapped"] == 40 - 20
    assert got["HugeTLB"] == 6144  # before 4.16: HugePages_Total x Hugepagesize
    assert got["Kernel"] == 20 + 15 + 10 + 4 + 6 + 0 + (9 - 4) + 2
    assert got["Unattributed"] < 0  # shown as it comes out, never clamped
    text = format_meminfo(lines).decode()
    assert text.splitlines()[0].split() == ["MemTotal:", "1000", "kB"]
    assert "\n  Pss_Anon:" in text


def test_cgroup_lines_without_and_with_the_memory_controller() -> None:
    pss = {"Pss_Anon": 100, "Pss_File": 30, "Pss_Shmem": 10}
    assert [line.name for line in cgroup_lines(None, None, pss)] == ["Pss", "Pss_Anon", "Pss_File", "Pss_Shmem"]
    stat = {"anon": 150 << 10, "file": 80 << 10, "file_mapped": 50 << 10, "shmem": 10 << 10, "kernel": 20 << 10}
    got = {line.name: line.kb for line in cgroup_lines(stat, 260 << 10, pss)}
    assert got["MemoryCurrent"] == 260
    assert got["ChargedAnonNotMapped"] == 50
    assert got["ChargedMappedNotByMembers"] == 10
    assert got["ChargedUnmapped"] == 30


def test_meminfo_and_files_families_render_as_prometheus_client_does() -> None:
    """The extra families go through both renderings: ours byte for byte equal to prometheus_client's."""
    engine = Engine(max_age=0)
    views = Views(engine, Cgroup2(engine.reader))
    files, meminfo = FileViews(views), MeminfoViews(views)
    rows = snapshot(views, None)
    file_rows = views.plan(None, lambda r: r, resolve=functools.partial(files.walks.resolve, strict=True)).run()
    rows.extra = (*meminfo.families(rows), *files_families(file_rows, 3))
    options = MetricsOptions(top=2)
    text = render(rows, options, views.field_names())
    assert text == render_with_client(rows, options, views.field_names())
    assert text.count(b"\ntotmapsfs_file_pss_bytes{") == 3
    assert b'totmapsfs_meminfo_bytes{line="Unattributed",parent=""}' in text
