"""The grouped views' pure parts: program names, entry names, sums by group, tables, layouts, series."""

from __future__ import annotations

import pytest

from support.views import metrics
from totmapsfs.service import parser
from totmapsfs.views import (
    CHROMEOS_FIELDS,
    COMM_MARK,
    MetricsOptions,
    Row,
    Snapshot,
    chromeos,
    entry_name,
    format_groups,
    program_name,
    render,
    sums_by,
)

BASE = {"Rss": 8, "Pss": 4, "Private_Clean": 1, "Private_Dirty": 2, "Private_Hugetlb": 0, "Swap": 5, "SwapPss": 3}


def test_a_program_is_its_executable_else_its_comm_marked() -> None:
    assert program_name("/usr/lib/firefox-esr/firefox-esr", "Web Content") == "firefox-esr"
    assert program_name("/usr/bin/python3.13", "script.py") == "python3.13"  # interpreters: the interpreter
    assert program_name("/opt/app/server (deleted)", "server") == COMM_MARK + "server"
    assert program_name(None, "Isolated Web Co") == "comm:Isolated Web Co"


def test_entry_names_are_one_awk_column_and_one_path_component() -> None:
    assert entry_name("comm:Web Content") == "comm:Web\\040Content"
    assert entry_name("a/b\tc") == "a\\057b\\011c"
    assert entry_name("") == "-" and entry_name("bash") == "bash"


def test_sums_by_group_largest_pss_first() -> None:
    rows = [
        Row(1, 0, "a", None, {**BASE, "Pss": 10}, age=0.5, program="x"),
        Row(2, 0, "b", None, {**BASE, "Pss": 7}, age=2.0, program="x"),
        Row(3, 0, "c", None, {**BASE, "Pss": 30}, program="y"),
        Row(4, 0, "d", None, {**BASE, "Pss": 17}, program="z"),
    ]
    groups = sums_by(rows, lambda r: r.program)
    assert [(g.name, g.processes, g.pss, g.uss, g.age) for g in groups] == [
        ("y", 1, 30, 3, 0.0),
        ("x", 2, 17, 6, 2.0),  # the oldest answer of the two
        ("z", 1, 17, 3, 0.0),  # a tie in Pss: by name
    ]
    text = format_groups(groups, "PROGRAM").decode()
    lines = text.splitlines()
    assert lines[0].split() == ["PROCS", "USS", "Pss", "Swap", "SwapPss", "AGE", "PROGRAM"]
    assert lines[2].split() == ["2", "6", "17", "10", "6", "2.0", "x"]
    assert len({len(line) - len(line.split()[-1]) for line in lines}) == 1  # padded: the name column lines up


def test_the_chromeos_layout() -> None:
    kernel = {"Rss": 9, "Pss": 8, "Pss_Anon": 7, "Pss_File": 1, "Private_Clean": 2, "Private_Dirty": 3, "Swap": 4}
    out = chromeos(kernel)
    assert list(out) == list(CHROMEOS_FIELDS) and len(out) == 11
    assert (out["Pss"], out["Private_Clean"], out["Private_Dirty"], out["Swap"], out["Locked"]) == (8, 2, 3, 4, 0)
    assert chromeos({}) == {}  # no address space: an empty file, as in the kernel layout


def test_program_and_user_series_are_bounded() -> None:
    rows = Snapshot(
        Row(pid, 1000 + pid % 4, "c", None, {**BASE, "Pss": pid}, program=f"p{pid % 7}") for pid in range(1, 50)
    )
    fams = metrics(render(rows, MetricsOptions(top=0, fields=("Pss", "USS"), groups=3)).decode())
    grouped = {
        name: samples for name, samples in fams.items() if name.startswith(("totmapsfs_program", "totmapsfs_user"))
    }
    assert sum(map(len, grouped.values())) == (2 + 1) * (min(3, 7) + min(3, 4))  # the documented count
    pss = {s.labels["program"]: s.value for s in grouped["totmapsfs_program_pss_bytes"]}
    sums = {f"p{k}": sum(p for p in range(1, 50) if p % 7 == k) * 1024 for k in range(7)}
    assert pss == {name: sums[name] for name in sorted(sums, key=sums.__getitem__)[-3:]}
    assert not any("pid" in s.labels for samples in grouped.values() for s in samples)
    none = metrics(render(rows, MetricsOptions(top=0, groups=0)).decode())
    assert not any(name.startswith(("totmapsfs_program", "totmapsfs_user")) for name in none)
    with pytest.raises(ValueError):
        MetricsOptions(groups=-1)


def test_cli_layout_and_groups_options() -> None:
    args = parser().parse_args(["--layout", "chromeos", "--metrics-groups", "5", "m"])
    assert (args.layout, args.metrics_groups) == ("chromeos", 5)
    args = parser().parse_args(["m"])
    assert (args.layout, args.metrics_groups) == ("kernel", 20)
