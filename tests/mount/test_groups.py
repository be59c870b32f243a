"""Programs, users and process trees through the mount, against the kernel, ps_mem and smem.

The workloads are tests/programs/groupload.py run by a copy of the
interpreter named ``tmfs-gl-<the test run's pid>`` (unique: two runs on one host
would add up), so that their executable names the program as ps_mem and the
mount both name it: a forking server whose children
share memory, children renamed with prctl(PR_SET_NAME) as Firefox's are, a
tree three levels deep, and children of two users (uids with no account).
They are stopped while read. Every comparison with the kernel is made with
its figures held still around the mount's (support.kernel.held); every one
with ps_mem or smem in a window where the mount's figure, read before, between
and after two runs of the tool, stayed the same and the tool's two answers
agreed (support.kernel.bracketed). Each process
writes 4 MiB of its own: the tools' own processes share libc and the
interpreter's modules with the workload, and move its Pss_File while they run
(ps_mem ~200 kB lower over four processes); smem truncates Pss per mapping.
"""

from __future__ import annotations

import contextlib
import importlib.util
import json
import os
import select
import shutil
import signal
import subprocess
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support import PROGRAMS
from support.kernel import bracketed, fields, held, read_rollup
from support.namespaces import Agent, value
from support.views import metrics
from totmapsfs.harness import PY, Mount, state, wait_for
from totmapsfs.views import snake

PROGRAM = f"tmfs-gl-{os.getpid()}"  # at most 15 characters: the comm too is the whole name
GROUPLOAD = PROGRAMS / "groupload.py"
USERS = (50001, 50002)  # no account: the views print them as numbers, as ps and smem do
TABLE = ["PROCS", "USS", "Pss", "Swap", "SwapPss", "AGE"]


# -- workloads and readings ------------------------------------------------------------


@pytest.fixture(scope="module")
def interpreter() -> Iterator[Path]:
    """The venv's interpreter copied as PROGRAM: a pyvenv.cfg beside it points home to its library."""
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-groupload-"))
    d.chmod(0o755)
    real = os.path.realpath(PY)
    shutil.copy2(real, d / PROGRAM)
    (d / "pyvenv.cfg").write_text(f"home = {os.path.dirname(real)}\n")
    yield d / PROGRAM
    shutil.rmtree(d, ignore_errors=True)


