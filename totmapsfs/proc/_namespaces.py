"""Namespaces as the kernel relates them: a caller's pid numbers, and the user namespaces its capabilities reach.

Everything here asks the kernel through nsfs (fs/nsfs.c, include/uapi/linux/
nsfs.h): an open /proc/<pid>/ns/<type> file is the namespace, its inode its
identity, and ioctls on it tell its parent and owner (NS_GET_PARENT,
NS_GET_OWNER_UID, Linux 4.9) and translate pids between pid namespaces
(NS_GET_{PID,TGID}_{FROM,IN}_PIDNS, Linux 6.11). Where the translation
ioctls are missing, a pid is found through the NStgid/NSpid lines of the
task's status instead (Linux 4.1), which name its pid at every level from
our procfs's namespace down to its own.

Namespace files are kept open while in use (a pid namespace we translate
for, a user namespace whose ancestry we know): a namespace lives while an fd
to it does, so an inode we know cannot be reused by another namespace
meanwhile. At most ``KEEP`` of each are kept.
"""

from __future__ import annotations

import errno
import fcntl
import os
import struct
import threading
import time
from collections import OrderedDict
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

_NSIO = 0xB7
NS_GET_PARENT = _NSIO << 8 | 0x2  # _IO(NSIO, 0x2)
NS_GET_OWNER_UID = _NSIO << 8 | 0x4  # _IO(NSIO, 0x4), fills a uid_t
# _IOR(NSIO, n, int): 0x80000000 | sizeof(int) << 16 | NSIO << 8 | n
_IOR_INT = 0x80000000 | 4 << 16 | _NSIO << 8
NS_GET_PID_FROM_PIDNS = _IOR_INT | 0x6  # a pid in the fd's namespace -> its pid in ours
NS_GET_TGID_FROM_PIDNS = _IOR_INT | 0x7  # ... its thread group's id in ours
NS_GET_PID_IN_PIDNS = _IOR_INT | 0x8  # a pid in ours -> its pid in the fd's namespace
NS_GET_TGID_IN_PIDNS = _IOR_INT | 0x9  # ... its thread group's id there

_NO_IOCTLS = -1  # _ask's answer on a kernel without them (no pid is negative)
KEEP = 1024  # namespaces held open, per kind: far more containers than a host runs at once


def _open_ns(path: str, rootfd: int) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=rootfd)


class _Open:
    """Namespace fds by inode, the least recently used closed past KEEP.

    An fd handed out may still be in use in another thread when it is pushed
    out, so it is closed only once it has been out of the table for ``GRACE``
    seconds (requests last far less): an ioctl must never meet a reused fd.
    """

    GRACE = 60.0

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self.fds: OrderedDict[int, int] = OrderedDict()
        self._retired: list[tuple[float, int]] = []

    def get(self, inode: int) -> int | None:
        with self.lock:
            fd = self.fds.get(inode)
            if fd is not None:
                self.fds.move_to_end(inode)
            return fd

    def put(self, inode: int, fd: int) -> int:
        """Keep ``fd`` for ``inode``; returns the fd kept (another thread's, if it got there first)."""
        with self.lock:
            kept = self.fds.get(inode)
            if kept is not None:
                os.close(fd)
                return kept
            self.fds[inode] = fd
            now = time.monotonic()
            while len(self.fds) > KEEP:
                self._retired.append((now, self.fds.popitem(last=False)[1]))
            while self._retired and now - self._retired[0][0] > self.GRACE:
                os.close(self._retired.pop(0)[1])
            return fd


@dataclass(frozen=True, slots=True)
class PidView:
    """How one pid namespace numbers processes: ours (``fd`` None, numbers as they are) or a descendant's."""

    inode: int
    fd: int | None  # the namespace, open; None for our own
    level: int  # how far below ours: 0 for our own

    @property
    def ours(self) -> bool:
        return self.fd is None


