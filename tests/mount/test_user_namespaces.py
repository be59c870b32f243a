"""User namespaces: who may read what follows the kernel across user namespaces, no more and no less.

For each caller and target below, the caller reads the target's
/proc/<pid>/smaps_rollup and MOUNT/<pid>/totmaps one right after the other,
as itself: the mount must answer what the kernel answered (ok with the same
numbers, or EACCES). All share the host's pid namespace, so a target is named
by its host pid in both. The kernel's rule (kernel/ptrace.c
__ptrace_may_access, security/commoncap.c cap_ptrace_access_check,
kernel/capability.c and cap_capable's walk up the namespaces): same uids and
gids, and then the "permitted capabilities are a subset" shortcut only within
one user namespace; else CAP_SYS_PTRACE in the target's user namespace, held
there, in an ancestor, or as the owner of a child namespace of the caller's.

The namespaces (made here; newuidmap is not needed: the test, root in the
initial namespace, writes the maps as newuidmap would):

    host            processes of uid 100000, nobody, 65533 and root
    R               a rootless namespace, 0-65535 -> 100000-165535, its root (kuid 100000) the caller "R"
      R-root        a process of uid 0 there (kuid 100000)       R-1000   one of uid 1000 (kuid 101000)
      U1000, U2000  callers of uid 1000 and 2000 there, without capabilities
      N             a namespace R made (0-65535 -> R's 0-65535): its root "N" (kuid 100000), N-3000 a process there
      N2            a namespace U1000 made with ``unshare -U -r`` (owner kuid 101000): its root "N2", N2-root
    B               nobody in a namespace of its own (``unshare -U -r`` as nobody), the issue's report;
                    being its owner, nobody on the host may read it (cap_capable's owner rule)
    HN              nobody on the host, no namespace
"""

from __future__ import annotations

import contextlib
import os
import pwd
import signal
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest

from support.kernel import NOBODY, OTHER_USER, fields
from support.namespaces import ROOTLESS_BASE, ROOTLESS_MAP, Agent, AgentError, Verdicts, answer, pid_names, value
from totmapsfs.harness import Mount, Workload, state, wait_for

IDENTITY = "0 0 65536\n"


def setpriv(uid: int) -> list[str]:
    return ["setpriv", f"--reuid={uid}", f"--regid={uid}", "--clear-groups"]


@dataclass
class Tree:
    callers: dict[str, Any]
    targets: dict[str, int]  # host pids


@pytest.fixture(scope="module")
def tree() -> Iterator[Tree]:
    with contextlib.ExitStack() as stack:
        host = {
            "host-100000": Workload(user=ROOTLESS_BASE),
            "host-nobody": Workload(user=NOBODY),
            "host-65533": Workload(user=OTHER_USER),
            "host-root": Workload(),
        }
        for w in host.values():
            stack.callback(w.close)
        rootless = {"uid_map": ROOTLESS_MAP, "gid_map": ROOTLESS_MAP}
        r = Agent("--unshare", "user", "--await-map", prefix=setpriv(ROOTLESS_BASE), label="R", **rootless)
        stack.callback(r.close)
        b = Agent(prefix=[*setpriv(NOBODY), "unshare", "-U", "-r"], label="B")
        stack.callback(b.close)
        hn = Agent(prefix=setpriv(NOBODY), label="HN")
        stack.callback(hn.close)
        targets = {name: w.pid for name, w in host.items()}
        targets["B"] = b.pid
        targets["R-root"] = r.workload("r-root")
        targets["R-1000"] = r.workload("r-1000", user=1000)
        u1000 = r.agent("u1000", prefix=setpriv(1000))
        u2000 = r.agent("u2000", prefix=setpriv(2000))
        n = r.agent("n", "--unshare", "user", "--await-map", uid_map=IDENTITY, gid_map=IDENTITY)
        targets["N-3000"] = n.workload("n-3000", user=3000)
        n2 = u1000.agent("n2", prefix=["unshare", "-U", "-r"])
        targets["N2-root"] = n2.workload("n2-root")
        callers = {"R": r, "U1000": u1000, "U2000": u2000, "N": n, "N2": n2, "B": b, "HN": hn}
        check_the_set_up(callers, targets)
        yield Tree(callers, targets)


