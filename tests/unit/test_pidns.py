"""A pid namespace view owns its nsfs fd for one request: closed by its owner, never by the garbage collector."""

from __future__ import annotations

import os

import pytest

from totmapsfs.proc import Access, PidNamespaces, ProcReader


def fds() -> int:
    return len(os.listdir("/proc/self/fd"))


def test_a_descendant_view_holds_its_fd_until_closed() -> None:
    reader = ProcReader()
    pids = PidNamespaces(reader.root_fd(), None)
    before = fds()
    # Two NSpid entries read as a caller one level below us: the view opens our own ns/pid.
    with pids.view(os.getpid(), (os.getpid(), 1)) as view:
        assert view is not None and not view.ours
        assert fds() == before + 1
    assert fds() == before
    assert not view.ours  # closed, it still is not ours: never translated as if it were
    if pids.ioctls:
        with pytest.raises(ValueError):  # no fd to ask through
            pids.to_host(view, 1)


def test_a_callers_with_block_closes_its_view() -> None:
    access = Access(ProcReader())
    before = fds()
    with access.identify(os.getpid(), os.getuid(), os.getgid()) as caller:
        assert caller.pids is access.pids.own  # ours: nothing to close
    assert fds() == before
