"""The views' pieces on made-up input: cgroup2 mounts and paths, the summary table, metrics and their options."""

from __future__ import annotations

import os

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from support.fakeproc import FakeProc
from support.kernel import NOBODY
from support.views import metrics, render_with_client
from totmapsfs.proc import Cgroup2, ProcReader, ancestors, find_cgroup2, parse_mountinfo, unified_path, within
from totmapsfs.service import parser
from totmapsfs.views import (
    MetricsOptions,
    Row,
    Snapshot,
    WalkStats,
    format_summary,
    one_word,
    parse_fields,
    render,
    snake,
)


def test_find_cgroup2() -> None:
    hybrid = (
        b"31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
        b"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
        b"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n"
    )
    m = find_cgroup2(parse_mountinfo(hybrid))
    assert m is not None and (m.path, m.root) == ("/sys/fs/cgroup/unified", "/")
    sub = b"50 1 0:38 /a\\040b /mnt/my\\040cg rw - cgroup2 cgroup2 rw\n"
    m = find_cgroup2(parse_mountinfo(sub + hybrid))
    assert m is not None and m.path == "/sys/fs/cgroup/unified"  # the whole hierarchy is preferred
    m = find_cgroup2(parse_mountinfo(sub))
    assert m is not None and (m.path, m.root) == ("/mnt/my cg", "/a b")
    assert find_cgroup2(parse_mountinfo(hybrid.splitlines()[0])) is None
    assert unified_path(b"4:memory:/x\n0::/system.slice/ssh.service\n") == "/system.slice/ssh.service"
    assert unified_path(b"4:memory:/x\n") is None
    assert within("/a/b", "/a") and within("/a", "/a") and within("/a", "/") and not within("/ab", "/a")
    assert ancestors("/") == ["/"] and ancestors("/a/b") == ["/", "/a", "/a/b"]


def test_relative_paths(tmp_path) -> None:
    fake = FakeProc(tmp_path / "proc", self_link="me")
    (fake.root / "me").mkdir()
    (fake.root / "me" / "mountinfo").write_bytes(b"1 2 0:3 /sub /cg rw - cgroup2 cgroup2 rw\n")
    groups = Cgroup2(ProcReader(str(fake.root)))
    assert groups.relative("/sub/a/b") == "/a/b" and groups.relative("/sub") == "/"
    assert groups.relative("/other") is None and groups.relative("/subx") is None
    assert groups.relative("/sub/../x") is None and groups.relative(None) is None


def test_one_word_and_summary_format() -> None:
    assert one_word("python3") == "python3"
    assert one_word("Web Content") == "Web\\040Content"
    assert one_word("tab\there") == "tab\\011here"
    assert one_word("") == "-"
    assert one_word("nb\u00a0sp") == "nb\\302\\240sp"
    rows = [
        Row(1, 0, "init", None, {"Rss": 10, "Pss": 5, "Private_Dirty": 3}, age=0.04),
        Row(22, NOBODY, "a b", None, {"Rss": 1000, "Pss": 500, "Swap": 7, "SwapPss": 2}, age=12.36),
    ]
    text = format_summary(rows).decode()
    assert text.splitlines() == [
        "PID USER    Rss Pss USS Swap SwapPss  AGE COMMAND",
        " 22 nobody 1000 500   0    7       2 12.4 a\\040b",
        "  1 root     10   5   3    0       0  0.0 init",
    ]
    assert format_summary([]).decode() == "PID USER Rss Pss USS Swap SwapPss AGE COMMAND\n"


def snapshot(rows: list[Row], left_out: int = 0, stats: WalkStats | None = None) -> Snapshot:
    s = Snapshot(rows)
    s.left_out = left_out
    s.stats = stats
    return s


def test_metrics_show_ages_and_walking() -> None:
    rows = [
        Row(7, 0, "big", "/", {"Rss": 9, "Pss": 9}, age=31.5, walk=1.5),
        Row(8, 0, "small", "/", {"Rss": 1, "Pss": 1}, age=0.25, walk=0.0001),
    ]
    stats = WalkStats("rollup", walks=12, walk_seconds=3.25, held_not_due=5, held_walk_in_flight=2, held_budget=1)
    fams = metrics(render(snapshot(rows, stats=stats), MetricsOptions()).decode())
    assert {s.labels["pid"]: s.value for s in fams["totmapsfs_process_age_seconds"]} == {"7": 31.5, "8": 0.25}
    assert {s.labels["pid"]: s.value for s in fams["totmapsfs_process_walk_seconds"]} == {"7": 1.5, "8": 0.0001}
    assert fams["totmapsfs_oldest_answer_seconds"][0].value == 31.5
    assert [(s.name, s.labels, s.value) for s in fams["totmapsfs_walk_seconds"]] == [
        ("totmapsfs_walk_seconds_total", {"source": "rollup"}, 3.25)
    ]
    assert fams["totmapsfs_walks"][0].value == 12
    held = {s.labels["reason"]: s.value for s in fams["totmapsfs_held_answers"]}
    assert held == {"not_due": 5, "walk_in_flight": 2, "budget": 1}


