"""The access rule as pure logic: the kernel's ptrace-read decision over the fields /proc shows."""

from __future__ import annotations

import pytest

from totmapsfs.proc import Caller, Status, may_read


def status(uids=(1000,) * 4, gids=(1000,) * 4, tgid=50, mm=b"VmSize: 1 kB", prm=0) -> Status:
    return Status(name="t", tgid=tgid, uids=uids, gids=gids, cap_prm=prm, cap_eff=prm, mm_counters=mm)


USER = Caller(tgid=10, uid=1000, gid=1000, has_ptrace_cap=False)
ADMIN = Caller(tgid=11, uid=0, gid=0, has_ptrace_cap=True)


@pytest.mark.parametrize(
    "caller, target, owner, allowed",
    [
        (USER, status(), (1000, 1000), True),  # own, dumpable
        (USER, status(), (0, 0), False),  # own, not dumpable
        (USER, status(mm=b""), (1000, 1000), True),  # own zombie: no mm, no dumpable check
        (USER, status(uids=(0,) * 4, mm=b""), (0, 0), True),  # root's kernel thread: no mm, no check
        (USER, status(uids=(1000, 1000, 0, 1000)), (1000, 1000), False),  # setuid: saved uid differs
        (USER, status(gids=(1000, 5, 1000, 1000)), (1000, 1000), False),  # setgid
        (USER, status(uids=(1001,) * 4), (1001, 1000), False),  # another user
        (USER, status(prm=1 << 21), (1000, 1000), False),  # own, but holds capabilities we lack
        (USER, status(tgid=10, uids=(0,) * 4), (0, 0), True),  # our own thread group, whatever its ids
        (ADMIN, status(uids=(1001,) * 4), (0, 0), True),  # CAP_SYS_PTRACE reads anything
        (Caller(12, 0, 0, False), status(uids=(0,) * 4, gids=(0,) * 4), (0, 0), False),  # capless root
    ],
)
def test_may_read(caller: Caller, target: Status, owner: tuple[int, int], allowed: bool) -> None:
    assert may_read(caller, target, *owner) is allowed
