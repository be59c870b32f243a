"""Pid namespaces: a caller's pid numbers, translated to ours and back through nsfs (or, on older kernels, status).

The translation ioctls (NS_GET_{PID,TGID}_{FROM,IN}_PIDNS, Linux 6.11) are
asked on an fd of the request's own pid namespace (``PidView``). Where they
are missing, a pid is found through the NStgid/NSpid lines of the task's
status instead (Linux 4.1), which name its pid at every level from our
procfs's namespace down to its own. Our pid of a caller's pid has no such
line to read: it is found in an index of every task's ids below our level,
built by a scan of /proc (O(tasks), a worker's job: ``WouldWait``), taught
the ids of every caller it meets, checked against the task's status on every
use, and scanned again when it does not know a pid.
"""

from __future__ import annotations

import errno
import fcntl
import logging
import os
import threading
from collections.abc import Sequence

from ._errnos import ns_inode, unless_gone
from ._io import read_at, status_of_text, task_names
from ._nsfs import NS_GET_PARENT, NS_GET_PID_FROM_PIDNS, NS_GET_TGID_IN_PIDNS, WouldWait, open_ns

log = logging.getLogger("totmapsfs")

# "1": behave as on a kernel without the translation ioctls (before 6.11), so
# that the tests exercise that path on a newer one. Not for users.
FALLBACK_ENV = "TOTMAPSFS_PIDNS_FALLBACK"
_INDEX_MAX = 1 << 16  # learnt ids kept between scans, at most


