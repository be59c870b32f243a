"""Cgroup namespace roots: where a caller's cgroup namespace begins, in the cgroup paths our /proc prints.

A process in a cgroup namespace sees cgroup paths relative to the namespace's
root (cgroup_path_ns in kernel/cgroup/cgroup.c), and the kernel has no file
that names that root. It can be found by reading one process's
/proc/<pid>/cgroup from both sides: from our namespace it reads ``R + p``,
from inside the caller's ``p``. Reading from inside means a thread of ours
joining that namespace (setns(2) with CLONE_NEWCGROUP, which needs
CAP_SYS_ADMIN: the daemon raises it in that one thread only, see with_admin).
So one dedicated thread does it, once per namespace: a namespace's root is
fixed when it is created, and the namespace is held open while we remember
it, so its inode names no other meanwhile.
"""

from __future__ import annotations

import concurrent.futures
import ctypes
import ctypes.util
import errno
import logging
import os
import queue
import threading
from collections.abc import Callable

from ._cgroup2 import ROOT, unified_path
from ._errnos import ns_inode, unless_gone
from ._nsfs import KEEP, Held, WouldWait
from ._reader import ProcReader, read_at

log = logging.getLogger("totmapsfs")

CLONE_NEWCGROUP = 0x02000000  # include/uapi/linux/sched.h

_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def setns(fd: int, nstype: int) -> None:
    """setns(2) for the calling thread (os.setns is Python 3.12+)."""
    _check(_libc.setns(fd, nstype), "setns")


# -- the calling thread's capabilities: setns(2) into a cgroup namespace needs CAP_SYS_ADMIN
# (capabilities(7): per thread). The service lowers the daemon's effective set after mounting
# (service._privileges, which sets them through these too); each setns raises it again, here.

CAP_SYS_ADMIN = 21  # include/uapi/linux/capability.h

_LINUX_CAPABILITY_VERSION_3 = 0x20080522


class _Header(ctypes.Structure):
    _fields_ = [("version", ctypes.c_uint32), ("pid", ctypes.c_int)]


class _Data(ctypes.Structure):
    _fields_ = [("effective", ctypes.c_uint32), ("permitted", ctypes.c_uint32), ("inheritable", ctypes.c_uint32)]


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def capget() -> tuple[int, int]:
    """(effective, permitted) of the calling thread as 64-bit masks."""
    header, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    _check(_libc.capget(ctypes.byref(header), data), "capget")
    return (data[0].effective | data[1].effective << 32, data[0].permitted | data[1].permitted << 32)


def capset(effective: int, permitted: int) -> None:
    """Set the calling thread's effective and permitted sets (inheritable cleared)."""
    header, data = _Header(_LINUX_CAPABILITY_VERSION_3, 0), (_Data * 2)()
    for i in range(2):
        data[i].effective = (effective >> 32 * i) & 0xFFFFFFFF
        data[i].permitted = (permitted >> 32 * i) & 0xFFFFFFFF
    _check(_libc.capset(ctypes.byref(header), data), "capset")


def with_admin(fn: Callable[[], None]) -> None:
    """Call ``fn`` with CAP_SYS_ADMIN in this thread's effective set (if permitted), lowered again after.

    The other threads' sets are not touched; a process that has it effective
    already (root before the service lowers it, the tests) just calls ``fn``.
    """
    effective, permitted = capget()
    wanted = effective | (1 << CAP_SYS_ADMIN & permitted)
    if wanted != effective:
        capset(wanted, permitted)
    try:
        fn()
    finally:
        if wanted != effective:
            capset(effective, permitted)


def root_from(outside: str, inside: str) -> str | None:
    """The namespace root ``R`` for a cgroup read as ``outside`` from our side and ``inside`` from the namespace's.

    None when the two do not tell it: the process sits above the namespace's
    root (inside reads "/../x"), or the two readings do not fit together.
    """
    if inside == ROOT:
        return outside
    if inside.startswith("/..") or not inside.startswith("/"):
        return None
    if outside == inside:
        return ROOT
    if outside.endswith(inside):
        return outside[: -len(inside)]
    return None


