"""User namespaces and their ancestry, held while known: what the kernel's cap_capable walks to judge a capability."""

from __future__ import annotations

import errno
import fcntl
import os
import struct
from collections.abc import Callable
from dataclasses import dataclass
from typing import Protocol

from ._nsfs import KEEP, NS_GET_OWNER_UID, NS_GET_PARENT, Held


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