class PidNamespaces:
    """Pid translation between our pid namespace (our procfs's) and the namespaces of callers below it."""

    def __init__(self, rootfd: int, own_inode: int | None) -> None:
        self._rootfd = rootfd
        self.own = PidView(own_inode or 0, None, 0)
        self._open = _Open()
        self.ioctls = True  # the translation ioctls work (Linux >= 6.11); found out on first use

    def view(self, tid: int, ns_pids: tuple[int, ...]) -> PidView | None:
        """The pid namespace of thread ``tid``, whose NSpid line is ``ns_pids``; None if it cannot be told.

        One entry in NSpid: the caller is in our namespace. More: it is in one
        below ours, which its /proc/<tid>/ns/pid names.
        """
        if len(ns_pids) <= 1:
            return self.own
        try:
            fd = _open_ns(f"{tid}/ns/pid", self._rootfd)
        except OSError:
            return None
        inode = os.fstat(fd).st_ino
        kept = self._open.get(inode)
        if kept is not None:
            os.close(fd)
            fd = kept
        else:
            fd = self._open.put(inode, fd)
        return PidView(inode, fd, len(ns_pids) - 1)

    def view_of(self, tid: int) -> PidView | None:
        """``view`` for a caller whose status we have not read: one stat tells our own namespace apart.

        For the requests that need no status (lookup, getattr, listing): a
        caller in our namespace costs one fstatat of its ns/pid.
        """
        try:
            inode = os.stat(f"{tid}/ns/pid", dir_fd=self._rootfd).st_ino
        except OSError:
            return self.own if self.own.inode == 0 else None  # no namespace files at all: a fake /proc
        if inode == self.own.inode:
            return self.own
        from ._reader import read_at, status_of_text  # the reader imports us: import at use

        try:
            ns_pids = status_of_text(read_at(self._rootfd, f"{tid}/status", False)).ns_pids
        except OSError:
            return None
        return self.view(tid, ns_pids)

    def _ask(self, fd: int, request: int, pid: int) -> int | None:
        """One of the pid translation ioctls: its answer, None (ESRCH: no such pid there), or _NO_IOCTLS."""
        try:
            return fcntl.ioctl(fd, request, pid)
        except OSError as exc:
            if exc.errno == errno.ESRCH:
                return None
            if exc.errno not in (errno.ENOTTY, errno.EINVAL):
                raise
            self.ioctls = False  # an older kernel: the status lines from now on
            return _NO_IOCTLS

    def to_host(self, view: PidView, pid: int) -> int | None:
        """The pid (or thread id) that ``view`` calls ``pid``, as we number it; None when it has none."""
        if view.fd is None:
            return pid
        if self.ioctls and (got := self._ask(view.fd, NS_GET_PID_FROM_PIDNS, pid)) != _NO_IOCTLS:
            return got
        return self._scan_to_host(view, pid)

    def from_host(self, view: PidView, pid: int, ns_tgids: tuple[int, ...] | None = None) -> int | None:
        """The id that ``view`` gives our process ``pid`` (a thread group id); None when it cannot see it.

        ``ns_tgids`` (the process's NStgid line), when the caller has it, saves
        a read on kernels without the translation ioctls.
        """
        if view.fd is None:
            return pid
        if self.ioctls and (got := self._ask(view.fd, NS_GET_TGID_IN_PIDNS, pid)) != _NO_IOCTLS:
            return got
        return self._status_from_host(view, pid, ns_tgids)

    def visible(self, view: PidView | None, pids: Sequence[int]) -> list[tuple[int, int]]:
        """(our pid, its pid in ``view``) of those of ``pids`` that ``view`` holds, in ``view``'s order."""
        if view is None:
            return []
        if view.fd is None:
            return [(pid, pid) for pid in pids]
        out = [(pid, ns) for pid in pids if (ns := self.from_host(view, pid)) is not None]
        out.sort(key=lambda pair: pair[1])
        return out

    # -- without the ioctls: NStgid/NSpid, and the namespace at the caller's level -------------

    def _level_inode(self, pid: int, depth: int, level: int) -> int | None:
        """The inode of process ``pid``'s pid namespace ``depth - level`` levels above its own."""
        try:
            fd = _open_ns(f"{pid}/ns/pid", self._rootfd)
        except OSError:
            return None
        try:
            for _ in range(depth - level):
                parent = fcntl.ioctl(fd, NS_GET_PARENT)
                os.close(fd)
                fd = parent
            return os.fstat(fd).st_ino
        except OSError:
            return None
        finally:
            os.close(fd)

    def _status_from_host(self, view: PidView, pid: int, ns_tgids: tuple[int, ...] | None) -> int | None:
        if ns_tgids is None:
            from ._reader import read_at, status_of_text  # the reader imports us: import at use

            try:
                ns_tgids = status_of_text(read_at(self._rootfd, f"{pid}/status", False)).ns_tgids
            except OSError:
                return None
        depth = len(ns_tgids) - 1
        if depth < view.level or self._level_inode(pid, depth, view.level) != view.inode:
            return None
        return ns_tgids[view.level]

    def _scan_to_host(self, view: PidView, pid: int) -> int | None:
        # O(processes), for kernels without the ioctls only: whose NSpid at
        # the caller's level is ``pid``, in the caller's namespace?
        from ._reader import read_at, status_of_text

        for name in os.listdir(self._rootfd):
            if not name.isdigit():
                continue
            for task in _tasks(self._rootfd, name):
                try:
                    ns_pids = status_of_text(read_at(self._rootfd, f"{name}/task/{task}/status", False)).ns_pids
                except OSError:
                    continue
                if len(ns_pids) > view.level and ns_pids[view.level] == pid:
                    host = int(task)
                    if self._level_inode(host, len(ns_pids) - 1, view.level) == view.inode:
                        return host
        return None


