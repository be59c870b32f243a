"""Namespaces as the kernel relates them: a caller's pid numbers, and the user namespaces its capabilities reach.

Everything here asks the kernel through nsfs (fs/nsfs.c, include/uapi/linux/
nsfs.h): an open /proc/<pid>/ns/<type> file is the namespace, its inode its
identity, and ioctls on it tell its parent and owner (NS_GET_PARENT,
NS_GET_OWNER_UID, Linux 4.9) and translate pids between pid namespaces
(NS_GET_{PID,TGID}_{FROM,IN}_PIDNS, Linux 6.11). Where the translation
ioctls are missing, a pid is found through the NStgid/NSpid lines of the
task's status instead (Linux 4.1), which name its pid at every level from
our procfs's namespace down to its own.

A namespace lives while an fd to it is open, so an inode names one namespace
only while we hold it: a user namespace's ancestry is kept exactly as long as
it is held (``Held``, at most ``KEEP``), and a pid namespace is translated for
through an fd of the request's own (``PidView``).
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import struct
import threading
from collections import OrderedDict
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Generic, Protocol, TypeVar

log = logging.getLogger("totmapsfs")
T = TypeVar("T")

_NSIO = 0xB7
NS_GET_PARENT = _NSIO << 8 | 0x2  # _IO(NSIO, 0x2)
NS_GET_OWNER_UID = _NSIO << 8 | 0x4  # _IO(NSIO, 0x4), fills a uid_t
# _IOR(NSIO, n, int): 0x80000000 | sizeof(int) << 16 | NSIO << 8 | n
_IOR_INT = 0x80000000 | 4 << 16 | _NSIO << 8
NS_GET_PID_FROM_PIDNS = _IOR_INT | 0x6  # a pid in the fd's namespace -> its pid in ours
NS_GET_TGID_FROM_PIDNS = _IOR_INT | 0x7  # ... its thread group's id in ours
NS_GET_PID_IN_PIDNS = _IOR_INT | 0x8  # a pid in ours -> its pid in the fd's namespace
NS_GET_TGID_IN_PIDNS = _IOR_INT | 0x9  # ... its thread group's id there

KEEP = 1024  # namespaces held open, per kind: far more containers than a host runs at once


def _open_ns(path: str, rootfd: int) -> int:
    return os.open(path, os.O_RDONLY | os.O_CLOEXEC, dir_fd=rootfd)


class Held(Generic[T]):
    """Namespaces held open by inode, each with what we learnt of it; the least recently used let go past ``keep``.

    A namespace lives while an fd to it is open, so while we hold one its
    inode names no other: what we learnt of it stays true exactly as long as
    it is here. Letting go (closing) and forgetting happen together, under one
    lock; the fds are only held, never used, so they are closed at once.
    ``on_evict`` hears of each inode let go (to forget what else was learnt).
    """

    def __init__(self, keep: int = KEEP, on_evict: Callable[[int], None] | None = None) -> None:
        self.keep = keep
        self._lock = threading.Lock()
        self._held: OrderedDict[int, tuple[int, T]] = OrderedDict()
        self._on_evict = on_evict

    def get(self, inode: int | None) -> T | None:
        if inode is None:
            return None
        with self._lock:
            held = self._held.get(inode)
            if held is None:
                return None
            self._held.move_to_end(inode)
            return held[1]

    def __contains__(self, inode: object) -> bool:
        return inode in self._held

    def put(self, inode: int, fd: int, value: T) -> T:
        """Hold ``fd`` for ``inode`` with ``value``; the value kept (another thread's, if it came first)."""
        gone: list[int] = []
        with self._lock:
            held = self._held.get(inode)
            if held is not None:
                os.close(fd)
                return held[1]
            self._held[inode] = (fd, value)
            while len(self._held) > self.keep:
                old, (old_fd, _) = self._held.popitem(last=False)
                os.close(old_fd)
                gone.append(old)
        if self._on_evict is not None:
            for old in gone:
                self._on_evict(old)
        return value

    def __len__(self) -> int:
        return len(self._held)


class PidView:
    """How one pid namespace numbers processes: ours (``fd`` None, numbers as they are) or a descendant's.

    A descendant's view owns an fd of its namespace, opened for the request
    and closed with the view: nothing else can close it meanwhile, so an
    ioctl through it always reaches that namespace.
    """

    __slots__ = ("fd", "inode", "level")

    def __init__(self, inode: int, fd: int | None, level: int) -> None:
        self.inode, self.fd, self.level = inode, fd, level

    @property
    def ours(self) -> bool:
        return self.fd is None

    def __del__(self) -> None:
        if self.fd is not None:
            try:
                os.close(self.fd)
            except (OSError, TypeError):  # TypeError: os is gone at interpreter exit
                pass


class PidNamespaces:
    """Pid translation between our pid namespace (our procfs's) and the namespaces of callers below it."""

    def __init__(self, rootfd: int, own_inode: int | None) -> None:
        self._rootfd = rootfd
        self.own = PidView(own_inode or 0, None, 0)
        self.ioctls = self._have_ioctls()  # the translation ioctls (Linux >= 6.11), asked once

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
        return PidView(os.fstat(fd).st_ino, fd, len(ns_pids) - 1)

    def _have_ioctls(self) -> bool:
        """Whether this kernel translates pids through nsfs: ask it for our own pid in our own namespace."""
        try:
            fd = _open_ns("self/ns/pid", self._rootfd)
        except OSError:
            return False
        try:
            return bool(fcntl.ioctl(fd, NS_GET_TGID_IN_PIDNS, os.getpid()) > 0)
        except OSError:
            return False
        finally:
            os.close(fd)

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
        """One of the pid translation ioctls: its answer, or None (ESRCH: no such pid there; or it failed)."""
        try:
            return fcntl.ioctl(fd, request, pid)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                log.warning("nsfs pid translation failed (%s): the name is not resolved", exc)
            return None

    def to_host(self, view: PidView, pid: int) -> int | None:
        """The pid (or thread id) that ``view`` calls ``pid``, as we number it; None when it has none."""
        if view.fd is None:
            return pid
        if self.ioctls:
            return self._ask(view.fd, NS_GET_PID_FROM_PIDNS, pid)
        return self._scan_to_host(view, pid)

    def from_host(self, view: PidView, pid: int, ns_tgids: tuple[int, ...] | None = None) -> int | None:
        """The id that ``view`` gives our process ``pid`` (a thread group id); None when it cannot see it.

        ``ns_tgids`` (the process's NStgid line), when the caller has it, saves
        a read on kernels without the translation ioctls.
        """
        if view.fd is None:
            return pid
        if self.ioctls:
            return self._ask(view.fd, NS_GET_TGID_IN_PIDNS, pid)
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
    """User namespaces by inode, with their ancestry: what security/commoncap.c's cap_capable walks.

    Each is held open while known (``Held``), its ancestors with it; one let
    go is forgotten at once, with its uid map, and learnt afresh if it comes
    back. A namespace keeps its parent alive, so the parent inode a known one
    names is its parent's as long as the child is held; a parent forgotten
    before its child makes ``capable`` grant nothing there (the safe side).
    """

    def __init__(self, keep: int = KEEP) -> None:
        self._maps: dict[int, tuple[tuple[int, int, int], ...]] = {}
        self.known: Held[UserNs] = Held(keep, on_evict=self._forget)
        self._pinned: dict[int, UserNs] = {}  # ours (and what is above it): never let go

    def _forget(self, inode: int) -> None:
        self._maps.pop(inode, None)

    def get(self, inode: int | None) -> UserNs | None:
        if inode is None:
            return None
        return self._pinned.get(inode) or self.known.get(inode)

    def pin(self, opener: Callable[[], int]) -> UserNs | None:
        """Learn the namespace ``opener`` opens, with its ancestors, and never let them go: our own.

        We live in it, so its inode cannot be reused while we run.
        """
        ns = self.learn(None, opener)
        while ns is not None:
            self._pinned[ns.inode] = ns
            ns = self.known.get(ns.parent)
        return ns

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

    def uid_map(self, inode: int, reader: Callable[[], bytes]) -> tuple[tuple[int, int, int], ...]:
        """The uid_map of held namespace ``inode`` ("inside outside count" lines), read by ``reader`` once.

        A map is written once (user_namespaces(7)): it holds while the
        namespace is held. Empty when it cannot be read (every uid then shows
        as the overflow uid, as for ids a map leaves out).
        """
        extents = self._maps.get(inode)
        if extents is None:
            try:
                rows = [tuple(int(x) for x in line.split()) for line in reader().splitlines() if line.strip()]
                extents = tuple((r[0], r[1], r[2]) for r in rows if len(r) == 3)
            except (OSError, ValueError):
                extents = ()
            if inode in self.known:
                self._maps[inode] = extents
        return extents

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
            parent = self.known.put(inode, held, UserNs(inode, level, None if parent is None else parent.inode, owner))
        return parent


class _Known(Protocol):
    def get(self, inode: int) -> UserNs | None: ...


def capable(known: _Known, ns: int | None, cred_ns: int | None, euid: int, cap_eff: int, cap: int) -> bool:
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