class PidView:
    """How one pid namespace numbers processes: ours (``fd`` None, numbers as they are) or a descendant's.

    A descendant's view owns an fd of its namespace, opened for the request
    and closed by whoever asked for the view (``close``, or a with-block) when
    the request is done: nothing else can close it meanwhile, so an ioctl
    through it always reaches that namespace. Closing our own view does nothing.
    """

    __slots__ = ("fd", "inode", "level", "ours")

    def __init__(self, inode: int, fd: int | None, level: int) -> None:
        self.inode, self.fd, self.level = inode, fd, level
        self.ours = fd is None  # kept after close: whether the caller was in our namespace

    def copy(self) -> PidView:
        """The same view with an fd of its own (ours: this one), for work that outlives the request (Views.plan)."""
        if self.fd is None:
            return self
        return PidView(self.inode, os.dup(self.fd), self.level)  # non-inheritable, as os.open's (PEP 446)

    def close(self) -> None:
        if self.fd is not None and self.fd >= 0:
            fd, self.fd = self.fd, -1  # a closed view translates nothing (EBADF), never as ours
            os.close(fd)

    def __enter__(self) -> PidView:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class PidNamespaces:
    """Pid translation between our pid namespace (our procfs's) and the namespaces of callers below it."""

    def __init__(self, rootfd: int, own_inode: int | None) -> None:
        self._rootfd = rootfd
        self.own = PidView(own_inode or 0, None, 0)
        # The translation ioctls (Linux >= 6.11), asked once.
        self.ioctls = os.environ.get(FALLBACK_ENV) != "1" and self._have_ioctls()
        # Without them: (level, pid at that level) -> our ids of the tasks so
        # numbered there, in any namespace of that level (see the module docstring).
        self._index: dict[tuple[int, int], list[int]] = {}
        self._index_lock = threading.Lock()
        self._scan_lock = threading.Lock()  # one scan at a time: readers that missed together share it

    def view(self, tid: int, ns_pids: tuple[int, ...], tgid: int = 0, ns_tgids: tuple[int, ...] = ()) -> PidView | None:
        """The pid namespace of thread ``tid``, whose NSpid line is ``ns_pids``; None if it cannot be told.

        One entry in NSpid: the caller is in our namespace. More: it is in one
        below ours, which its /proc/<tid>/ns/pid names. Without the ioctls,
        the index learns the caller's ids (and its process's, ``tgid`` and its
        NStgid line): a container's first requests are for its own pid.
        """
        if len(ns_pids) <= 1:
            return self.own
        if not self.ioctls:
            self._learn(tid, ns_pids)
            if tgid > 0:
                self._learn(tgid, ns_tgids)
        try:
            fd = open_ns(f"{tid}/ns/pid", self._rootfd)
        except OSError as exc:
            unless_gone(exc, f"the pid namespace of {tid}")
            return None
        try:
            return PidView(os.fstat(fd).st_ino, fd, len(ns_pids) - 1)
        except BaseException:
            os.close(fd)
            raise

    def _have_ioctls(self) -> bool:
        """Whether this kernel translates pids through nsfs: ask it for our own pid in our own namespace."""
        try:
            fd = open_ns("self/ns/pid", self._rootfd)
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
        inode = ns_inode(self._rootfd, f"{tid}/ns/pid")
        if inode is None:
            return self.own if self.own.inode == 0 else None  # no namespace files at all: a fake /proc
        if inode == self.own.inode:
            return self.own

        try:
            status = status_of_text(read_at(self._rootfd, f"{tid}/status", False))
        except OSError as exc:
            unless_gone(exc, f"the status of {tid}")
            return None
        return self.view(tid, status.ns_pids, status.tgid, status.ns_tgids)

    def _ask(self, fd: int, request: int, pid: int) -> int | None:
        """One of the pid translation ioctls: its answer, or None (ESRCH: no such pid there; or it failed)."""
        try:
            return fcntl.ioctl(fd, request, pid)
        except OSError as exc:
            if exc.errno != errno.ESRCH:
                log.warning("nsfs pid translation failed (%s): the name is not resolved", exc)
            return None

    def to_host(self, view: PidView, pid: int, wait: bool = True) -> int | None:
        """The pid (or thread id) that ``view`` calls ``pid``, as we number it; None when it has none.

        Without the ioctls and ``wait`` False, WouldWait when the index does
        not know it (a scan of /proc is needed: not on the event loop).
        """
        if view.fd is None:
            return pid
        if self.ioctls:
            return self._ask(view.fd, NS_GET_PID_FROM_PIDNS, pid)
        host = self._indexed(view, pid)
        if host is not None:
            return host
        if not wait:
            raise WouldWait(f"pid {pid} of pid namespace {view.inode}")
        with self._scan_lock:
            host = self._indexed(view, pid)  # a scan that ended while we waited for it may know it
            if host is None:
                self._scan()
                host = self._indexed(view, pid)
        return host

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
            fd = open_ns(f"{pid}/ns/pid", self._rootfd)
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
            try:
                ns_tgids = status_of_text(read_at(self._rootfd, f"{pid}/status", False)).ns_tgids
            except OSError:
                return None
        depth = len(ns_tgids) - 1
        if depth < view.level or self._level_inode(pid, depth, view.level) != view.inode:
            return None
        return ns_tgids[view.level]

    def _learn(self, tid: int, ns_ids: tuple[int, ...]) -> None:
        with self._index_lock:
            if len(self._index) >= _INDEX_MAX:
                self._index.clear()  # the next miss scans again
            for level in range(1, len(ns_ids)):
                known = self._index.setdefault((level, ns_ids[level]), [])
                if tid not in known:
                    known.append(tid)

    def _indexed(self, view: PidView, pid: int) -> int | None:
        """The task the index names ``pid`` of ``view``'s namespace, checked now; None when it knows none."""
        with self._index_lock:
            candidates = list(self._index.get((view.level, pid), ()))
        for tid in candidates:
            try:
                ns_pids = status_of_text(read_at(self._rootfd, f"{tid}/status", False)).ns_pids
            except OSError as exc:
                unless_gone(exc, f"the status of {tid}")
                continue
            depth = len(ns_pids) - 1
            if (
                depth >= view.level
                and ns_pids[view.level] == pid
                and self._level_inode(tid, depth, view.level) == view.inode
            ):
                return tid
        return None

    def _scan(self) -> None:
        # O(tasks), for kernels without the ioctls only, in a worker: every
        # task's ids below our level, as its NSpid names them.
        index: dict[tuple[int, int], list[int]] = {}
        for name in os.listdir(self._rootfd):
            if not name.isdigit():
                continue
            for task in task_names(self._rootfd, name):
                try:
                    ns_pids = status_of_text(read_at(self._rootfd, f"{name}/task/{task}/status", False)).ns_pids
                except OSError as exc:
                    unless_gone(exc, f"the status of {task}")
                    continue
                for level in range(1, len(ns_pids)):
                    index.setdefault((level, ns_pids[level]), []).append(int(task))
        with self._index_lock:
            self._index = index
