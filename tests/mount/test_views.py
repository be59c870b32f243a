"""Whole-system views through the mount: /totmaps, /summary, /metrics and /cgroup/.../totmaps against real processes."""

from __future__ import annotations

import contextlib
import os
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from support.cgroups import Cgroup
from support.kernel import NOBODY, fields, settled
from support.mounts import module_mount
from support.views import metrics
from totmapsfs.harness import PY, Mount, Workload, as_user
from totmapsfs.views import snake

SUMMARY_FIELDS = ("Rss", "Pss", "USS", "Swap", "SwapPss")


# -- helpers ------------------------------------------------------------------


def with_uss(f: dict[str, int]) -> dict[str, int]:
    return {**f, "USS": f["Private_Clean"] + f["Private_Dirty"] + f["Private_Hugetlb"]}


def add(dicts) -> dict[str, int]:
    out: dict[str, int] = {}
    for d in dicts:
        for k, v in d.items():
            out[k] = out.get(k, 0) + v
    return out


def summary_rows(text: str) -> dict[int, dict[str, object]]:
    lines = text.splitlines()
    assert lines[0].split() == ["PID", "USER", *SUMMARY_FIELDS, "AGE", "COMMAND"]
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == 9, line  # awk-splittable: no whitespace inside a cell
        rows[int(cells[0])] = {
            "user": cells[1],
            "age": float(cells[7]),
            "comm": cells[8],
            **dict(zip(SUMMARY_FIELDS, map(int, cells[2:7]), strict=True)),
        }
    return rows


@contextlib.contextmanager
def stopped(*workloads: Workload) -> Iterator[None]:
    with contextlib.ExitStack() as stack:
        for w in workloads:
            stack.enter_context(w.stopped())
        yield


