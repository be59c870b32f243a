"""The views and the tree carried to their end in the calling thread, as the FUSE adapter does in its pools."""

from __future__ import annotations

from collections.abc import Callable

from totmapsfs.proc import ROOT, Caller, within
from totmapsfs.tree import Request, Tree
from totmapsfs.views import Snapshot, Views


def snapshot(
    views: Views,
    caller: Caller | None,
    *,
    cgroups: bool = False,
    keep: Callable[[str | None], bool] | None = None,
    top: str | None = ROOT,
) -> Snapshot:
    """``Views.plan``'s rows, its slices run one after the other here."""
    return views.plan(caller, lambda rows: rows, cgroups=cgroups, keep=keep, top=top).run()


def cgroup_members(views: Views, caller: Caller | None, path: str) -> Snapshot:
    """The processes ``caller`` may read in cgroup ``path`` (of the mirrored hierarchy) and below it."""
    return snapshot(views, caller, keep=lambda member: member is not None and within(member, path))


def read_file(tree: Tree, ino: int, request: Request) -> bytes:
    """``Tree.open_file`` carried to its end: its bytes, or its plan run."""
    answer = tree.open_file(ino, request)
    return answer if isinstance(answer, bytes) else answer.run()
