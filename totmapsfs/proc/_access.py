"""Who may read a process's smaps: the kernel's rule, restated over what /proc and nsfs show us.

The kernel decides at open(/proc/<pid>/smaps_rollup): proc_mem_open ->
mm_access -> may_access_mm (kernel/fork.c), which allows a caller that shares
the mm, passes ptrace_may_access(PTRACE_MODE_READ_FSCREDS) (kernel/ptrace.c,
__ptrace_may_access, then every LSM: security/commoncap.c,
cap_ptrace_access_check) or, since Linux 6.15, is perfmon_capable (CAP_PERFMON
or CAP_SYS_ADMIN in the initial user namespace). ``Access.may_read`` walks the
same steps in the same order; ``capable`` (in _userns) is cap_capable of
security/commoncap.c, which every "has CAP_SYS_PTRACE over namespace N"
below means. What we cannot see we do not grant: Landlock and BPF-LSM
policies only the kernel knows, so the mount may allow a read the kernel
would refuse a Landlocked caller (docs/access.md, "Known gaps").
"""

from __future__ import annotations

import os
import resource
from collections.abc import Callable
from typing import NamedTuple, Protocol

from ..errors import AccessDenied, NoSuchEntry
from ._cgroupns import CAP_SYS_ADMIN, CgroupRoots
from ._errnos import ns_inode, unless_gone
from ._nsfs import KEEP
from ._pidns import PidNamespaces, PidView
from ._reader import ProcReader, read_at
from ._text import CAP_SYS_PTRACE, Status
from ._userns import UserNamespaces, capable

CAP_PERFMON = 38  # include/uapi/linux/capability.h
# may_access_mm's perfmon_capable() bypass (kernel/fork.c) came with Linux 6.15.
PERFMON_SINCE = (6, 15)
_PERFMON_CAPS = 1 << CAP_PERFMON | 1 << CAP_SYS_ADMIN
_new = tuple.__new__
OVERFLOW_UID = 65534  # what the kernel prints for an id its reader's namespace does not map


class Caller(NamedTuple):
    """Who is asking: the thread of a FUSE request, as the kernel would judge it.

    FUSE hands us the caller's fsuid/fsgid (include/uapi/linux/fuse.h,
    fuse_in_header), which is what PTRACE_MODE_FSCREDS compares; the rest is
    read from its status and its ns files, once per request: the kernel
    decides with the opener's credentials of the moment, and so do we.
    """

    tgid: int  # its thread group, as our procfs numbers it; -1: not visible to us
    fsuid: int  # what FUSE hands us and FSCREDS compares (fuse_in_header's "uid")
    fsgid: int
    euid: int = -1  # what cap_capable's owner rule compares
    cap_eff: int = 0  # FSCREDS checks compare the effective set (cap_ptrace_access_check)
    user_ns: int | None = None  # inode of its user namespace
    all_access: bool = False  # CAP_SYS_PTRACE over our own user namespace, which holds all we see
    perfmon: bool = False  # may_access_mm's perfmon_capable()
    pids: PidView | None = None  # its pid namespace; None: one we cannot tell (it sees no process)
    ns_tgid: int = -1  # its thread group id as its own namespace numbers it (MOUNT/self)
    ns_tid: int = -1  # its thread id there (MOUNT/thread-self)
    tid: int = -1  # its thread id as we number it

    # The caller owns its pid namespace's fd (PidView) for its one request:
    # ``with access.identify(...) as caller:`` closes it at the end.
    def __enter__(self) -> Caller:
        return self

    def __exit__(self, *exc: object) -> None:
        if self.pids is not None:
            self.pids.close()


class Target(Protocol):
    """What the rule may have to ask of a target beyond its status, asked lazily (proc.Process)."""

    def user_ns(self) -> int | None: ...  # inode of its user namespace (None: cannot be told)
    def open_user_ns(self) -> int: ...  # an fd of that namespace (OSError when gone)
    def smaps_owner(self) -> tuple[int, int]: ...  # the owner of its smaps (task_dump_owner)
    def root_ids(self) -> tuple[int, int] | None: ...  # our ids of its namespace's root (uid_map, gid_map)


