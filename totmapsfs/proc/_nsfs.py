"""nsfs, the kernel's namespace files: the ioctls we ask them, and ``Held``, which keeps namespaces open.

Everything about namespaces asks the kernel through nsfs (fs/nsfs.c,
include/uapi/linux/nsfs.h): an open /proc/<pid>/ns/<type> file is the
namespace, its inode its identity, and ioctls on it tell its parent
(NS_GET_PARENT, Linux 4.9) and owner (NS_GET_OWNER_UID, Linux 4.11) and
translate pids between pid namespaces (NS_GET_{PID,TGID}_{FROM,IN}_PIDNS,
Linux 6.11).

A namespace lives while an fd to it is open, so an inode names one namespace
only while we hold it: what is learnt of one is kept exactly as long as it
is held (``Held``, at most ``KEEP`` per kind). ``_pidns`` and ``_userns`` use
both.
"""

from __future__ import annotations

import os
import threading
from collections import OrderedDict
from collections.abc import Callable
from typing import Generic, TypeVar

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


class WouldWait(Exception):
    """Answering needs what may take long (a scan of /proc, a thread's setns): ask again with ``wait`` in a worker.

    What runs on the event loop asks with ``wait=False`` (tree._tree): one
    slow request must not stall every other reader of the mount.
    """


def open_ns(path: str, rootfd: int) -> int:
    """An nsfs file relative to the procfs root, open (its namespace held while it is)."""
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
