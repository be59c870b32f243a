"""The pyfuse3 adapter driven directly, without a mount (the s3ql way): errnos and handles."""

from __future__ import annotations

import errno
import os
from dataclasses import dataclass

import pyfuse3
import pytest
import trio

from totmapsfs.engine import Engine
from totmapsfs.fuse import Operations
from totmapsfs.proc import Cgroup2
from totmapsfs.tree import ROOT_INODE, SELF_INODE, Request, Tree
from totmapsfs.views import Views


@dataclass
class Ctx:
    """Stands in for pyfuse3.RequestContext, which only the FUSE loop can make."""

    pid: int
    uid: int = 0
    gid: int = 0
    umask: int = 0o022


class Broken(Tree):
    def getattr(self, ino: int, request: Request):
        raise KeyError("planted")


def tree(cls: type[Tree] = Tree) -> Tree:
    engine = Engine(max_age=0)
    return cls(engine, Views(engine, Cgroup2(engine.reader)))


def call(ops: Operations, name: str, *args):
    return trio.run(lambda: getattr(ops, name)(*args))


def errno_of(ops: Operations, name: str, *args) -> int:
    with pytest.raises(pyfuse3.FUSEError) as info:
        call(ops, name, *args)
    return info.value.errno


@pytest.fixture
def ops() -> Operations:
    return Operations(tree(), threads=4)


ME = Ctx(pid=os.getpid())


@pytest.mark.parametrize("name, err", [(b"01", errno.ENOENT), (b"9" * 300, errno.ENAMETOOLONG)])
def test_domain_errors_become_their_errnos(ops: Operations, name: bytes, err: int) -> None:
    # Which names are refused is the tree's business (unit/test_tree.py); the errno, the adapter's.
    assert errno_of(ops, "lookup", ROOT_INODE, name, ME) == err


def test_lookup_and_getattr(ops: Operations) -> None:
    entry = call(ops, "lookup", ROOT_INODE, str(os.getpid()).encode(), ME)
    assert entry.st_uid == os.stat(f"/proc/{os.getpid()}").st_uid and entry.entry_timeout > 0
    f = call(ops, "lookup", entry.st_ino, b"totmaps", ME)
    assert f.st_size == 0 and f.st_mode & 0o777 == 0o444
    assert call(ops, "getattr", f.st_ino, ME).st_ino == f.st_ino
    assert call(ops, "readlink", SELF_INODE, ME) == str(os.getpid()).encode()
    assert errno_of(ops, "lookup", f.st_ino, b"x", ME) == errno.ENOTDIR


def test_open_serves_one_snapshot_by_offset(ops: Operations) -> None:
    entry = call(ops, "lookup", ROOT_INODE, str(os.getpid()).encode(), ME)
    f = call(ops, "lookup", entry.st_ino, b"totmaps", ME)
    info = call(ops, "open", f.st_ino, os.O_RDONLY, ME)
    assert info.direct_io and not info.keep_cache
    whole = call(ops, "read", info.fh, 0, 1 << 20)
    assert b"".join(call(ops, "read", info.fh, off, 7) for off in range(0, len(whole), 7)) == whole
    call(ops, "release", info.fh)
    assert errno_of(ops, "read", info.fh, 0, 7) == errno.EBADF  # the snapshot went with the handle
    assert errno_of(ops, "open", f.st_ino, os.O_WRONLY, ME) == errno.EROFS
    assert errno_of(ops, "open", f.st_ino, os.O_RDONLY | os.O_TRUNC, ME) == errno.EROFS


@pytest.mark.parametrize(
    "name, args",
    [
        ("setattr", (ROOT_INODE, None, None, None, ME)),
        ("mknod", (ROOT_INODE, b"x", 0o644, 0, ME)),
        ("mkdir", (ROOT_INODE, b"x", 0o755, ME)),
        ("unlink", (ROOT_INODE, b"1", ME)),
        ("rmdir", (ROOT_INODE, b"1", ME)),
        ("symlink", (ROOT_INODE, b"x", b"y", ME)),
        ("rename", (ROOT_INODE, b"1", ROOT_INODE, b"2", 0, ME)),
        ("link", (SELF_INODE, ROOT_INODE, b"x", ME)),
        ("write", (1, 0, b"x")),
        ("create", (ROOT_INODE, b"x", 0o644, os.O_WRONLY, ME)),
        ("setxattr", (ROOT_INODE, b"user.x", b"1", ME)),
        ("removexattr", (ROOT_INODE, b"user.x", ME)),
    ],
)
def test_every_mutation_is_refused(ops: Operations, name: str, args) -> None:
    assert errno_of(ops, name, *args) == errno.EROFS


@pytest.mark.expect_warnings
def test_unexpected_exception_is_eio_and_logged(caplog) -> None:
    ops = Operations(tree(Broken), threads=4)
    assert errno_of(ops, "getattr", ROOT_INODE, ME) == errno.EIO
    assert "planted" in caplog.text and "Traceback" in caplog.text
    assert call(ops, "lookup", ROOT_INODE, b"self", ME).st_ino == SELF_INODE  # still answering


def test_access_and_statfs(ops: Operations) -> None:
    assert call(ops, "access", ROOT_INODE, os.R_OK, ME) is True
    assert call(ops, "access", ROOT_INODE, os.W_OK, ME) is False
    assert call(ops, "statfs", ME).f_namemax == 255
    assert errno_of(ops, "getxattr", ROOT_INODE, b"user.x", ME) == pyfuse3.ENOATTR
