"""Whole-system views: /totmaps, /summary, /metrics and /cgroup/…/totmaps against real processes in a real cgroup."""

from __future__ import annotations

import contextlib
import errno
import itertools
import os
import shutil
import subprocess
import tempfile
from pathlib import Path
from typing import Iterator

import pytest
from prometheus_client.parser import text_string_to_metric_families

from conftest import NOBODY, PY, Mount, Workload, as_user, fields, read_rollup, settled, wait_for
from totmapsfs._access import identify
from totmapsfs._procfs import parse_mountinfo
from totmapsfs._cgroups import Cgroups, ancestors, find_cgroup2, unified_path, within
from totmapsfs._cli import parser
from totmapsfs._engine import Engine
from totmapsfs import _views
from totmapsfs._errors import NameTooLong, NoSuchEntry, NotADirectory, SourceError
from totmapsfs._metrics import MetricsOptions, parse_fields, render, snake
from totmapsfs._tree import (
    CGROUP_INODE, METRICS_INODE, PID_MAX_LIMIT, ROOT_INODE, SUMMARY_INODE, TOTMAPS_INODE, Request, Tree,
    cgroup_inode, pid_dir_inode, totmaps_inode,
)
from totmapsfs._views import Row, Views, format_summary, one_word

SUMMARY_FIELDS = ("Rss", "Pss", "USS", "Swap", "SwapPss")
_names = itertools.count()


# -- helpers ------------------------------------------------------------------

def cgroup2_mount() -> Path:
    """The cgroup2 mount point, read independently of the code under test; skip only if there is none."""
    for line in Path("/proc/self/mountinfo").read_text().splitlines():
        left, _, right = line.partition(" - ")
        if right.split()[:1] == ["cgroup2"]:
            return Path(left.split()[4].replace("\\040", " "))
    pytest.skip("cgroup2 is not mounted on this host (no cgroup2 line in /proc/self/mountinfo)")


def own_cgroup() -> str:
    lines = Path("/proc/self/cgroup").read_text().splitlines()
    return next(line[3:] for line in lines if line.startswith("0::"))


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
    assert lines[0].split() == ["PID", "USER", *SUMMARY_FIELDS, "COMMAND"]
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == 8, line  # awk-splittable: no whitespace inside a cell
        rows[int(cells[0])] = {"user": cells[1], "comm": cells[7], **dict(zip(SUMMARY_FIELDS, map(int, cells[2:7])))}
    return rows


def metrics(text: str) -> dict[str, list]:
    """Family name -> samples, through prometheus_client's own parser (which rejects malformed text)."""
    out = {}
    for family in text_string_to_metric_families(text):
        assert family.type == "gauge" and family.documentation, family.name
        out[family.name] = family.samples
    return out


class Cgroup:
    """A cgroup v2 directory made by the test; processes moved in, then out again at the end."""

    def __init__(self, path: Path, mount: Path) -> None:
        self.path = path
        self.rel = str(path.relative_to(mount))
        self.mount = mount

    def child(self, name: str) -> Cgroup:
        (self.path / name).mkdir()
        return Cgroup(self.path / name, self.mount)

    def add(self, *pids: int) -> None:
        for pid in pids:
            (self.path / "cgroup.procs").write_text(str(pid))  # one pid per write: the kernel's rule

    def procs(self) -> list[int]:
        return [int(p) for p in (self.path / "cgroup.procs").read_text().split()]

    def remove(self) -> None:
        """Move every process back to the test's own cgroup (a leaf that takes processes), then rmdir, deepest first."""
        home = self.mount / own_cgroup().lstrip("/")
        for sub in sorted((p for p in self.path.rglob("*") if p.is_dir()), key=lambda p: -len(p.parts)) + [self.path]:
            for pid in Cgroup(sub, self.mount).procs():
                with contextlib.suppress(ProcessLookupError, OSError):
                    (home / "cgroup.procs").write_text(str(pid))
            group = Cgroup(sub, self.mount)
            wait_for(lambda g=group: not g.procs(), what=f"{sub} to empty")
            sub.rmdir()


