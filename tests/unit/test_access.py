"""The access rule as pure logic: the kernel's ptrace-read decision over what /proc and nsfs show.

The namespaces are a small made-up tree (the real ones are exercised in
tests/mount/test_user_namespaces.py against the kernel's own answers):

    1  the initial user namespace (ours)
    2  child of 1, created by uid 1000 (a rootless container: root inside is 1000 outside)
    3  child of 1, created by uid 65534 (`unshare -U -r` as nobody)
    4  child of 2, created by kuid 100000
"""

from __future__ import annotations

import dataclasses
import os
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass

import pytest

from totmapsfs.proc import CAP_PERFMON, CAP_SYS_PTRACE, Access, Caller, ProcReader, Status, UserNs, capable

PTRACE, PERFMON, NET_BIND = 1 << CAP_SYS_PTRACE, 1 << CAP_PERFMON, 1 << 10
ALL = (1 << 41) - 1

NAMESPACES = {
    1: UserNs(1, 0, None, 0),
    2: UserNs(2, 1, 1, 1000),
    3: UserNs(3, 1, 1, 65534),
    4: UserNs(4, 2, 2, 100000),
}
ROOTS = {1: (0, 0), 2: (1000, 1000), 3: (65534, 65534), 4: (100000, 100000)}


@dataclass
class FakeTarget:
    """What Access asks of a process beyond its status: its namespace, its smaps owner, its root's ids."""

    ns: int
    owner: tuple[int, int] | None = None  # None: dumpable, so owned by its euid/egid

    def user_ns(self) -> int | None:
        return self.ns

    def open_user_ns(self) -> int:
        raise AssertionError("every namespace of these tests is known already")

    def smaps_owner(self) -> tuple[int, int]:
        assert self.owner is not None
        return self.owner

    def root_ids(self) -> tuple[int, int] | None:
        return ROOTS[self.ns]


class MadeUp:
    """The made-up tree as the rule's registry of user namespaces (what it asks of UserNamespaces), all known."""

    def get(self, inode: int | None) -> UserNs | None:
        return None if inode is None else NAMESPACES.get(inode)

    def learn(self, inode: int | None, opener: Callable[[], int]) -> UserNs | None:
        return self.get(inode)


@pytest.fixture
def access(tmp_path) -> Access:
    rule = Access(ProcReader(str(tmp_path)))  # an empty /proc: no namespace of its own
    rule.users, rule.own_user_ns = MadeUp(), 1  # type: ignore[assignment]  # the made-up tree, 1 ours
    return rule


def status(ids: int = 1000, tgid: int = 50, mm: bytes = b"VmSize: 1 kB", prm: int = 0, **kw: tuple) -> Status:
    fields = {"uids": (ids,) * 4, "gids": (ids,) * 4, **kw}
    return Status(name="t", tgid=tgid, cap_prm=prm, cap_eff=prm, mm_counters=mm, **fields)  # type: ignore[arg-type]


def caller(ids: int = 1000, ns: int = 1, eff: int = 0, tgid: int = 10, **kw: bool) -> Caller:
    return Caller(tgid=tgid, fsuid=ids, fsgid=ids, euid=ids, cap_eff=eff, user_ns=ns, **kw)


USER = caller()
CASES = [
    # (caller, target status, target, allowed): the kernel's answer, by the steps of docs/access.md ("The rule")
    (USER, status(), FakeTarget(1), True),  # own process, dumpable
    (USER, status(), FakeTarget(1, (0, 0)), False),  # own, not dumpable (owned by root)
    (USER, status(mm=b""), FakeTarget(1, (0, 0)), True),  # own zombie: no mm, no check
    (USER, status(ids=0, mm=b""), FakeTarget(1, (0, 0)), True),  # a kernel thread
    (USER, status(uids=(1000, 1000, 0, 1000)), FakeTarget(1), False),  # setuid: saved uid differs
    (USER, status(gids=(1000, 5, 1000, 1000)), FakeTarget(1), False),  # setgid
    (USER, status(ids=1001), FakeTarget(1), False),  # another user
    (USER, status(tgid=10, ids=0), FakeTarget(1, (0, 0)), True),  # our own thread group
    (USER, status(prm=NET_BIND), FakeTarget(1), False),  # own, holding a capability we lack
    (caller(eff=NET_BIND), status(prm=NET_BIND), FakeTarget(1), True),  # ...that we hold too
    (caller(ids=0), status(ids=0), FakeTarget(1, (0, 0)), False),  # root without capabilities
    (caller(ids=1001, eff=PTRACE, all_access=True), status(), FakeTarget(1, (0, 0)), True),
    (caller(ids=1001, perfmon=True, eff=PERFMON), status(), FakeTarget(1, (0, 0)), True),  # may_access_mm
    # user namespaces
    (USER, status(), FakeTarget(2), True),  # our rootless container's root: the owner rule
    (USER, status(ids=100005), FakeTarget(2), True),  # ...and another uid in it
    (caller(ids=1001), status(ids=1001), FakeTarget(2), False),  # same uid, a namespace we did not create
    (caller(ids=65534, ns=3, eff=ALL), status(ids=65534), FakeTarget(1), False),  # root of its own ns, host process
    (caller(ids=65534, ns=3, eff=ALL), status(ids=65534), FakeTarget(3), True),  # ...its own namespace's
    (caller(ids=100000, ns=4, eff=ALL), status(ids=100001), FakeTarget(4), True),  # ns root over another uid there
    (caller(ids=100000, ns=4), status(ids=100001), FakeTarget(4), False),  # ...without its capabilities
    # A nested namespace's root process, read by that root (taken as its own namespace's mm) ...
    (caller(ids=100000, ns=4, eff=ALL), status(ids=100000, prm=ALL), FakeTarget(4), True),
    # ... but certainly not dumpable, owned by that root while running as another uid: the mm may
    # be in ancestor 2, which maps root alike, so refused (the strictest reading) ...
    (caller(ids=100000, ns=4, eff=ALL), status(ids=100005), FakeTarget(4, (100000, 100000)), False),
    # ... while one level below ours the same owner can only come from that namespace itself:
    (caller(ids=1000, ns=2, eff=ALL), status(ids=100005), FakeTarget(2, (1000, 1000)), True),
    (caller(ids=1000, ns=2, eff=ALL), status(ids=100001), FakeTarget(4), True),  # nested: caps cover descendants
    (caller(ids=100000, ns=4, eff=ALL), status(ids=1000), FakeTarget(2), False),  # never upwards
    (caller(ids=1000, ns=2, eff=ALL), status(ids=1000), FakeTarget(1), False),  # container root, host process
    # not dumpable: exec'd in the child namespace (owner: that root), or left there without exec (owner: root)
    (USER, status(ids=1001), FakeTarget(2, (1000, 1000)), True),
    (USER, status(), FakeTarget(2, (0, 0)), False),
]