class CgroupRoots:
    """The root of each caller's cgroup namespace, as a path our /proc/<pid>/cgroup would print.

    Each setns raises CAP_SYS_ADMIN in the dedicated thread for itself
    (with_admin): the daemon lowers its effective set after mounting.
    """

    def __init__(self, reader: ProcReader, keep: int = KEEP) -> None:
        self._rootfd = reader.root_fd()
        self.own = ns_inode(self._rootfd, "self/ns/cgroup")
        self._roots: Held[tuple[str | None]] = Held(keep)  # by namespace inode: (its root,)
        self._jobs: queue.SimpleQueue[tuple[Callable[[], str | None], concurrent.futures.Future[str | None]]]
        self._jobs = queue.SimpleQueue()
        self._thread: threading.Thread | None = None
        self._lock = threading.Lock()
        self._refused = False  # setns is not allowed us: no namespace's root can be found
        self._join_failed = False  # the last setns into a caller's namespace failed otherwise
        self._stuck = False  # the thread could not come back to our namespace: it finds nothing more

    def namespace_of(self, tid: int) -> int | None:
        """The inode of thread ``tid``'s cgroup namespace; None when it is gone."""
        return ns_inode(self._rootfd, f"{tid}/ns/cgroup")

    def root_of(self, tid: int, wait: bool = True) -> str | None:
        """Where thread ``tid``'s cgroup namespace begins (ROOT: ours, or no namespaces at all); None: unknown.

        A namespace not met before is found by the dedicated thread: with
        ``wait`` False, WouldWait instead of waiting for it (the event loop).
        """
        inode = self.namespace_of(tid)
        if inode is None:
            return ROOT if self.own is None else None
        if inode == self.own:
            return ROOT
        known = self._roots.get(inode)
        if known is not None:
            return known[0]
        if not wait:
            raise WouldWait(f"cgroup namespace {inode}")
        try:
            fd = os.open(f"{tid}/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._rootfd)
        except OSError as exc:
            unless_gone(exc, f"the cgroup namespace of {tid}")
            return None
        try:
            if os.fstat(fd).st_ino != inode:  # the thread moved (or died and its tid was reused) between the two
                os.close(fd)
                return None
            # Found twice, the same both times: a caller moving itself between our
            # reads (it may, with a delegated subtree) cannot make us take a wrong root.
            self._join_failed = False
            first = self._in_thread(lambda: self._find(fd, tid))
            root = first if first is None else self._in_thread(lambda: self._find(fd, tid))
        except BaseException:
            os.close(fd)
            raise
        definitive = self._refused or self._join_failed  # setns said no: no use asking again
        if (root is None and not definitive) or root != first:
            os.close(fd)  # not told this time: asked again next time
            return None
        return self._roots.put(inode, fd, (root,))[0]

    def _find(self, fd: int, tid: int) -> str | None:
        """In the dedicated thread: join the namespace, read the caller's cgroup from inside, come back."""
        if self._refused or self._stuck:
            return None
        own = os.open("self/ns/cgroup", os.O_RDONLY | os.O_CLOEXEC, dir_fd=self._rootfd)
        try:
            before = self._cgroup_of(tid)
            if not self._join(fd):
                return None
            try:
                inside = self._cgroup_of(tid)
            finally:
                if not self._join(own):
                    self._stuck = True
                    log.error("cannot return to our own cgroup namespace: cgroup namespaces are unknown from now on")
            after = self._cgroup_of(tid)
        finally:
            os.close(own)
        if self._stuck or None in (before, inside, after) or before != after:
            return None  # no cgroup2 line, the caller moved or exited meanwhile: not told this time
        assert before is not None and inside is not None
        return root_from(before, inside)

    def _cgroup_of(self, tid: int) -> str | None:
        """Thread ``tid``'s cgroup v2 path as this thread's cgroup namespace names it; None when it is gone."""
        try:
            return unified_path(read_at(self._rootfd, f"{tid}/cgroup", False))
        except OSError as exc:
            unless_gone(exc, f"the cgroup of {tid}")
            return None

    def _join(self, fd: int) -> bool:
        """setns into the cgroup namespace ``fd`` (CAP_SYS_ADMIN raised for it); False, logged, when refused.

        EPERM (no CAP_SYS_ADMIN, or a seccomp filter) holds for every namespace:
        then no more are tried. Any other error is this namespace's alone.
        """
        try:
            with_admin(lambda: setns(fd, CLONE_NEWCGROUP))
            return True
        except OSError as exc:
            if exc.errno == errno.EPERM and not self._refused:
                self._refused = True
                log.warning("cannot join callers' cgroup namespaces (%s): MOUNT/cgroup is refused to them", exc)
            elif exc.errno != errno.EPERM:
                self._join_failed = True
                log.warning("cannot join a caller's cgroup namespace (%s): MOUNT/cgroup is refused to it", exc)
            return False

    def _in_thread(self, fn: Callable[[], str | None]) -> str | None:
        with self._lock:
            if self._thread is None:
                self._thread = threading.Thread(target=self._serve, name="totmapsfs-cgroupns", daemon=True)
                self._thread.start()
        done: concurrent.futures.Future[str | None] = concurrent.futures.Future()
        self._jobs.put((fn, done))
        return done.result()

    def _serve(self) -> None:
        while True:
            fn, done = self._jobs.get()
            try:
                done.set_result(fn())
            except BaseException as exc:  # handed to the waiting caller
                done.set_exception(exc)