def check_the_set_up(callers: dict[str, Any], targets: dict[str, int]) -> None:
    """Each process is who the docstring says, as the host sees it (kuids) and as it sees itself."""
    kuids = {name: host_uid(pid) for name, pid in targets.items()}
    kuids.update({name: host_uid(agent.pid) for name, agent in callers.items()})
    expected = {
        "host-100000": 100000, "host-nobody": NOBODY, "host-65533": OTHER_USER, "host-root": 0,
        "R-root": 100000, "R-1000": 101000, "N-3000": 103000, "N2-root": 101000,
        "R": 100000, "U1000": 101000, "U2000": 102000, "N": 100000, "N2": 101000, "B": NOBODY, "HN": NOBODY,
    }  # fmt: skip
    if kuids != expected:
        raise AgentError(f"set-up: the host sees these uids: {kuids}")
    own = os.readlink("/proc/self/ns/user")
    ns = {name: agent.info["ns"]["user"] for name, agent in callers.items()}
    assert ns["HN"] == own and len({ns["R"], ns["U1000"], ns["U2000"]}) == 1 and ns["R"] != own, ns
    assert len({own, ns["R"], ns["N"], ns["N2"], ns["B"]}) == 5, ns
    assert callers["R"].info["uids"] == [0, 0, 0] and callers["N2"].info["uids"] == [0, 0, 0]


def host_uid(pid: int) -> int:
    status = Path(f"/proc/{pid}/status").read_text()
    return int(next(line.split()[1] for line in status.splitlines() if line.startswith("Uid:")))


@contextlib.contextmanager
def stopped(pid: int) -> Iterator[None]:
    os.kill(pid, signal.SIGSTOP)
    try:
        wait_for(lambda: state(pid) == "T", what=f"{pid} to stop")
        yield
    finally:
        os.kill(pid, signal.SIGCONT)


# (caller, target, what the kernel answers): the kernel's answer is checked, then the mount's against it.
CASES = {
    "own-process-rootless-root": ("R", "self", "ok"),
    "own-process-nobody-in-its-own-userns": ("B", "self", "ok"),
    "own-process-nested-root": ("N", "self", "ok"),
    # Too open today: the uids match, but the subset shortcut holds within one namespace only.
    "same-uid-host-process-by-nobody-in-its-own-userns": ("B", "host-nobody", "EACCES"),
    "same-uid-host-process-by-rootless-root": ("R", "host-100000", "EACCES"),
    "same-uid-host-process-by-nobody-on-the-host": ("HN", "host-nobody", "ok"),
    "other-uid-host-process": ("R", "host-65533", "EACCES"),
    "host-root-process-by-rootless-root": ("R", "host-root", "EACCES"),
    # Too closed today: CAP_SYS_PTRACE over its own namespace reads every uid there.
    "rootless-root-over-its-uid-0-process": ("R", "R-root", "ok"),
    "rootless-root-over-its-uid-1000-process": ("R", "R-1000", "ok"),
    "same-uid-in-the-namespace": ("U1000", "R-1000", "ok"),
    "other-uid-in-the-namespace": ("U2000", "R-1000", "EACCES"),
    "capless-uid-over-the-namespace-root-process": ("U1000", "R-root", "EACCES"),
    # Nested namespaces.
    "nested-root-over-parent-process-of-its-own-kuid": ("N", "R-root", "EACCES"),
    "nested-root-over-its-uid-3000-process": ("N", "N-3000", "ok"),
    "parent-root-over-a-nested-namespace-process": ("R", "N-3000", "ok"),
    "capless-uid-over-a-nested-namespace-it-does-not-own": ("U1000", "N-3000", "EACCES"),
    "owner-of-a-nested-namespace-over-its-root-process": ("U1000", "N2-root", "ok"),
    "non-owner-over-a-nested-namespace-root-process": ("U2000", "N2-root", "EACCES"),
    "nested-root-over-parent-process-of-its-owner": ("N2", "R-1000", "EACCES"),
    "nested-root-over-host-process-of-its-kuid": ("N", "host-100000", "EACCES"),
    # The owner of a namespace (its creator's euid, in the parent) holds every capability in it.
    "owner-on-the-host-over-the-root-of-its-namespace": ("HN", "B", "ok"),
}


@pytest.mark.parametrize("case", list(CASES))
def test_a_read_is_allowed_exactly_when_the_kernel_allows_it(exact_mount: Mount, tree: Tree, case: str) -> None:
    caller_name, target, expected = CASES[case]
    caller, m, expect = tree.callers[caller_name], exact_mount.path, Verdicts()
    if target == "self":
        kernel, ours = caller.run(["read", "/proc/self/smaps_rollup"], ["read", str(m / "self" / "totmaps")])
        what = f"{caller_name} reading its own MOUNT/self/totmaps"
    else:
        pid = tree.targets[target]
        with stopped(pid):
            got = caller.settled(
                parts=[["read", f"/proc/{pid}/smaps_rollup"]], whole=[["read", str(m / str(pid) / "totmaps")]]
            )
        kernel, ours = got["parts"][0], got["whole"][0]
        what = f"{caller_name} reading MOUNT/{pid}/totmaps ({target})"
    if answer(kernel) != expected:
        raise AgentError(f"set-up: {what}: the kernel answered {answer(kernel)}, the test expected {expected}")
    if expect.same(answer(ours), answer(kernel), what) and expected == "ok":
        kernel_fields, our_fields = fields(kernel["ok"].encode()), fields(ours["ok"].encode())
        if target == "self":  # it runs as it reads: the same fields, not the same numbers
            expect.same(list(our_fields), list(kernel_fields), f"{what}: the fields")
        else:
            expect.same(our_fields, kernel_fields, f"{what}: the numbers")
    expect.done()