def test_metrics_cardinality_options() -> None:
    base = {"Rss": 8, "Pss": 4, "Private_Clean": 1, "Private_Dirty": 2, "Private_Hugetlb": 0, "Swap": 0}
    rows = snapshot(
        [Row(pid, 0, 'we"ird\\name\n', f"/s.slice/u{pid % 3}.service", {**base, "Pss": pid}) for pid in range(1, 31)]
    )
    fams = metrics(render(rows, MetricsOptions()).decode())
    assert len(fams["totmapsfs_process_pss_bytes"]) == 30
    assert fams["totmapsfs_process_pss_bytes"][0].labels["comm"] == 'we"ird\\name\n'  # escaped, parsed back
    assert {s.value for s in fams["totmapsfs_process_uss_bytes"]} == {3 * 1024}
    cg = {s.labels["cgroup"]: s.value for s in fams["totmapsfs_cgroup_pss_bytes"]}
    assert cg["/"] == cg["/s.slice"] == sum(range(1, 31)) * 1024
    assert cg["/s.slice/u0.service"] == sum(range(3, 31, 3)) * 1024
    fams = metrics(render(rows, MetricsOptions(top=5)).decode())
    assert [s.labels["pid"] for s in fams["totmapsfs_process_rss_bytes"]] == ["30", "29", "28", "27", "26"]
    fams = metrics(render(rows, MetricsOptions(top=0, cgroup_depth=1, fields=("Pss", "USS"), groups=0)).decode())
    assert not any(name.startswith("totmapsfs_process_") for name in fams)
    assert {s.labels["cgroup"] for s in fams["totmapsfs_cgroup_pss_bytes"]} == {"/", "/s.slice"}
    assert set(fams) == {
        "totmapsfs_processes",
        "totmapsfs_processes_left_out",
        "totmapsfs_oldest_answer_seconds",
        "totmapsfs_cgroup_processes",
        "totmapsfs_cgroup_pss_bytes",
        "totmapsfs_cgroup_uss_bytes",
    }
    assert fams["totmapsfs_processes_left_out"][0].value == 0
    fams = metrics(render(snapshot(list(rows), left_out=3), MetricsOptions(top=0)).decode())
    assert fams["totmapsfs_processes_left_out"][0].value == 3
    assert snake("AnonHugePages") == "anon_huge_pages" and snake("Pss_Anon") == "pss_anon"
    assert snake("SwapPss") == "swap_pss" and snake("KSM") == "ksm"
    assert parse_fields("pss, USS,swap_pss") == ("Pss", "USS", "SwapPss") and parse_fields("all") is None
    with pytest.raises(ValueError):
        parse_fields("Psss")


WEIRD = st.text(st.sampled_from('ab"\\\n{}=, \t\u00e9\u2603\U0001f600'), max_size=12)


@settings(max_examples=int(200 * float(os.environ.get("TOTMAPSFS_EXAMPLES_SCALE", "1"))), deadline=None)
@given(
    comms=st.lists(WEIRD, max_size=8),
    values=st.lists(st.integers(0, 2**50), min_size=6, max_size=6),
    top=st.integers(0, 5),
    depth=st.none() | st.integers(0, 3),
    left_out=st.integers(0, 3),
    ages=st.floats(0, 1e6),
    walked=st.none() | st.floats(0, 1e9),
)
def test_our_exposition_is_prometheus_clients(comms, values, top, depth, left_out, ages, walked) -> None:
    """The fast renderer writes exactly what prometheus_client's generate_latest writes, for any label text."""
    names = ("Rss", "Pss", "Private_Clean", "Private_Dirty", "Private_Hugetlb", "Swap")
    rows = [
        Row(
            pid,
            pid % 3 * 500,
            comm,
            None if pid % 4 == 0 else f"/a{pid % 2}/{comm or 'x'}.service",
            dict(zip(names, [v + pid for v in values], strict=True)),
            ages / pid,
            ages / 7,
        )
        for pid, comm in enumerate(comms, 1)
    ]
    stats = None if walked is None else WalkStats("smaps", len(comms), walked, top, left_out, 1)
    snap = snapshot(rows, left_out, stats)
    for options in (MetricsOptions(top, depth), MetricsOptions(top, depth, ("Pss", "USS"))):
        ours = render(snap, options, names)
        assert ours == render_with_client(snap, options, names)
    metrics(ours.decode())  # and it parses


def test_cli_options() -> None:
    args = parser().parse_args(
        ["--metrics-top", "0", "--metrics-cgroup-depth", "2", "--metrics-fields", "Rss,Pss", "/mnt"]
    )
    assert (args.metrics_top, args.metrics_cgroup_depth, args.metrics_fields) == (0, 2, ("Rss", "Pss"))
    args = parser().parse_args(["/mnt"])
    assert (args.metrics_top, args.metrics_cgroup_depth, args.metrics_fields) == (50, None, None)
    for bad in (["--metrics-top", "-1"], ["--metrics-cgroup-depth", "x"], ["--metrics-fields", "nope"]):
        with pytest.raises(SystemExit):
            parser().parse_args([*bad, "/mnt"])
