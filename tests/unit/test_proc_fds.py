"""The proc side's descriptors: a pid namespace view's fd closed by its owner; no fds left is an error, not "gone"."""

from __future__ import annotations

import contextlib
import errno
import os
import resource
from collections.abc import Iterator

import pytest

from totmapsfs.errors import SourceError
from totmapsfs.proc import Access, PidNamespaces, ProcReader


def fds() -> int:
    """Our open descriptors but eventfds: an earlier test's closed pool drops its own in its last worker thread."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") != "anon_inode:[eventfd]"
        except OSError:
            pass  # the listing's own fd, closed by now
    return count


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


@contextlib.contextmanager
def no_fds_left() -> Iterator[None]:
    """Every descriptor under a lowered soft limit taken: the next open fails with EMFILE."""
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    taken: list[int] = []
    resource.setrlimit(resource.RLIMIT_NOFILE, (max(int(name) for name in os.listdir("/proc/self/fd")) + 8, hard))
    try:
        with contextlib.suppress(OSError):
            while True:
                taken.append(os.open("/dev/null", os.O_RDONLY))
        yield
    finally:
        for fd in taken:
            os.close(fd)
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))


def test_running_out_of_fds_is_an_error_not_a_caller_that_is_gone() -> None:
    access = Access(ProcReader())
    with no_fds_left():
        with pytest.raises(SourceError) as raised:
            access.identify(os.getpid(), os.getuid(), os.getgid())
        assert raised.value.errno == errno.EMFILE
        with pytest.raises(SourceError):  # a caller in a pid namespace of its own: its ns/pid cannot be opened
            access.pids.view(os.getpid(), (os.getpid(), 1))
    with access.identify(os.getpid(), os.getuid(), os.getgid()) as caller:
        assert caller.tgid == os.getpid()  # and with fds again, the caller is seen