def _tasks(rootfd: int, pid: str) -> list[str]:
    try:
        fd = os.open(f"{pid}/task", os.O_RDONLY | os.O_DIRECTORY | os.O_CLOEXEC, dir_fd=rootfd)
    except OSError:
        return []
    try:
        return os.listdir(fd)
    except OSError:
        return []
    finally:
        os.close(fd)


@dataclass(frozen=True, slots=True)
class UserNs:
    """What cap_capable needs of a user namespace: its level, its parent, the euid that created it."""

    inode: int
    level: int  # 0: the initial user namespace
    parent: int | None  # its inode; None for the initial one
    owner: int  # kuid (as we see uids: we are in the initial namespace)


class UserNamespaces:
    """User namespaces by inode, with their ancestry: what security/commoncap.c's cap_capable walks."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self.known: dict[int, UserNs] = {}
        self._open = _Open()

    def get(self, inode: int | None) -> UserNs | None:
        if inode is None:
            return None
        with self._lock:
            return self.known.get(inode)

    def learn(self, inode: int | None, opener: Callable[[], int]) -> UserNs | None:
        """The user namespace ``inode``, learnt (with its ancestors) from the fd ``opener`` gives if unknown.

        None when it cannot be told (the task is gone, or nsfs refuses).
        """
        known = self.get(inode)
        if known is not None:
            return known
        try:
            fd = opener()
        except OSError:
            return None
        return self._learn(fd)

    def _learn(self, fd: int) -> UserNs | None:
        """The namespace ``fd`` is (closing or keeping the fd), its ancestors learnt as well."""
        chain: list[tuple[int, int, int]] = []  # (inode, owner, fd), from it up
        known: UserNs | None = None
        current: int | None = fd  # the fd not yet in the chain
        try:
            while current is not None:
                inode = os.fstat(current).st_ino
                known = self.get(inode)
                if known is not None:
                    break
                buf = bytearray(4)
                fcntl.ioctl(current, NS_GET_OWNER_UID, buf)
                chain.append((inode, struct.unpack("I", buf)[0], current))
                held, current = current, None
                try:
                    current = fcntl.ioctl(held, NS_GET_PARENT)
                except OSError as exc:
                    # EPERM: no parent we may see: the initial namespace, or
                    # the top of what we see when we run in a container.
                    if exc.errno != errno.EPERM:
                        raise
        except OSError:
            for _, _, held in chain:
                os.close(held)
            return None
        finally:
            if current is not None:
                os.close(current)
        # Recorded from the top down: each one's parent is known by then.
        parent = known
        for inode, owner, held in reversed(chain):
            level = 0 if parent is None else parent.level + 1
            ns = UserNs(inode, level, None if parent is None else parent.inode, owner)
            with self._lock:
                self.known[inode] = ns
            self._open.put(inode, held)  # held open: its inode cannot name another namespace meanwhile
            parent = ns
        return parent


def capable(
    known: Mapping[int, UserNs], ns: int | None, cred_ns: int | None, euid: int, cap_eff: int, cap: int
) -> bool:
    """cap_capable(cred, ns, cap) of security/commoncap.c: does a caller hold ``cap`` over namespace ``ns``?

    Walk up from ``ns``: the caller's own namespace grants what its effective
    set holds; one at or above the caller's level, any other, grants nothing;
    and the caller holds every capability in a namespace whose parent is its
    own and that its euid created (the owner rule). ``cred_ns`` is the
    caller's namespace, ``euid`` its euid as we number uids.
    """
    target, mine = known.get(ns) if ns is not None else None, known.get(cred_ns) if cred_ns is not None else None
    if target is None or mine is None:
        return False  # one we could not learn: nothing granted (the safe side)
    while True:
        if target.inode == mine.inode:
            return bool(cap_eff >> cap & 1)
        if target.level <= mine.level or target.parent is None:
            return False
        if target.parent == mine.inode and target.owner == euid:
            return True
        up = known.get(target.parent)
        if up is None:
            return False
        target = up