@pytest.mark.parametrize("caller_name", ["B", "R", "N", "U1000", "HN"])
def test_summary_lists_what_the_caller_may_read(exact_mount: Mount, tree: Tree, caller_name: str) -> None:
    """Views count what the caller may read: its summary's pids are those whose smaps_rollup it can read."""
    caller, expect = tree.callers[caller_name], Verdicts()
    before = sorted(pid_names(value(caller.one("listdir", "/proc"))))
    got = caller.run(
        *(["read", f"/proc/{pid}/smaps_rollup"] for pid in before),
        ["read", str(exact_mount.path / "summary")],
        ["listdir", "/proc"],
    )
    *rollups, summary, after = got
    alive = set(before) & pid_names(value(after))
    # A process without memory (kernel thread, zombie) reads empty or ESRCH, and is left out of views.
    readable = {
        pid for pid, r in zip(before, rollups, strict=True) if pid in alive and fields(r.get("ok", "").encode())
    }
    refused = {pid for pid, r in zip(before, rollups, strict=True) if pid in alive and answer(r) == "EACCES"}
    mine = {tree.targets[t] for c, t, ok in CASES.values() if c == caller_name and ok == "ok" and t != "self"}
    assert mine <= readable and caller.pid in readable, f"set-up: {caller_name} cannot read {sorted(mine - readable)}"
    if expect.that("ok" in summary, f"{caller_name} reads MOUNT/summary: {answer(summary)}"):
        rows = pid_names(line.split()[0] for line in summary["ok"].splitlines()[1:]) & alive
        expect.that(not rows & refused, f"{caller_name}'s summary lists pids it may not read: {sorted(rows & refused)}")
        expect.that(readable <= rows, f"{caller_name}'s summary lacks pids it may read: {sorted(readable - rows)}")
        # USER is the euid as the caller's own /proc/<pid>/status prints it: a number in its
        # namespace (our account names are not its), a name beside the daemon.
        users = {int(line.split()[0]): line.split()[1] for line in summary["ok"].splitlines()[1:]}
        shown = sorted(readable & set(users))
        statuses = caller.run(*(["read", f"/proc/{pid}/status"] for pid in shown))
        for pid, status in zip(shown, statuses, strict=True):
            if "ok" not in status:
                continue  # exited meanwhile
            euid = int(next(line for line in status["ok"].splitlines() if line.startswith("Uid:")).split()[2])
            want = pwd.getpwuid(euid).pw_name if caller_name == "HN" else str(euid)
            expect.same(users[pid], want, f"{caller_name}'s summary USER of pid {pid} (its /proc's euid {euid})")
    expect.done()


@pytest.mark.parametrize("caller_name", ["R", "N", "N2", "B"])
def test_owners_show_as_in_the_callers_proc(exact_mount: Mount, tree: Tree, caller_name: str) -> None:
    """stat of MOUNT/<pid> and its totmaps give the owners the caller's /proc gives, mapped into its namespace."""
    caller, m, expect = tree.callers[caller_name], exact_mount.path, Verdicts()
    for target, pid in tree.targets.items():
        got = caller.run(
            ["stat", f"/proc/{pid}"],
            ["stat", f"/proc/{pid}/smaps"],
            ["stat", str(m / str(pid))],
            ["stat", str(m / str(pid) / "totmaps")],
        )
        kernel = [(value(r)["uid"], value(r)["gid"]) for r in got[:2]]
        ours = [(r["ok"]["uid"], r["ok"]["gid"]) if "ok" in r else answer(r) for r in got[2:]]
        expect.same(ours, kernel, f"{caller_name}'s stat of MOUNT/{pid} and its totmaps ({target}): (uid, gid)")
    own = caller.run(["stat", f"/proc/{tree.targets['host-root']}"], ["stat", f"/proc/{caller.pid}"])
    if caller_name != "B" and own[0]["ok"]["uid"] != 65534:  # unmapped ids show as the overflow id
        raise AgentError(f"set-up: {caller_name} sees host root's process owned by {own[0]}")
    expect.done()