def named(name: bytes, user: int | None = None) -> subprocess.Popen:
    """A process whose command name (comm) is ``name``, set with prctl(PR_SET_NAME); it exits on EOF."""
    code = f"import ctypes,sys; ctypes.CDLL(None).prctl(15, {name!r}, 0, 0, 0); print(flush=True); sys.stdin.read()"
    argv = [PY, "-c", code]
    p = subprocess.Popen(
        as_user(user, argv) if user is not None else argv, stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    assert p.stdout is not None and p.stdout.readline() == b"\n"
    return p


@pytest.fixture(scope="module")
def mount() -> Iterator[Mount]:
    """A mount with the cache off (no max-age, no duty), so that each view reads the kernel afresh; every series.

    In a directory every user can traverse: nobody reads through it too.
    """
    yield from module_mount("--max-age", "0", "--duty", "1", "--metrics-top", "100000")


SEP = "\n--8<--\n"


def read_as(uid: int, *paths: Path) -> list[str]:
    """The files as read by one shell running as ``uid``, one right after the other."""
    script = f'for f; do cat "$f" || exit 1; printf "{SEP.encode("unicode_escape").decode()}"; done'
    r = subprocess.run(
        as_user(uid, ["sh", "-c", script, "sh", *map(str, paths)]),
        capture_output=True,
        text=True,
        timeout=30,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split(SEP)[:-1]


# -- through the mount ---------------------------------------------------------


def test_cgroup_totmaps_sums_its_members_and_descendants(mount: Mount, workloads, cgroup: Cgroup) -> None:
    outer = workloads("--shared", "8", "--private", "8", "--children", "3")
    inner_w = workloads("--marker", "4")
    cgroup.add(outer.pid, *outer.children)
    inner = cgroup.child("inner")
    inner.add(inner_w.pid)
    cgroup.child("empty")
    assert sorted(cgroup.procs()) == sorted([outer.pid, *outer.children])
    here = mount.path / "cgroup" / cgroup.rel.lstrip("/")
    assert sorted(os.listdir(here)) == ["empty", "inner", "meminfo", "totmaps"]
    assert here.is_dir() and (here / "inner").is_dir() and (here / "totmaps").is_file()

    members = [outer.pid, *outer.children, inner_w.pid]
    with stopped(outer, inner_w):
        per_pid, (whole, inner_sum) = settled(
            lambda: [fields(mount.read(pid)) for pid in members],
            lambda: (fields((here / "totmaps").read_bytes()), fields((here / "inner" / "totmaps").read_bytes())),
        )
    assert whole == add(per_pid)
    assert inner_sum == per_pid[-1]
    assert whole["Shared_Dirty"] >= 4 * 16384 - 256  # the four share 16 MiB between them
    assert list(whole) == list(per_pid[0])  # the kernel's field order

    empty = (here / "empty" / "totmaps").read_text()
    assert fields(empty.encode()) == dict.fromkeys(per_pid[0], 0)  # an empty cgroup sums to zeros
    assert (mount.path / "cgroup" / "totmaps").read_text().startswith("Rss:")


def test_summary_rows_agree_with_per_pid_files(mount: Mount, workloads) -> None:
    ws = [workloads("--marker", str(n)) for n in (2, 8, 16)]
    odd = named(b"a b\tc")
    try:
        with stopped(*ws):
            per_pid, text = settled(
                lambda: [with_uss(fields(mount.read(w.pid))) for w in ws],
                lambda: (mount.path / "summary").read_text(),
            )
        rows = summary_rows(text)
        for w, f in zip(ws, per_pid, strict=True):
            row = rows[w.pid]
            assert {k: row[k] for k in SUMMARY_FIELDS} == {k: f.get(k, 0) for k in SUMMARY_FIELDS}
            assert row["user"] == "root" and str(row["comm"]).startswith("python")
        # Largest Pss first; the workloads were made smallest first.
        pss = [r["Pss"] for r in rows.values()]
        assert pss == sorted(pss, reverse=True)
        order = [pid for pid in rows if pid in {w.pid for w in ws}]
        assert order == [w.pid for w in reversed(ws)]
        # A name with whitespace stays one column, as mountinfo escapes it.
        assert rows[odd.pid]["comm"] == "a\\040b\\011c"
        # Kernel threads and zombies have no memory to show.
        assert 2 not in rows
    finally:
        odd.kill()
        odd.communicate()  # reaps it and closes its pipes


def test_root_totmaps_is_at_least_any_subset(mount: Mount, workloads) -> None:
    ws = [workloads("--marker", "8") for _ in range(3)]
    with stopped(*ws):
        subset = add(fields(mount.read(w.pid)) for w in ws)
        system = fields((mount.path / "totmaps").read_bytes())
    assert list(system) == list(subset)
    for name, value in subset.items():
        assert system[name] >= value, name
    assert system["Rss"] > subset["Rss"]  # there is more than the subset: this test, the daemon…
    # The whole system as root is the cgroup2 root as well, when the mount shows the whole hierarchy.
    assert fields((mount.path / "cgroup" / "totmaps").read_bytes())["Rss"] > subset["Rss"]


def test_metrics_parse_and_agree(mount: Mount, workloads, cgroup: Cgroup) -> None:
    w = workloads("--shared", "4", "--children", "2", "--marker", "4")
    cgroup.add(w.pid, *w.children)
    pids = [w.pid, *w.children]
    with w.stopped():
        per_pid, text = settled(
            lambda: [with_uss(fields(mount.read(pid))) for pid in pids],
            lambda: (mount.path / "metrics").read_text(),
        )
    fams = metrics(text)
    for name in per_pid[0]:
        unit = snake(name)
        samples = fams[f"totmapsfs_process_{unit}_bytes"]
        for pid, f in zip(pids, per_pid, strict=True):
            (s,) = [s for s in samples if s.labels["pid"] == str(pid)]
            assert s.value == f[name] * 1024, (name, pid)
            assert s.labels["user"] == "root" and s.labels["comm"].startswith("python")
            assert s.labels["cgroup"] == cgroup.rel
        (c,) = [s for s in fams[f"totmapsfs_cgroup_{unit}_bytes"] if s.labels["cgroup"] == cgroup.rel]
        assert c.value == sum(f[name] for f in per_pid) * 1024, name
    (count,) = [s for s in fams["totmapsfs_cgroup_processes"] if s.labels["cgroup"] == cgroup.rel]
    assert count.value == 3
    root = {s.labels["cgroup"]: s.value for s in fams["totmapsfs_cgroup_processes"]}["/"]
    assert root == fams["totmapsfs_processes"][0].value >= 3


def test_unprivileged_reader_sees_only_its_own(mount: Mount, workloads, cgroup: Cgroup) -> None:
    mine = workloads("--marker", "2", user=NOBODY)
    roots = workloads("--marker", "64")  # root's: must show nowhere for nobody
    cgroup.add(mine.pid, roots.pid)
    here = mount.path / "cgroup" / cgroup.rel.lstrip("/")
    with stopped(mine, roots):
        summary, total, text = read_as(NOBODY, mount.path / "summary", mount.path / "totmaps", mount.path / "metrics")
        # The process's own file and its cgroup's, read back to back by one
        # shell as nobody: equal, once no other process mapped or unmapped
        # the libraries it shares (which moves its Pss) in between.
        for _ in range(50):
            texts = read_as(NOBODY, mount.file(mine.pid), here / "totmaps", mount.file(mine.pid))
            own, group, again = (fields(t.encode()) for t in texts)
            if own == again == group:
                break
        else:
            pytest.fail(f"nobody's own file and its cgroup's never agreed in 50 attempts: {own} {group} {again}")
        root_view = fields((here / "totmaps").read_bytes())
    rows = summary_rows(summary)
    assert mine.pid in rows and roots.pid not in rows
    assert {r["user"] for r in rows.values()} == {"nobody"}
    for pid in rows:  # every listed process really is nobody's
        with contextlib.suppress(FileNotFoundError):
            assert os.stat(f"/proc/{pid}").st_uid == NOBODY
    # nobody's sum over the cgroup is its own process only: equal, when read while it held still (above).
    assert root_view["Anonymous"] >= own["Anonymous"] + 65536  # root's sum has the 64 MiB too
    assert fields(total.encode())["Anonymous"] < 65536  # and nobody's whole system has not
    fams = metrics(text)
    assert {s.labels["user"] for s in fams["totmapsfs_process_pss_bytes"]} == {"nobody"}
    assert fams["totmapsfs_processes"][0].value == len(rows)
    (c,) = [s for s in fams["totmapsfs_cgroup_rss_bytes"] if s.labels["cgroup"] == cgroup.rel]
    assert c.value == own["Rss"] * 1024


def test_one_read_is_one_snapshot(mount: Mount, workloads) -> None:
    for path in (mount.path / "summary", mount.path / "metrics"):
        fd = os.open(path, os.O_RDONLY)
        try:
            whole = os.pread(fd, 1 << 22, 0)
            workloads("--marker", "1")  # the system changes under the open handle…
            pieces = b"".join(os.pread(fd, 100, off) for off in range(0, len(whole) + 100, 100))
        finally:
            os.close(fd)
        assert pieces == whole  # …the handle keeps serving what it saw at open
    assert b"Pss:" in subprocess.run(["cat", str(mount.path / "totmaps")], capture_output=True, check=True).stdout


def test_names_and_errors(mount: Mount) -> None:
    root = mount.path
    assert {"totmaps", "summary", "metrics", "cgroup"} <= set(os.listdir(root))
    for name in ("totmaps", "summary", "metrics"):
        st = os.stat(root / name)
        assert st.st_mode == 0o100444 and st.st_uid == 0
    with pytest.raises(NotADirectoryError):
        os.stat(root / "summary" / "x")
    with pytest.raises(FileNotFoundError):
        os.stat(root / "cgroup" / "no-such-cgroup")
    with pytest.raises(FileNotFoundError):
        os.stat(root / "cgroup" / "cgroup.procs")  # a control file, not a cgroup
    with pytest.raises(OSError):
        (root / "cgroup" / "totmaps").write_text("x")