@pytest.fixture
def cgroup() -> Iterator[Cgroup]:
    mount = cgroup2_mount()
    path = mount / f"totmapsfs-test-{os.getpid()}-{next(_names)}"
    # No skip here: where cgroup2 is mounted, a test that cannot make a cgroup must fail.
    path.mkdir()
    group = Cgroup(path, mount)
    try:
        yield group
    finally:
        group.remove()


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
    p = subprocess.Popen(as_user(user, argv) if user is not None else argv, stdin=subprocess.PIPE,
                         stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdout.readline() == b"\n"
    return p


@pytest.fixture(scope="module")
def mount() -> Iterator[Mount]:
    """A mount with the cache off, so that each view reads the kernel afresh; every series exported."""
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-test-"))
    d.chmod(0o755)  # nobody reads through it too
    m = Mount(d / "mnt", "--max-age", "0", "--metrics-top", "100000")
    yield m
    assert m.stop() == 0
    shutil.rmtree(d, ignore_errors=True)


SEP = "\n--8<--\n"


def read_as(uid: int, *paths: Path) -> list[str]:
    """The files as read by one shell running as ``uid``, one right after the other."""
    script = f'for f; do cat "$f" || exit 1; printf "{SEP.encode("unicode_escape").decode()}"; done'
    r = subprocess.run(as_user(uid, ["sh", "-c", script, "sh", *map(str, paths)]),
                       capture_output=True, text=True, timeout=30, check=False)
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
    here = mount.path / "cgroup" / cgroup.rel
    assert sorted(os.listdir(here)) == ["empty", "inner", "totmaps"]
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
        for w, f in zip(ws, per_pid):
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
        odd.wait()


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
        for pid, f in zip(pids, per_pid):
            (s,) = [s for s in samples if s.labels["pid"] == str(pid)]
            assert s.value == f[name] * 1024, (name, pid)
            assert s.labels["user"] == "root" and s.labels["comm"].startswith("python")
            assert s.labels["cgroup"].endswith("/" + cgroup.rel)
        (c,) = [s for s in fams[f"totmapsfs_cgroup_{unit}_bytes"] if s.labels["cgroup"].endswith("/" + cgroup.rel)]
        assert c.value == sum(f[name] for f in per_pid) * 1024, name
    (count,) = [s for s in fams["totmapsfs_cgroup_processes"] if s.labels["cgroup"].endswith("/" + cgroup.rel)]
    assert count.value == 3
    root = {s.labels["cgroup"]: s.value for s in fams["totmapsfs_cgroup_processes"]}["/"]
    assert root == fams["totmapsfs_processes"][0].value >= 3


def test_unprivileged_reader_sees_only_its_own(mount: Mount, workloads, cgroup: Cgroup) -> None:
    mine = workloads("--marker", "2", user=NOBODY)
    roots = workloads("--marker", "64")  # root's: must show nowhere for nobody
    cgroup.add(mine.pid, roots.pid)
    here = mount.path / "cgroup" / cgroup.rel
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
        root_view = fields((here / "totmaps").read_bytes())
    rows = summary_rows(summary)
    assert mine.pid in rows and roots.pid not in rows
    assert {r["user"] for r in rows.values()} == {"nobody"}
    for pid in rows:  # every listed process really is nobody's
        with contextlib.suppress(FileNotFoundError):
            assert os.stat(f"/proc/{pid}").st_uid == NOBODY
    # nobody's sum over the cgroup is its own process only. If the loop above
    # never caught the shared libraries holding still (the reader's own cat
    # and shell map libc too, which moves Pss), the Pss family may differ by
    # those pages' shares; everything else must be equal.
    pss = {"Pss", "Pss_Dirty", "Pss_Anon", "Pss_File", "Pss_Shmem", "SwapPss"}
    assert group.keys() == own.keys()
    assert {k: v for k, v in group.items() if k not in pss} == {k: v for k, v in own.items() if k not in pss}
    assert all(abs(group[k] - own[k]) <= 256 for k in pss & own.keys()), (group, own)
    assert root_view["Anonymous"] >= own["Anonymous"] + 65536  # root's sum has the 64 MiB too
    assert fields(total.encode())["Anonymous"] < 65536  # and nobody's whole system has not
    fams = metrics(text)
    assert {s.labels["user"] for s in fams["totmapsfs_process_pss_bytes"]} == {"nobody"}
    assert fams["totmapsfs_processes"][0].value == len(rows)
    (c,) = [s for s in fams["totmapsfs_cgroup_rss_bytes"] if s.labels["cgroup"].endswith("/" + cgroup.rel)]
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


# -- without a mount: views over the engine ------------------------------------

def test_views_on_the_engine(workloads, cgroup: Cgroup) -> None:
    w = workloads("--children", "2", "--private", "4")
    nobody = workloads(user=NOBODY)
    cgroup.add(w.pid, *w.children, nobody.pid)
    engine = Engine(max_age=3600)
    views = Views(engine)
    with stopped(w, nobody):
        rows = {r.pid: r for r in views.snapshot(None, cgroups=True)}
        for pid in (w.pid, *w.children):
            assert rows[pid].fields == engine.totmaps(pid).fields
            assert views.cgroups.relative(rows[pid].cgroup) == cgroup.rel
        members = views.cgroup_members(None, cgroup.rel)
        assert sorted(r.pid for r in members) == sorted([w.pid, *w.children, nobody.pid])
        # Warm: a second pass is served from the cache for processes that held still.
        hits = engine.counters.hits
        views.snapshot(None)
        assert engine.counters.hits - hits >= len(rows) // 2
        assert views._cold is False  # so the next pass stays in one thread
        # As nobody (its own process is the caller): its own processes only.
        caller = identify(engine.reader, nobody.pid, NOBODY, NOBODY, engine.reader.user_ns(os.getpid()))
        seen = views.snapshot(caller)
        assert nobody.pid in {r.pid for r in seen} and {r.uid for r in seen} == {NOBODY}
        assert [r.pid for r in views.cgroup_members(caller, cgroup.rel)] == [nobody.pid]
    assert Views(Engine()).field_names()[:2] == ("Rss", "Pss")


def test_a_pass_split_among_threads(monkeypatch, workloads) -> None:
    ws = [workloads() for _ in range(3)]
    views = Views(Engine(max_age=0))

    def two_passes() -> tuple[dict, dict]:
        monkeypatch.setattr(_views, "PASS_THREADS", 1)
        one = {r.pid: r.fields for r in views.snapshot(None)}
        monkeypatch.setattr(_views, "PASS_THREADS", 3)
        monkeypatch.setattr(_views, "_PER_THREAD", 4)
        assert views._cold  # max-age 0: every pass computes
        return one, {r.pid: r.fields for r in views.snapshot(None)}

    with stopped(*ws):
        # Pss moves when any process on the host maps a page the workloads share:
        # compare two passes the kernel's own figures held still across.
        _, (one, three) = settled(lambda: [read_rollup(w.pid) for w in ws], two_passes)
    assert {w.pid for w in ws} <= set(one) and set(one) & set(three) >= {w.pid for w in ws}
    for w in ws:
        assert one[w.pid] == three[w.pid]
    real = views.engine.totmaps_of

    planted: list[Exception] = [SourceError(errno.EIO, "planted")]

    def failing(proc, caller=None, **kw):
        if proc.pid == ws[1].pid:
            raise planted[0]
        return real(proc, caller, **kw)

    monkeypatch.setattr(views.engine, "totmaps_of", failing)
    rows = {r.pid for r in views.snapshot(None)}  # the kernel failing one process: left out
    assert ws[0].pid in rows and ws[2].pid in rows and ws[1].pid not in rows
    planted[0] = RuntimeError("planted bug")
    with pytest.raises(RuntimeError):  # a bug is not swallowed in a helper thread
        views.snapshot(None)


def test_tree_inodes_for_views(cgroup: Cgroup) -> None:
    tree = Tree(Engine(max_age=0))
    me = Request(pid=os.getpid(), uid=0, gid=0)
    assert tree.lookup(ROOT_INODE, b"summary").ino == SUMMARY_INODE
    assert tree.lookup(ROOT_INODE, b"metrics").ino == METRICS_INODE
    assert tree.read_file(TOTMAPS_INODE, me).startswith(b"Rss:")
    top = tree.lookup(ROOT_INODE, b"cgroup")
    assert top.ino == CGROUP_INODE and top.is_dir
    node = top
    for part in cgroup.rel.split("/"):
        node = tree.lookup(node.ino, part.encode())
    inner = cgroup.child("inner")
    child = tree.lookup(node.ino, b"inner")
    assert child.is_dir and tree.getattr(child.ino) == child
    names = [n for n, _ in tree.listdir(node.ino)]
    assert names == [b".", b"..", b"totmaps", b"inner"]
    assert tree.read_file(tree.lookup(child.ino, b"totmaps").ino, me).startswith(b"Rss:")
    # Far from every pid inode, both ways.
    biggest_pid_inode = totmaps_inode(PID_MAX_LIMIT - 1)
    assert child.ino > biggest_pid_inode and cgroup_inode(1, False) > biggest_pid_inode
    assert pid_dir_inode(1) > max(TOTMAPS_INODE, SUMMARY_INODE, METRICS_INODE, CGROUP_INODE)
    for bad in (b"..", b".", b"a/b", b"totmaps/x"):
        with pytest.raises(NoSuchEntry):
            tree.lookup(node.ino, bad)
    with pytest.raises(NameTooLong):
        tree.lookup(node.ino, b"x" * 300)
    with pytest.raises(NotADirectory):
        tree.lookup(SUMMARY_INODE, b"x")
    with pytest.raises(NotADirectory):
        tree.listdir(METRICS_INODE)
    inner.path.rmdir()
    with pytest.raises(NoSuchEntry):
        tree.getattr(child.ino)  # a removed cgroup is gone, not stale


# -- the pieces, on made-up input -----------------------------------------------

def test_find_cgroup2() -> None:
    hybrid = (b"31 23 0:28 / /sys/fs/cgroup rw - tmpfs tmpfs rw\n"
              b"35 31 0:32 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n"
              b"41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw\n")
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
    assert within("a/b", "a") and within("a", "a") and within("a", "") and not within("ab", "a")
    assert ancestors("/") == ["/"] and ancestors("/a/b") == ["/", "/a", "/a/b"]


def test_relative_paths(tmp_path: Path) -> None:
    (tmp_path / "self").mkdir()
    (tmp_path / "self" / "mountinfo").write_bytes(b"1 2 0:3 /sub /cg rw - cgroup2 cgroup2 rw\n")
    from totmapsfs._procfs import ProcReader

    groups = Cgroups(ProcReader(str(tmp_path)))
    assert groups.relative("/sub/a/b") == "a/b" and groups.relative("/sub") == ""
    assert groups.relative("/other") is None and groups.relative("/subx") is None
    assert groups.relative("/sub/../x") is None and groups.relative(None) is None


def test_one_word_and_summary_format() -> None:
    assert one_word("python3") == "python3"
    assert one_word("Web Content") == "Web\\040Content"
    assert one_word("tab\there") == "tab\\011here"
    assert one_word("") == "-"
    assert one_word("nb\u00a0sp") == "nb\\302\\240sp"
    rows = [Row(1, 0, "init", None, {"Rss": 10, "Pss": 5, "Private_Dirty": 3}),
            Row(22, NOBODY, "a b", None, {"Rss": 1000, "Pss": 500, "Swap": 7, "SwapPss": 2})]
    text = format_summary(rows).decode()
    assert text.splitlines() == [
        "PID USER    Rss Pss USS Swap SwapPss COMMAND",
        " 22 nobody 1000 500   0    7       2 a\\040b",
        "  1 root     10   5   3    0       0 init",
    ]
    assert format_summary([]).decode() == "PID USER Rss Pss USS Swap SwapPss COMMAND\n"


def test_metrics_cardinality_options() -> None:
    base = {"Rss": 8, "Pss": 4, "Private_Clean": 1, "Private_Dirty": 2, "Private_Hugetlb": 0, "Swap": 0}
    rows = [Row(pid, 0, 'we"ird\\name\n', f"/s.slice/u{pid % 3}.service", {**base, "Pss": pid}) for pid in range(1, 31)]
    fams = metrics(render(rows, MetricsOptions()).decode())
    assert len(fams["totmapsfs_process_pss_bytes"]) == 30
    assert fams["totmapsfs_process_pss_bytes"][0].labels["comm"] == 'we"ird\\name\n'  # escaped, parsed back
    assert {s.value for s in fams["totmapsfs_process_uss_bytes"]} == {3 * 1024}
    cg = {s.labels["cgroup"]: s.value for s in fams["totmapsfs_cgroup_pss_bytes"]}
    assert cg["/"] == cg["/s.slice"] == sum(range(1, 31)) * 1024
    assert cg["/s.slice/u0.service"] == sum(range(3, 31, 3)) * 1024
    fams = metrics(render(rows, MetricsOptions(top=5)).decode())
    assert [s.labels["pid"] for s in fams["totmapsfs_process_rss_bytes"]] == ["30", "29", "28", "27", "26"]
    fams = metrics(render(rows, MetricsOptions(top=0, cgroup_depth=1, fields=("Pss", "USS"))).decode())
    assert not any(name.startswith("totmapsfs_process_") for name in fams)
    assert {s.labels["cgroup"] for s in fams["totmapsfs_cgroup_pss_bytes"]} == {"/", "/s.slice"}
    assert set(fams) == {"totmapsfs_processes", "totmapsfs_processes_left_out", "totmapsfs_cgroup_processes",
                         "totmapsfs_cgroup_pss_bytes", "totmapsfs_cgroup_uss_bytes"}
    assert fams["totmapsfs_processes_left_out"][0].value == 0
    fams = metrics(render(rows, MetricsOptions(top=0), left_out=3).decode())
    assert fams["totmapsfs_processes_left_out"][0].value == 3
    assert snake("AnonHugePages") == "anon_huge_pages" and snake("Pss_Anon") == "pss_anon"
    assert snake("SwapPss") == "swap_pss" and snake("KSM") == "ksm"
    assert parse_fields("pss, USS,swap_pss") == ("Pss", "USS", "SwapPss") and parse_fields("all") is None
    with pytest.raises(ValueError):
        parse_fields("Psss")


def test_cli_options() -> None:
    args = parser().parse_args(["--metrics-top", "0", "--metrics-cgroup-depth", "2",
                                "--metrics-fields", "Rss,Pss", "/mnt"])
    assert (args.metrics_top, args.metrics_cgroup_depth, args.metrics_fields) == (0, 2, ("Rss", "Pss"))
    args = parser().parse_args(["/mnt"])
    assert (args.metrics_top, args.metrics_cgroup_depth, args.metrics_fields) == (50, None, None)
    for bad in (["--metrics-top", "-1"], ["--metrics-cgroup-depth", "x"], ["--metrics-fields", "nope"]):
        with pytest.raises(SystemExit):
            parser().parse_args([*bad, "/mnt"])