@contextlib.contextmanager
def groupload(interpreter: Path, *args: str) -> Iterator[list[int]]:
    """A groupload.py tree: its pids, the first process first; all of them stopped meanwhile; killed at the end."""
    p = subprocess.Popen([str(interpreter), str(GROUPLOAD), *args], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    assert p.stdout is not None and p.stdin is not None
    try:
        ready, _, _ = select.select([p.stdout], [], [], 60)
        line = p.stdout.readline().decode().split() if ready else []
        assert line[:1] == ["ready"], f"groupload did not start: {line}"
        pids = [int(pid) for pid in line[1:]]
        for pid in pids:
            os.kill(pid, signal.SIGSTOP)
        for pid in pids:
            wait_for(lambda pid=pid: state(pid) == "T", what=f"{pid} stopped")
        yield pids
    finally:
        p.stdin.close()
        p.kill()
        p.wait(30)
        p.stdout.close()


def table(text: str, title: str) -> dict[str, dict[str, float]]:
    """programs or users: name -> columns; every line split by whitespace into exactly 7 cells."""
    lines = text.splitlines()
    assert lines[0].split() == [*TABLE, title]
    rows = {}
    for line in lines[1:]:
        cells = line.split()
        assert len(cells) == 7, line
        rows[cells[6]] = dict(zip(TABLE, map(float, cells[:6]), strict=True))
    pss = [row["Pss"] for row in rows.values()]
    assert pss == sorted(pss, reverse=True)  # largest Pss first
    return rows


def add(dicts: list[dict[str, int]]) -> dict[str, int]:
    """Field-wise sums of one kernel's readings (the same fields in each), in its order."""
    return {name: sum(d[name] for d in dicts) for name in dicts[0]}


def uss(f: dict[str, int]) -> int:
    return f["Private_Clean"] + f["Private_Dirty"] + f["Private_Hugetlb"]


def expect_row(row: dict[str, float], per_pid: list[dict[str, int]]) -> None:
    total = add(per_pid)
    assert row["PROCS"] == len(per_pid)
    assert row["Pss"] == total["Pss"] and row["USS"] == sum(map(uss, per_pid))
    assert row["Swap"] == total["Swap"] and row["SwapPss"] == total["SwapPss"]


# ps_mem runs under Debian's python3, not the venv's: the workload's interpreter is a copy of the
# venv's, whose shared libpython (a pyenv build) ps_mem's own process would share while it reads,
# lowering the workload's Pss in its reading alone (-1.1% in a CI-style run; smem, on Debian's
# python3, never was). Debian's links libpython in: nothing of it is shared with the workload.
PS_MEM_PY = "/usr/bin/python3" if os.path.exists("/usr/bin/python3") else PY
_PS_MEM = importlib.util.find_spec("ps_mem")  # the test extra installs it
PS_MEM_DIR = os.path.dirname(_PS_MEM.origin or "") if _PS_MEM else ""


def ps_mem_totals(pids: list[int]) -> dict[str, float]:
    """ps_mem's "RAM used" per program (kB), as `ps_mem -p PIDS` computes it: its own function, in a process of its own.

    (ps_mem leaves its /proc files to the garbage collector: ResourceWarnings, errors in this suite.)
    """
    code = (
        "import json, sys, ps_mem; print(json.dumps(ps_mem.get_memory_usage(json.loads(sys.argv[1]), False, False)[0]))"
    )
    out = subprocess.run(
        [PS_MEM_PY, "-W", "ignore", "-c", code, json.dumps(pids)],
        capture_output=True,
        text=True,
        check=True,
        timeout=120,
        env={**os.environ, "PYTHONPATH": PS_MEM_DIR},
    ).stdout
    return dict(json.loads(out))


def smem_users() -> dict[str, dict[str, int]]:
    """`smem -u` of the test users: user -> count, USS, PSS (kB), as smem sums every process's smaps."""
    out = subprocess.run(
        ["smem", "-u", "-H", "-c", "user count uss pss"], capture_output=True, text=True, check=True, timeout=120
    ).stdout
    rows = {u: (int(c), int(s), int(p)) for u, c, s, p in (ln.split() for ln in out.splitlines())}
    return {str(u): dict(zip(("count", "uss", "pss"), rows[str(u)], strict=True)) for u in USERS}


def program_pss(m: Path) -> int:
    """The Pss of the workload's program, as the mount sums it now."""
    return fields((m / "program" / PROGRAM / "totmaps").read_bytes())["Pss"]


def user_figures(m: Path) -> dict[int, tuple[float, float]]:
    """Each test user's Pss and USS in the mount's ``users`` table now."""
    rows = table((m / "users").read_text(), "USER")
    return {u: (rows[str(u)]["Pss"], rows[str(u)]["USS"]) for u in USERS}


def alike(first: Any, second: Any) -> bool:
    """Two answers of a tool (numbers, or dicts of them) the same to 0.1%: its own run-to-run noise (~0.03%)."""
    if isinstance(first, dict):
        return first.keys() == second.keys() and all(alike(first[k], second[k]) for k in first)
    return bool(abs(first - second) <= 0.001 * max(abs(first), abs(second)))


def ps_mem_window(ours: Callable[[], int], pids: list[int]) -> tuple[int, dict[str, float]]:
    """``ours`` and ps_mem's totals for ``pids`` from one stillness window (support.kernel.bracketed)."""
    return bracketed(ours, lambda: ps_mem_totals(pids), "ps_mem", alike)


def within(ours: float, theirs: float, what: str) -> float:
    """The relative difference, asserted within 1% (the tools' rounding), and printed for the record."""
    diff = (theirs - ours) / ours
    print(f"{what}: mount {ours:.0f} kB, theirs {theirs:.1f} kB, {diff:+.3%}")
    assert abs(diff) <= 0.01, what
    return diff


def read_as(uid: int, *paths: Path) -> list[str]:
    """The files as one process of ``uid`` reads them, one after the other (the reader is counted too).

    A directory reads as its sorted names, one a line; a path that does not exist as "ENOENT".
    """
    code = (
        "import os, sys\n"
        "def one(p):\n"
        "    if not os.path.exists(p): return 'ENOENT'\n"
        "    return ''.join(n + '\\n' for n in sorted(os.listdir(p))) if os.path.isdir(p) else open(p).read()\n"
        "print('\\0'.join(map(one, sys.argv[1:])), end='')"
    )
    r = subprocess.run(
        [
            "setpriv",
            f"--reuid={uid}",
            f"--regid={uid}",
            "--clear-groups",
            "/usr/bin/python3",
            "-c",
            code,
            *map(str, paths),
        ],
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    return r.stdout.split("\0")


@pytest.fixture(scope="module")
def mount() -> Iterator[Mount]:
    """The cache, the duty and the walk budget off, so that every view reads the kernel afresh; every group exported."""
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-views21-"))
    d.chmod(0o755)
    m = Mount(d / "mnt", "--max-age", "0", "--duty", "1", "--walk-budget", "off", "--metrics-groups", "100000")
    yield m
    assert m.stop() == 0
    shutil.rmtree(d, ignore_errors=True)


# -- programs ---------------------------------------------------------------------------


@pytest.mark.parametrize("rename", ["", "Web Content"])
def test_a_forking_server_is_one_program(mount: Mount, interpreter: Path, rename: str) -> None:
    """Its children share 8 MiB with it; renamed or not, they are the program their executable is, as in ps_mem."""
    m = mount.path
    with groupload(interpreter, "--depth", "2", "--fanout", "3", "--shared", "8", "--rename", rename) as pids:
        kernel = lambda: [read_rollup(pid) for pid in pids]  # noqa: E731
        per_pid, ours = held(kernel, lambda: fields((m / "program" / PROGRAM / "totmaps").read_bytes()))
        per_pid_too, programs = held(kernel, lambda: (m / "programs").read_text())
        per_pid_tree, tree = held(kernel, lambda: fields((m / str(pids[0]) / "tree" / "totmaps").read_bytes()))
        summary, listing = (m / "summary").read_text(), sorted(os.listdir(m / "program"))
        pss, theirs = ps_mem_window(lambda: program_pss(m), pids)
    assert ours == add(per_pid)  # exactly the kernel's, field by field, in its order
    assert list(ours) == list(per_pid[0])
    assert tree == add(per_pid_tree)  # the server and its children: the program here, also a tree
    assert ours["Shared_Dirty"] >= 4 * 8 * 1024 - 256  # the four share 8 MiB
    rows = table(programs, "PROGRAM")
    expect_row(rows[PROGRAM], per_pid_too)
    assert PROGRAM in listing and "Web\\040Content" not in rows and "Web\\040Content" not in listing
    if rename:  # the summary still tells them apart by comm
        assert summary.count(" Web\\040Content\n") == 3
    assert list(theirs) == [PROGRAM]  # ps_mem too takes the children for their parent's program
    within(pss, theirs[PROGRAM], f"ps_mem {PROGRAM} (renamed {rename!r})")


def test_a_deleted_executable_is_named_by_comm_and_marked(mount: Mount, interpreter: Path) -> None:
    """An upgrade replaced the binary under a running process: its exe reads "... (deleted)"; comm stands in."""
    copy = interpreter.with_name("tmfs-deleted")
    shutil.copy2(interpreter, copy)
    p = subprocess.Popen(
        [str(copy), "-c", "import sys; print(flush=True); sys.stdin.read()"],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    try:
        assert p.stdout is not None and p.stdout.readline() == b"\n"
        copy.unlink()
        assert os.readlink(f"/proc/{p.pid}/exe").endswith("/tmfs-deleted (deleted)")
        rows = table((mount.path / "programs").read_text(), "PROGRAM")
        assert rows["comm:tmfs-deleted"]["PROCS"] == 1 and "tmfs-deleted" not in rows
        assert fields((mount.path / "program" / "comm:tmfs-deleted" / "totmaps").read_bytes())["Rss"] > 0
    finally:
        p.kill()
        p.wait(30)
        for f in (p.stdin, p.stdout):
            if f is not None:
                f.close()


def test_a_program_that_does_not_run_is_no_entry(mount: Mount) -> None:
    for path in ("program/no-such-program", "program/no-such-program/totmaps", "user/no-such-user/totmaps"):
        with pytest.raises(FileNotFoundError):
            (mount.path / path).read_bytes()


# -- trees ------------------------------------------------------------------------------


def test_a_tree_three_levels_deep(mount: Mount, interpreter: Path) -> None:
    """The first process's tree is all seven; a middle one's is itself and its two children; a leaf's is itself."""
    m = mount.path
    with groupload(interpreter, "--depth", "3", "--fanout", "2") as pids:
        parents = {pid: int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[1]) for pid in pids}
        middle = next(pid for pid in pids if parents[pid] == pids[0])
        kids = [pid for pid in pids if parents[pid] == middle]
        leaf = kids[0]
        kernel = lambda: {pid: read_rollup(pid) for pid in pids}  # noqa: E731
        per_pid, whole = held(kernel, lambda: fields((m / str(pids[0]) / "tree" / "totmaps").read_bytes()))
        mid_pids, mid = held(kernel, lambda: fields((m / str(middle) / "tree" / "totmaps").read_bytes()))
        leaf_pids, bottom = held(kernel, lambda: fields((m / str(leaf) / "tree" / "totmaps").read_bytes()))
        own = fields(mount.read(leaf))
        counts = (m / str(pids[0]) / "tree" / "processes").read_text()
        program_pids, program = held(kernel, lambda: fields((m / "program" / PROGRAM / "totmaps").read_bytes()))
        tree_pss = lambda: fields((m / str(pids[0]) / "tree" / "totmaps").read_bytes())["Pss"]  # noqa: E731
        pss, theirs = ps_mem_window(tree_pss, pids)
    assert len(pids) == 7 and len(kids) == 2
    assert whole == add(list(per_pid.values()))
    assert mid == add([mid_pids[middle], *(mid_pids[k] for k in kids)])
    assert bottom == leaf_pids[leaf]
    assert own.keys() == bottom.keys() and own["Rss"] == bottom["Rss"]
    assert counts == "summed 7\ndenied 0\nleft_out 0\n"
    assert program == add(list(program_pids.values()))  # all seven run it
    within(pss, theirs[PROGRAM], "ps_mem, a tree of 7")
    assert sorted(os.listdir(m / str(leaf) / "tree")) == ["processes", "totmaps"]
    assert "tree" in os.listdir(m / str(leaf))


# -- users ------------------------------------------------------------------------------


def test_users_agree_with_smem_and_read_as_themselves(mount: Mount, interpreter: Path) -> None:
    """Two users' subtrees: their sums, smem -u's, and what each of them may read of the whole tree."""
    m = mount.path
    uids = ",".join(map(str, USERS))
    with groupload(interpreter, "--depth", "3", "--fanout", "2", "--uids", uids) as pids:
        owner = {pid: os.stat(f"/proc/{pid}").st_uid for pid in pids}
        mine = {u: [pid for pid in pids if owner[pid] == u] for u in USERS}
        kernel = lambda: {pid: read_rollup(pid) for pid in pids}  # noqa: E731
        per_pid, users = held(kernel, lambda: (m / "users").read_text())
        first_pids, first = held(kernel, lambda: fields((m / "user" / str(USERS[0]) / "totmaps").read_bytes()))
        by_user, smem = bracketed(lambda: user_figures(m), smem_users, "smem -u", alike)
        pss, theirs = ps_mem_window(lambda: program_pss(m), pids)
        as_first = read_as(
            USERS[0],
            m / str(pids[0]) / "tree" / "processes",
            m / "users",
            m / "programs",
            m / "program",
            m / "user" / "root",
            m / "user" / str(USERS[1]),
            m / "program" / PROGRAM,
        )
        tree_as_first = read_as(USERS[0], m / str(pids[0]) / "tree" / "totmaps")[0]
    rows = table(users, "USER")
    for u in USERS:
        expect_row(rows[str(u)], [per_pid[pid] for pid in mine[u]])
        assert smem[str(u)]["count"] == 3
        within(by_user[u][0], smem[str(u)]["pss"], f"smem -u {u} PSS")
        within(by_user[u][1], smem[str(u)]["uss"], f"smem -u {u} USS")
    assert first == add([first_pids[pid] for pid in mine[USERS[0]]])
    within(pss, theirs[PROGRAM], "ps_mem, 7 processes of 3 users")
    assert sorted(os.listdir(m / "user"))  # root at least
    # The access rule: uid 50001 reads its own three, and the python reading; the rest is denied.
    assert as_first[0] == "summed 3\ndenied 4\nleft_out 0\n"
    assert set(table(as_first[1], "USER")) == {str(USERS[0])}
    assert table(as_first[2], "PROGRAM")[PROGRAM]["PROCS"] == 3
    # Names too follow the access rule: only the programs and users of processes it may read exist for it.
    assert as_first[3].split() == sorted(table(as_first[2], "PROGRAM"))
    assert as_first[4:] == ["ENOENT", "ENOENT", "totmaps\n"]
    assert fields(tree_as_first.encode())["Rss"] >= add([per_pid[pid] for pid in mine[USERS[0]]])["Rss"] - 64


# -- metrics ----------------------------------------------------------------------------


def test_metrics_have_program_and_user_families(mount: Mount, interpreter: Path) -> None:
    """The families against the kernel, on the fields no other process moves: anonymous and shmem pages."""
    steady = ("Rss", "Pss_Anon", "Pss_Shmem", "Anonymous", "Swap")

    def kernel() -> list[dict[str, int]]:
        return [{name: read_rollup(pid)[name] for name in steady} for pid in pids]

    wanted = {f"totmapsfs_{kind}_{snake(name)}_bytes" for kind in ("program", "user") for name in steady}

    def grouped(families: dict[str, list[Any]]) -> dict[str, float]:
        return {f"{s.name}{s.labels}": s.value for name in wanted for s in families[name]}

    with groupload(interpreter, "--depth", "2", "--fanout", "2", "--uids", str(USERS[1])) as pids:
        per_pid, families = held(kernel, lambda: metrics((mount.path / "metrics").read_text()), grouped)
    total = add(per_pid)
    for name in steady:
        program = {s.labels["program"]: s.value for s in families[f"totmapsfs_program_{snake(name)}_bytes"]}
        assert program[PROGRAM] == total[name] * 1024, name
        user = {s.labels["user"]: s.value for s in families[f"totmapsfs_user_{snake(name)}_bytes"]}
        assert user[str(USERS[1])] == add(per_pid[1:])[name] * 1024, name
    procs = {s.labels["program"]: s.value for s in families["totmapsfs_program_processes"]}
    assert procs[PROGRAM] == 3
    assert {s.labels["user"]: s.value for s in families["totmapsfs_user_processes"]}[str(USERS[1])] == 2
    assert all(
        "pid" not in s.labels
        for name in families
        if name.startswith(("totmapsfs_program", "totmapsfs_user"))
        for s in families[name]
    )


def test_metrics_groups_stay_within_their_documented_count(mount_factory, interpreter: Path) -> None:
    """(fields + 1) * (min(N, programs) + min(N, users)) series, here with N = 2 and fields Pss, USS."""
    m = mount_factory("--metrics-groups", "2", "--metrics-fields", "Pss,USS", "--metrics-top", "0")
    with groupload(interpreter, "--depth", "2", "--fanout", "2", "--uids", ",".join(map(str, USERS))):
        families = metrics((m.path / "metrics").read_text())
        programs, users = (len((m.path / name).read_text().splitlines()) - 1 for name in ("programs", "users"))
    series = sum(
        len(samples) for name, samples in families.items() if name.startswith(("totmapsfs_program", "totmapsfs_user"))
    )
    assert programs >= 2 and users >= 3
    assert series == (2 + 1) * (min(2, programs) + min(2, users)) == 12


# -- containers -------------------------------------------------------------------------


def test_a_container_sees_only_its_own_processes_in_every_group(mount: Mount) -> None:
    """An agent in its own pid namespace, with a workload: programs, users, its init's tree count only those."""
    agent = Agent("--unshare", "mount,pid", "--proc", "--marker", "16", label="pid namespace")
    try:
        agent.workload("w", "--marker", "4")
        m = mount.path
        got = agent.settled(
            parts=[["listdir", "/proc"]],
            whole=[
                ["read", str(m / "programs")],
                ["read", str(m / "users")],
                ["read", str(m / "1" / "tree" / "processes")],
            ],
        )
        inside = [n for n in value(got["parts"][0], "ls /proc") if n.isdigit()]
        programs, users, tree = (value(w, "read") for w in got["whole"])
        counted = sum(row["PROCS"] for row in table(programs, "PROGRAM").values())
        assert counted == len(inside) >= 2  # the agent (init, reading) and its workload
        assert [row["PROCS"] for row in table(users, "USER").values()] == [len(inside)]
        assert tree == f"summed {len(inside)}\ndenied 0\nleft_out 0\n"
        host = table((m / "programs").read_text(), "PROGRAM")
        assert sum(row["PROCS"] for row in host.values()) > counted
    finally:
        agent.close()