@pytest.mark.parametrize("who, target_status, target, allowed", CASES)
def test_may_read(access: Access, who: Caller, target_status: Status, target: FakeTarget, allowed: bool) -> None:
    if target.owner is None:  # dumpable: owned by its euid/egid (a copy: CASES are shared by every run)
        target = dataclasses.replace(target, owner=(target_status.uids[1], target_status.gids[1]))
    assert access.may_read(who, target_status, target) is allowed


def test_perfmon_needs_the_kernel_that_has_it(access: Access) -> None:
    assert access.may_read(caller(ids=1001, perfmon=True), status(), FakeTarget(1, (1000, 1000))) is True
    assert access.may_read(caller(ids=1001), status(), FakeTarget(1, (1000, 1000))) is False


@pytest.mark.parametrize(
    "ns, cred_ns, euid, eff, expected",
    [
        (1, 1, 0, PTRACE, True),  # own namespace: the effective set
        (1, 1, 0, 0, False),
        (2, 1, 1000, 0, True),  # a child we created: everything
        (4, 1, 1000, 0, True),  # ...and its descendants, whoever created them (the walk reaches 2)
        (4, 1, 1001, 0, False),  # another uid: the walk goes up to 2, then 1, where we hold nothing
        (4, 1, 1001, PTRACE, True),
        (3, 2, 0, ALL, False),  # a sibling: nothing
        (1, 2, 0, ALL, False),  # an ancestor: nothing
        (5, 1, 0, ALL, False),  # one we could not learn: nothing
    ],
)
def test_capable_walks_as_cap_capable(ns: int, cred_ns: int, euid: int, eff: int, expected: bool) -> None:
    assert capable(NAMESPACES, ns, cred_ns, euid, eff, CAP_SYS_PTRACE) is expected


def test_a_namespace_let_go_is_forgotten(tmp_path) -> None:
    """What is known of a user namespace holds only while it is held open: past ``keep`` the oldest goes (review).

    Real namespaces (unshare -U); with keep=2 the first of three is let go, so
    a new namespace that gets its inode can never inherit its ancestry.
    Skipped where this kernel or its settings let us make none.
    """
    from totmapsfs.proc import UserNamespaces

    tried = subprocess.run(["unshare", "-U", "true"], capture_output=True, text=True, timeout=30)
    if tried.returncode != 0:
        pytest.skip(f"user namespaces cannot be made here (unshare -U: {tried.stderr.strip()})")

    sleepers = [subprocess.Popen(["unshare", "-U", "sleep", "30"]) for _ in range(3)]
    try:
        users = UserNamespaces(keep=2)
        inodes = []
        for p in sleepers:
            deadline = time.monotonic() + 10
            while (inode := os.stat(f"/proc/{p.pid}/ns/user").st_ino) == os.stat("/proc/self/ns/user").st_ino:
                assert time.monotonic() < deadline, "unshare did not make a namespace"
                time.sleep(0.01)
            ns = users.learn(inode, lambda p=p: os.open(f"/proc/{p.pid}/ns/user", os.O_RDONLY))
            assert ns is not None and ns.inode == inode and ns.level == 1
            inodes.append(inode)
        assert users.get(inodes[0]) is None and users.get(inodes[2]) is not None
        assert len(users.known) == 2  # the initial namespace is theirs in common, let go as well
    finally:
        for p in sleepers:
            p.kill()
            p.wait()


def test_namespaces_held_stay_within_the_fd_limit(monkeypatch) -> None:
    import resource

    from totmapsfs.proc._access import held_limit

    monkeypatch.setattr(resource, "getrlimit", lambda _: (1024, 4096))
    assert held_limit() == 128  # two kinds: a quarter of the fds at most
    monkeypatch.setattr(resource, "getrlimit", lambda _: (65536, 65536))
    assert held_limit() == 1024
