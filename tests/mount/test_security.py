"""Security through a real mount: names that are not pids, mutations, what a caller learns, the daemon's rights."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
from pathlib import Path

from support.kernel import NOBODY, OTHER_USER, fields
from totmapsfs.harness import Mount, as_user
from totmapsfs.service import mount_at

CAP_SYS_PTRACE, CAP_SYS_ADMIN = 19, 21

# Run as the unprivileged caller: the outcome of each path, "ok", "empty" or an errno name.
PROBE = r"""
import errno, json, os, sys
def outcome(path):
    try:
        with open(path, "rb") as f:
            return "ok" if f.read() else "empty"
    except OSError as exc:
        return errno.errorcode[exc.errno]
def stat_outcome(path):
    try:
        st = os.stat(path)
        return [st.st_uid, st.st_gid]
    except OSError as exc:
        return errno.errorcode[exc.errno]
job = json.loads(sys.argv[1])
print(json.dumps({key: [outcome(p) if job["how"] == "read" else stat_outcome(p) for p in paths]
                  for key, paths in job["paths"].items()}))
"""


def probe(uid: int, how: str, paths: dict[str, list[str]]) -> dict[str, list]:
    job = json.dumps({"how": how, "paths": paths})
    out = subprocess.run(
        as_user(uid, [sys.executable, "-c", PROBE, job]), capture_output=True, text=True, timeout=120, check=True
    )
    return json.loads(out.stdout)


def test_names_that_are_not_pids_fail_as_in_proc(exact_mount: Mount) -> None:
    names = [
        "0",
        "-1",
        "+1",
        "01",
        " 1",
        "1x",
        "1.0",
        "0x10",
        "4294967296",
        "99999999999999999999",
        "self2",
        "totmaps2",
        "\N{DIGIT ONE}\N{COMBINING ACUTE ACCENT}",
        "9" * 255,
        "9" * 300,
    ]
    got = probe(NOBODY, "stat", {n: [f"/proc/{n}", str(exact_mount.path / n)] for n in names})
    for name, (in_proc, ours) in got.items():
        # procfs answers ENOENT even past NAME_MAX; we say ENAMETOOLONG there,
        # as most filesystems do and as our statfs's f_namemax (255) promises.
        assert ours == (in_proc if len(name.encode()) <= 255 else "ENAMETOOLONG"), name
        assert in_proc == "ENOENT", name


def test_a_caller_learns_what_proc_would_tell_it_and_no_more(exact_mount: Mount, workloads) -> None:
    """For every process on the host, nobody's read through the mount fails or succeeds as /proc's does."""
    own, other = workloads(user=NOBODY), workloads(user=OTHER_USER)
    pids = sorted(int(n) for n in os.listdir("/proc") if n.isdigit())
    paths = {str(p): [f"/proc/{p}/smaps_rollup", str(exact_mount.file(p))] for p in pids}
    reads = probe(NOBODY, "read", paths)
    owners = probe(NOBODY, "stat", {str(p): [f"/proc/{p}", str(exact_mount.path / str(p))] for p in pids})
    alive = {int(n) for n in os.listdir("/proc") if n.isdigit()}
    compared = 0
    for pid in pids:
        if pid not in alive:
            continue  # it left during the probe: either answer is right
        in_proc, ours = reads[str(pid)]
        # A process without memory (kernel thread, zombie): the kernel's rollup
        # says ESRCH, its smaps is empty, and so is our file. Nothing is revealed:
        # /proc/<pid>/smaps is empty to everyone.
        if in_proc == "ESRCH":
            assert ours == "empty" and Path(f"/proc/{pid}/smaps").read_bytes() == b"", pid
        else:
            assert ours == in_proc, (pid, in_proc, ours)
        assert owners[str(pid)][0] == owners[str(pid)][1], pid
        compared += 1
    assert reads[str(own.pid)] == ["ok", "ok"]
    assert reads[str(other.pid)] == ["EACCES", "EACCES"]
    assert reads["1"][1] == "EACCES"
    assert compared > 20


def test_every_mutation_is_refused_to_root_and_to_nobody(exact_mount: Mount) -> None:
    m = exact_mount.path
    f = exact_mount.file(os.getpid())
    script = r"""
