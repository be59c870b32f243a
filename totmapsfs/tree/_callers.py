"""Who asks: a request's caller, its pid and cgroup namespaces, and whether callers of other namespaces were seen."""

from __future__ import annotations

from dataclasses import dataclass
from typing import NamedTuple

from ..errors import NoSuchEntry
from ..proc import ROOT, Access, Caller, PidView
from ..views import Views

__all__ = ["Callers", "Mixed", "Request"]


class Request(NamedTuple):
    """The caller of one FUSE request: its thread id and filesystem uid/gid (fuse_in_header)."""

    tid: int
    uid: int
    gid: int


@dataclass
class Mixed:
    """Whether callers from other pid or cgroup namespaces than ours have been seen (then for good).

    Until the first request of such a caller reaches us, the kernel may answer
    its walk through a pid name from a dentry cached for one of our callers
    within the last second (ATTR_TIMEOUT in the adapter): that the name exists,
    and the attributes of our process of that number; never numbers, as every
    open reads the name in its caller's namespace. ``--per-caller-names``
    closes even that, at the price of two more requests per walk (the
    lookups of both names) for every caller. (A pid directory's inode stands for a *name*, not for one
    of our processes: an inode per process would let one cached name lead a
    container to another process than it named, and the kernel would move a
    directory's one dentry between the names callers give it, so getcwd()
    would name another process.)
    """

    pids: bool = False
    cgroups: bool = False
    generation: int = 0  # bumped at each change, for the adapter to notice


class Callers:
    """The Tree's reading of a request's caller (a part of Tree, kept apart: what it needs is declared here)."""

    access: Access
    views: Views
    mixed: Mixed

    def caller(self, request: Request) -> Caller:
        caller = self.access.identify(request.tid, request.uid, request.gid)
        if caller.pids is not None and not caller.pids.ours:
            self._seen_pids(caller.pids)
        return caller

    def _seen_pids(self, view: PidView | None) -> None:
        if view is not None and not view.ours and not self.mixed.pids:
            self.mixed.pids = True
            self.mixed.generation += 1

    def _view(self, request: Request) -> PidView:
        """The caller's pid namespace, for requests that need no more of it (one stat for our own); to be closed."""
        view = self.access.pids.view_of(request.tid)
        if view is None:
            raise NoSuchEntry(f"the pid namespace of {request.tid}")  # it exited, or is above ours: sees nothing
        self._seen_pids(view)
        return view

    def _host(self, view: PidView | None, pid: int, wait: bool = True) -> int:
        """Our number of the process ``view`` calls ``pid``; NoSuchEntry when the caller cannot see it.

        ``wait`` False: WouldWait when that takes a scan of /proc (a kernel
        without the nsfs translation ioctls, and a pid the index does not know).
        """
        if view is not None and view.ours:
            return pid  # our own namespace: the common case, without a call
        host = None if view is None else self.access.pids.to_host(view, pid, wait)
        if host is None:
            raise NoSuchEntry(str(pid))
        return host

    def cgroup_top(self, request: Request, wait: bool = True) -> str:
        """Where the caller's cgroup namespace begins in the mirrored hierarchy; NoSuchEntry when it cannot be told.

        ``wait`` False: WouldWait for a cgroup namespace not met before.
        """
        roots = self.access.cgroups
        root = roots.root_of(request.tid, wait)
        if root != ROOT and not self.mixed.cgroups:
            self.mixed.cgroups = True
            self.mixed.generation += 1
        top = None if root is None else self.views.cgroups.relative(root)
        if top is None:
            raise NoSuchEntry("cgroup")  # outside what we mirror, or not to be told
        return top
