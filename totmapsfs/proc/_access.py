"""The kernel's rule for who may read /proc/<pid>/smaps, restated over what /proc tells us."""

from __future__ import annotations

from typing import NamedTuple

from ..errors import AccessDenied
from ._reader import ProcReader
from ._text import Status


class Caller(NamedTuple):
    """Who is asking: the FUSE request's thread, with its filesystem uid/gid.

    FUSE hands us the caller's fsuid/fsgid (include/uapi/linux/fuse.h,
    fuse_in_header), which is what PTRACE_MODE_FSCREDS compares.
    """

    tgid: int
    uid: int
    gid: int
    has_ptrace_cap: bool
    cap_prm: int = 0


def identify(reader: ProcReader, tid: int, uid: int, gid: int, own_user_ns: int | None) -> Caller:
    """Build a Caller from a FUSE request context (tid, fsuid, fsgid).

    CAP_SYS_PTRACE counts only in our own (initial) user namespace: a "root" in
    a container's user namespace holds the capability there, not over the
    host's processes (ptrace_has_cap checks it against the target's namespace).
    A caller we cannot see (it exited, or lives outside our pid namespace)
    gets no capability. One read of its status, every request: the kernel
    decides with the opener's credentials of the moment, and so do we.
    """
    try:
        status, user_ns = reader.thread(tid)
    except Exception:
        return Caller(tgid=-1, uid=uid, gid=gid, has_ptrace_cap=False)
    cap = status.has_ptrace_cap and user_ns == own_user_ns
    return Caller(tgid=status.tgid, uid=uid, gid=gid, has_ptrace_cap=cap, cap_prm=status.cap_prm)


def may_read(caller: Caller, target: Status, owner_uid: int, owner_gid: int) -> bool:
    """__ptrace_may_access(task, PTRACE_MODE_READ_FSCREDS) from kernel/ptrace.c.

    Same thread group: yes. Otherwise the caller's fsuid must equal the
    target's real, effective and saved uid (gids likewise), or the caller holds
    CAP_SYS_PTRACE. The capability LSM adds one more condition
    (cap_ptrace_access_check in security/commoncap.c): without CAP_SYS_PTRACE,
    the target's permitted capabilities must be a subset of the caller's, so a
    user cannot read a same-uid process that holds file capabilities. Then a
    target that is not dumpable needs CAP_SYS_PTRACE too. /proc does not print
    the dumpable flag; it shows it through ownership:
    /proc/<pid> belongs to the euid/egid when dumpable and to root otherwise
    (task_dump_owner in fs/proc/base.c). For a target running as root:root the
    two cases look alike, so we assume "not dumpable" (deny, the safe side).

    A process with no address space (kernel thread, zombie) is readable by
    anyone, as in /proc: proc_mem_open (fs/proc/base.c) only calls
    mm_access's ptrace check when the task has an mm, so its smaps reads empty
    to every user. The engine then serves it empty without reading anything.
    """
    if caller.tgid == target.tgid or not target.mm_counters:
        return True
    same_ids = all(u == caller.uid for u in target.uids[:3]) and all(g == caller.gid for g in target.gids[:3])
    if caller.has_ptrace_cap:
        return True
    if not same_ids or target.cap_prm & ~caller.cap_prm:
        return False
    euid, egid = target.uids[1], target.gids[1]
    return (owner_uid, owner_gid) == (euid, egid) and (euid, egid) != (0, 0)


def check(caller: Caller, target: Status, owner_uid: int, owner_gid: int) -> None:
    if not may_read(caller, target, owner_uid, owner_gid):
        raise AccessDenied(f"caller {caller.tgid} (uid {caller.uid}) may not read {target.tgid}")