import errno, os, sys
m, f = sys.argv[1], sys.argv[2]
attempts = {
    "open_w": lambda: os.open(f, os.O_WRONLY), "open_rw": lambda: os.open(f, os.O_RDWR),
    "open_append": lambda: os.open(f, os.O_WRONLY | os.O_APPEND),
    "open_trunc": lambda: os.open(f, os.O_RDONLY | os.O_TRUNC),
    "create": lambda: os.open(m + "/new", os.O_CREAT | os.O_WRONLY, 0o644),
    "mkdir": lambda: os.mkdir(m + "/d"), "mknod": lambda: os.mknod(m + "/n"),
    "unlink": lambda: os.unlink(f), "rmdir": lambda: os.rmdir(os.path.dirname(f)),
    "rename": lambda: os.rename(f, f + "2"), "link": lambda: os.link(f, m + "/l"),
    "symlink": lambda: os.symlink("x", m + "/s"), "chmod": lambda: os.chmod(f, 0o777),
    "chown": lambda: os.chown(f, 1, 1), "utime": lambda: os.utime(f, (0, 0)),
    "truncate": lambda: os.truncate(f, 0), "setxattr": lambda: os.setxattr(f, "user.x", b"1"),
    "removexattr": lambda: os.removexattr(f, "user.x"),
}
for name, attempt in attempts.items():
    try:
        attempt()
        print(name, "ALLOWED")
    except OSError as exc:
        print(name, errno.errorcode[exc.errno])
"""
    for argv in (
        [sys.executable, "-c", script, str(m), str(f)],
        as_user(NOBODY, [sys.executable, "-c", script, str(m), str(f)]),
    ):
        out = subprocess.run(argv, capture_output=True, text=True, timeout=60, check=True).stdout.split("\n")
        results = dict(line.split() for line in out if line)
        assert len(results) == 18
        refused = {"EROFS", "EACCES", "EPERM", "ENODATA", "EOPNOTSUPP"}
        assert all(r in refused for r in results.values()), results
    assert fields(exact_mount.read(os.getpid()))["Rss"] > 0  # and nothing changed


def _status(task: Path) -> dict[str, str]:
    return dict(line.split(":\t", 1) for line in task.joinpath("status").read_text().splitlines() if ":\t" in line)


def test_daemon_keeps_only_ptrace_and_the_right_to_unmount(mount_factory, workloads) -> None:
    m = mount_factory()
    other = workloads(user=OTHER_USER)
    assert fields(m.read(other.pid))["Rss"] > 0  # another user's process: CAP_SYS_PTRACE is enough
    assert str(other.pid) in (m.path / "summary").read_text().split()  # the views, too
    tasks = list(Path(f"/proc/{m.proc.pid}/task").iterdir())
    assert len(tasks) >= 2  # worker threads exist, and hold the reduced sets too
    for task in tasks:
        st = _status(task)
        assert int(st["CapEff"], 16) == 1 << CAP_SYS_PTRACE, task
        assert int(st["CapPrm"], 16) == int(st["CapBnd"], 16) == 1 << CAP_SYS_PTRACE | 1 << CAP_SYS_ADMIN, task
        assert int(st["CapInh"], 16) == int(st["CapAmb"], 16) == 0, task
        assert st["NoNewPrivs"].strip() == "1", task
    m.proc.send_signal(signal.SIGTERM)
    assert m.proc.wait(15) == 0
    assert mount_at(str(m.path)) is None, "CAP_SYS_ADMIN was not regained for the unmount"
    assert "could not" not in m.log_text()