class Access:
    """The namespaces of this procfs, and the rule judged over them; one per ProcReader."""

    def __init__(self, reader: ProcReader) -> None:
        self.reader = reader
        rootfd = reader.root_fd()
        self.pids = PidNamespaces(rootfd, ns_inode(rootfd, "self/ns/pid"))
        self.users = UserNamespaces(held_limit())
        self.own_user_ns = ns_inode(rootfd, "self/ns/user")
        self.users.pin(lambda: os.open("self/ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=rootfd))
        self.initial = _is_initial(rootfd)  # our user namespace is the initial one
        self.perfmon_rule = self.initial and _kernel() >= PERFMON_SINCE
        self.cgroups = CgroupRoots(reader, held_limit())

    def identify(self, tid: int, fsuid: int, fsgid: int) -> Caller:
        """The Caller of a request from thread ``tid`` with fsuid ``fsuid`` and fsgid ``fsgid``.

        A caller we cannot see (it exited, or lives in a pid namespace above
        ours) gets no capability and sees no process. Any other failure to
        read it (EMFILE, EIO) is the request's error, not "not visible".
        """
        try:
            status, user_ns = self.reader.thread(tid)
        except NoSuchEntry:
            return Caller(tgid=-1, fsuid=fsuid, fsgid=fsgid)
        if user_ns is not None and user_ns != self.own_user_ns and user_ns not in self.users.known:
            rootfd = self.reader.root_fd()
            self.users.learn(user_ns, lambda: os.open(f"{tid}/ns/user", os.O_RDONLY | os.O_CLOEXEC, dir_fd=rootfd))
        ours = user_ns is not None and user_ns == self.own_user_ns
        cap_eff, ns_tgids, ns_pids = status.cap_eff, status.ns_tgids, status.ns_pids
        # Built as a plain tuple: this runs for every open, and keyword
        # construction of this NamedTuple was a tenth of a cached read's time
        # in the daemon (py-spy); tuple.__new__ skips its Python-level __new__.
        return _new(
            Caller,
            (
                status.tgid,
                fsuid,
                fsgid,
                status.uids[1],
                cap_eff,
                user_ns,
                # Only where our namespace is the initial one does it hold every
                # namespace we can see (a daemon in a container may see tasks whose
                # mm belongs above it): elsewhere the rule is walked in full.
                ours and self.initial and bool(cap_eff >> CAP_SYS_PTRACE & 1),
                ours and self.perfmon_rule and bool(cap_eff & _PERFMON_CAPS),
                self.pids.own if len(ns_pids) <= 1 else self.pids.view(tid, ns_pids, status.tgid, ns_tgids),
                ns_tgids[-1] if ns_tgids else status.tgid,
                ns_pids[-1] if ns_pids else tid,
                tid,
            ),
        )

    def uids_for(self, caller: Caller) -> Callable[[int], int] | None:
        """How the caller's user namespace numbers our uids (its uid_map); None when it numbers them as we do.

        /proc/<pid>/status prints ids in the reader's namespace, unmapped ones
        as the overflow uid (65534): so do the views for such a caller. A map
        is written once (user_namespaces(7)), so it is read once per namespace.
        """
        ns = caller.user_ns
        if ns is None or ns == self.own_user_ns or caller.tid < 0:
            return None
        rootfd = self.reader.root_fd()
        extents = self.users.uid_map(ns, lambda: read_at(rootfd, f"{caller.tid}/uid_map", False))

        def inside(uid: int, extents: tuple[tuple[int, int, int], ...] = extents) -> int:
            for first, lower, count in extents:
                if lower <= uid < lower + count:
                    return first + uid - lower
            return OVERFLOW_UID

        return inside

    def capable(self, caller: Caller, ns: int | None, cap: int = CAP_SYS_PTRACE) -> bool:
        return capable(self.users, ns, caller.user_ns, caller.euid, caller.cap_eff, cap)

    def may_read(self, caller: Caller, status: Status, target: Target) -> bool:
        """Whether open(/proc/<pid>/smaps) by ``caller`` would succeed, for a target whose status is ``status``.

        A process with no address space (kernel thread, zombie) is readable by
        anyone: proc_mem_open only calls mm_access's check when the task has
        an mm, so its smaps reads empty to every user. The engine then serves
        it empty without reading anything.
        """
        if caller.tgid == status.tgid or not status.mm_counters or caller.all_access:
            return True
        return self._ptrace_may_access(caller, status, target) or caller.perfmon

    def _ptrace_may_access(self, caller: Caller, status: Status, target: Target) -> bool:
        """__ptrace_may_access then cap_ptrace_access_check, in the kernel's order."""
        ns = target.user_ns()
        if ns is not None:
            self.users.learn(ns, target.open_user_ns)
        # FSCREDS: the caller's fsuid/fsgid must equal all of the target's
        # real, effective and saved ids, else CAP_SYS_PTRACE over its namespace.
        same_ids = all(u == caller.fsuid for u in status.uids[:3]) and all(g == caller.fsgid for g in status.gids[:3])
        if not same_ids and not self.capable(caller, ns):
            return False
        # Not dumpable: CAP_SYS_PTRACE over mm->user_ns needed as well.
        dumpable, mm_ns = self._dumpable(status, target, ns)
        if not dumpable and (mm_ns is None or not self.capable(caller, mm_ns)):
            return False
        # commoncap: within one user namespace, a target whose permitted set
        # is within the caller's effective set; else CAP_SYS_PTRACE over it.
        if caller.user_ns is not None and caller.user_ns == ns and not status.cap_prm & ~caller.cap_eff:
            return True
        return self.capable(caller, ns)

    def _dumpable(self, status: Status, target: Target, ns: int | None) -> tuple[bool, int | None]:
        """Whether the target is dumpable, and if not the namespace of its mm (None: the initial one, or unknown).

        /proc prints no dumpable flag; it shows it through ownership
        (task_dump_owner in fs/proc/base.c): files inside /proc/<pid> belong to
        the euid/egid when dumpable, and to the root of mm->user_ns otherwise
        (make_kuid(mm->user_ns, 0), global root when unmapped). mm->user_ns is
        the namespace the program was exec'd in; a task that unshared a user
        namespace since, or whose binary was unreadable (would_dump in
        fs/exec.c), has an ancestor's. So when the owner is the root of the
        target's namespace, an ancestor mapping its root to the same ids reads
        alike: we take the highest such candidate that can be told, the one
        just below our own namespace (the strictest), and the initial namespace
        for any other owner. A target running as that root itself reads alike
        dumpable or not: taken as not dumpable. The safe side each time: a read
        the kernel would allow may be refused, never the other way round.
        """
        owner = target.smaps_owner()
        ids = (status.uids[1], status.gids[1])
        own_root = (0, 0) if ns is not None and ns == self.own_user_ns else None  # our namespace's root is our 0
        if owner != ids:
            root = own_root or target.root_ids()
            return False, self._outermost(ns) if root is not None and owner == root else None
        if ids == (0, 0):
            return False, None
        root = own_root or target.root_ids()
        if root is not None and ids == root:
            # Dumpable, or not with the owner its namespace's root gives: the
            # usual case is a container's root process, dumpable, so here the
            # candidate is the target's own namespace (docs/access.md, "Known
            # gaps": the one reading this lets through that the kernel refuses).
            return False, ns
        return True, None

    def _outermost(self, ns: int | None) -> int | None:
        """The ancestor of ``ns`` just below our own namespace (``ns`` itself if it is ours or a child of ours)."""
        node = self.users.get(ns)
        while node is not None and node.parent is not None and node.parent != self.own_user_ns:
            up = self.users.get(node.parent)
            if up is None:
                return None  # an ancestor we no longer know: the strictest, as for the initial namespace
            node = up
        return ns if node is None else node.inode

    def check(self, caller: Caller, status: Status, target: Target) -> None:
        if not self.may_read(caller, status, target):
            raise AccessDenied(f"caller {caller.tgid} (fsuid {caller.fsuid}) may not read {status.tgid}")


def held_limit() -> int:
    """How many namespaces of a kind may be held open: KEEP, or an eighth of our fd limit if that is less.

    Two kinds are held (user namespaces, cgroup namespaces): a quarter of the
    fds at most, so that no number of namespaces callers make can run the
    daemon out of fds (EMFILE would fail every read).
    """
    soft, _ = resource.getrlimit(resource.RLIMIT_NOFILE)
    return KEEP if soft == resource.RLIM_INFINITY else max(16, min(KEEP, soft // 8))


def _is_initial(rootfd: int) -> bool:
    """Whether our user namespace is the initial one: its uid_map maps every id to itself (user_namespaces(7)).

    Fails closed: what cannot be told is not the initial namespace, so grants
    nothing wholesale (all_access, perfmon); without user namespaces at all
    (no uid_map) no caller's namespace is ours either (no ns/user), so those
    grants could not apply anyway.
    """
    try:
        return read_at(rootfd, "self/uid_map", False).split() == [b"0", b"0", b"4294967295"]
    except OSError as exc:
        unless_gone(exc, "our uid_map")
        return False


def _kernel() -> tuple[int, int]:
    try:
        major, minor = os.uname().release.split(".")[:2]
        return int(major), int("".join(c for c in minor if c.isdigit()) or 0)
    except ValueError:
        return (0, 0)
