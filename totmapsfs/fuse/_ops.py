"""The pyfuse3 adapter: requests answered on the trio thread where nothing can wait, in a worker pool where it can.

Every lookup, getattr, readlink and the opening of a file whose answer is
cached are answered right here: the tree reads only stat, status and the
owners of /proc files for them, which never wait on a target's mmap lock
(Process.probe), and a thread hop would cost more than all the rest of the
read (see _pool). What may wait comes back from the tree as a Plan: reading
smaps (a cold read) and whole-system passes run in the ``reads`` pool, listing
directories in the ``meta`` pool, so that a pile-up of reads stuck in the
kernel cannot starve ``ls``.
"""

from __future__ import annotations

import errno
import functools
import itertools
import logging
import os
from collections.abc import Callable, Coroutine
from typing import Any, Concatenate, ParamSpec, TypeVar

import pyfuse3

from ..errors import NAME_MAX, ReadOnly, TotmapsError
from ..tree import Attr, Kind, Request, Tree, decode
from ..views import Plan
from ._pool import Pool

log = logging.getLogger("totmapsfs")

P = ParamSpec("P")
R = TypeVar("R")

# Entries and attributes are safe to cache briefly: inodes are a function of
# the pid, and every open re-pins the process (see tree._inodes). The kernel revalidates
# after this long, so a pid that exited stops resolving within a second.
ATTR_TIMEOUT = 1.0
# ...but not once callers from other pid (cgroup) namespaces than ours are
# about: then whether a pid (cgroup) name exists and what it is depends on who
# asks, and a dentry the kernel cached for one caller would answer the next
# (tree.Mixed). Every walk through such a name then asks us again.
_SHARED_KINDS = {Kind.ROOT, Kind.SELF, Kind.VIEW}
# Requests during which the kernel holds no lock that dropping a root or
# cgroup entry takes (pyfuse3.invalidate_entry: a lookup in the parent, a
# readdir of the entry's inode are "related" and would deadlock it): when one
# of these switches to per-caller names, the entries are dropped before it is
# answered (see Operations._follow_mixed).
_UNRELATED = frozenset({"getattr", "readlink", "open", "opendir", "access", "statfs", "getxattr", "listxattr"})


def fuse_errors(
    fn: Callable[Concatenate[Operations, P], Coroutine[Any, Any, R]],
) -> Callable[Concatenate[Operations, P], Coroutine[Any, Any, R]]:
    """The one place domain errors become errnos; anything unexpected becomes EIO.

    An exception escaping a pyfuse3 handler ends pyfuse3.main() and with it the
    mount, so nothing but FUSEError may leave: a bug costs one request, not
    every monitoring agent on the host.
    """

    async def wrapper(self: Operations, /, *args: P.args, **kwargs: P.kwargs) -> R:
        try:
            return await fn(self, *args, **kwargs)
        except pyfuse3.FUSEError:
            raise
        except TotmapsError as exc:
            raise pyfuse3.FUSEError(exc.errno) from None
        except Exception:
            log.exception("internal error in %s%r", fn.__name__, args)
            raise pyfuse3.FUSEError(errno.EIO) from None
        finally:
            # After every request, failed ones too, and before it is answered:
            # the first request of a caller from another namespace may well be
            # one that fails (a name that is not its), and the kernel must drop
            # our callers' entries then, not at the next success.
            await self._follow_mixed(fn.__name__, args)

    functools.update_wrapper(wrapper, fn)
    return wrapper


async def _refuse(*_: Any, **__: Any) -> Any:
    raise ReadOnly()


def _entry(attr: Attr, timeout: float = ATTR_TIMEOUT) -> pyfuse3.EntryAttributes:
    entry = pyfuse3.EntryAttributes()
    entry.st_ino = attr.ino
    entry.st_mode = attr.mode
    entry.st_nlink = attr.nlink
    entry.st_uid = attr.uid
    entry.st_gid = attr.gid
    entry.st_size = attr.size
    entry.st_blksize = 4096
    entry.st_blocks = 0
    entry.st_atime_ns = entry.st_mtime_ns = entry.st_ctime_ns = attr.mtime_ns
    entry.entry_timeout = entry.attr_timeout = timeout
    return entry


def _drop_now(entries: list[tuple[int, bytes]]) -> None:
    """Have the kernel forget these entries, each before the next (a worker thread: it blocks)."""
    for parent, name in entries:
        try:
            pyfuse3.invalidate_entry(parent, name)
        except FileNotFoundError:
            pass  # not cached: nothing to drop


def _request(ctx: pyfuse3.RequestContext) -> Request:
    return Request(tid=ctx.pid, uid=ctx.uid, gid=ctx.gid)  # the kernel's "pid" here is the thread id


class Operations(pyfuse3.Operations):
    """Read-only FUSE operations over an injected Tree."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, tree: Tree, threads: int) -> None:
        super().__init__()
        self.tree = tree
        self.reads = Pool(threads, "reads")
        self.meta = Pool(threads, "meta")
        self._files: dict[int, bytes] = {}
        self._dirs: dict[int, list[tuple[bytes, Attr]]] = {}
        self._handles = itertools.count(1)
        self._mixed_seen = tree.mixed.generation  # the tree.mixed generation our timeouts follow (none cached yet)

    def _reply(self, attr: Attr) -> pyfuse3.EntryAttributes:
        """``attr`` with the timeout its kind may be cached for now (see _SHARED_KINDS)."""
        mixed = self.tree.mixed
        kind = decode(attr.ino).kind
        if (
            kind in _SHARED_KINDS
            or (kind is Kind.PID and not mixed.pids)
            or (kind is Kind.CGROUP and not mixed.cgroups)
        ):
            return _entry(attr)
        return _entry(attr, 0.0)

    async def _follow_mixed(self, request: str, args: tuple[Any, ...]) -> None:
        """Once tree.mixed has changed: have the kernel drop the entries it cached while every caller was ours.

        Run by the request that noticed the change, before it is answered. An
        entry dropped *after* the answer could be one the caller's walk has
        made since, with the answer's 0 timeout and right for it: a container
        whose first act is ``cd -P MOUNT/self`` (the readlink switches, the
        lookup of its pid's name follows) was left in a deleted directory. So
        an unrelated request (_UNRELATED) drops them all, in a worker thread
        (invalidate_entry blocks), and is answered after; a lookup, which the
        kernel holds its parent's lock for, cannot wait for that
        (invalidate_entry_async then), but the entry its own answer makes is
        left out: it is the caller's, timeout 0. Never raises (it runs in
        fuse_errors' finally).
        """
        if self.tree.mixed.generation == self._mixed_seen:
            return
        self._mixed_seen = self.tree.mixed.generation
        try:
            entries = self.tree.handed_out()
        except Exception:
            log.exception("could not list the entries to drop for callers from other namespaces")
            return
        log.info("callers from other namespaces: names are no longer cached (%d entries dropped)", len(entries))
        if request in _UNRELATED:
            try:
                await self.meta.run(functools.partial(_drop_now, entries))
                return
            except Exception:
                log.exception("could not drop the entries at once; dropping them in the background")
        answering = (args[0], args[1]) if request == "lookup" else None
        for parent, name in entries:
            if (parent, name) != answering:
                pyfuse3.invalidate_entry_async(parent, name, ignore_enoent=True)

    async def _carry_out(self, plan: Plan[Any, bytes]) -> bytes:
        """A plan in the reads pool: one job for a single slice (finish included), else a job a slice, then finish."""
        if len(plan.slices) == 1:
            part, finish = plan.slices[0], plan.finish
            return await self.reads.run(lambda: finish([part()]))
        parts = await self.reads.run_all(plan.slices)
        return await self.reads.run(functools.partial(plan.finish, parts))

    async def _attr(self, answer: Attr | Plan[Attr, Attr]) -> pyfuse3.EntryAttributes:
        """An attribute the tree found at once, or in the ``meta`` pool (a scan of /proc, a setns: tree._deferred)."""
        if not isinstance(answer, Attr):
            part, finish = answer.slices[0], answer.finish
            answer = await self.meta.run(lambda: finish([part()]))
        return self._reply(answer)

    @fuse_errors
    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if decode(parent_inode).kind is Kind.GROUP:
            # A program or user name not seen in the last second is looked for
            # among every process (views.Groups.exists): a listing's cost.
            lookup = functools.partial(self.tree.lookup, parent_inode, name, _request(ctx))
            return await self._attr(await self.meta.run(lookup))
        return await self._attr(self.tree.lookup(parent_inode, name, _request(ctx)))

    @fuse_errors
    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        return await self._attr(self.tree.getattr(inode, _request(ctx)))

    @fuse_errors
    async def readlink(self, inode: int, ctx: pyfuse3.RequestContext) -> bytes:
        return self.tree.readlink(inode, _request(ctx))

    @fuse_errors
    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        # A listing stats every process (or cgroup): a few ms for a thousand,
        # which other requests should not wait behind.
        entries = await self.meta.run(functools.partial(self.tree.listdir, inode, _request(ctx)))
        fh = next(self._handles)
        self._dirs[fh] = entries
        return fh

    @fuse_errors
    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        entries = self._dirs.get(fh, [])
        for i in range(start_id, len(entries)):
            name, attr = entries[i]
            if not pyfuse3.readdir_reply(token, name, self._reply(attr), i + 1):
                break

    @fuse_errors
    async def releasedir(self, fh: int) -> None:
        self._dirs.pop(fh, None)

    @fuse_errors
    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if flags & os.O_ACCMODE != os.O_RDONLY or flags & os.O_TRUNC:
            raise ReadOnly()
        if decode(inode).kind is Kind.TREE:
            # Finding a tree's members reads every process's stat (views.Groups.descendants): a listing's cost.
            answer = await self.meta.run(functools.partial(self.tree.open_file, inode, _request(ctx)))
        else:
            answer = self.tree.open_file(inode, _request(ctx))
        data = answer if isinstance(answer, bytes) else await self._carry_out(answer)
        fh = next(self._handles)
        self._files[fh] = data
        # direct_io: the size we report is 0 (like /proc), so the page cache
        # must not be trusted for reads; every read comes to us and is served
        # from this handle's snapshot.
        return pyfuse3.FileInfo(fh=fh, direct_io=True, keep_cache=False)

    @fuse_errors
    async def read(self, fh: int, off: int, size: int) -> bytes:
        data = self._files.get(fh)
        if data is None:  # a handle not ours (released): the kernel never sends one, a bug would
            raise pyfuse3.FUSEError(errno.EBADF)
        return data[off : off + size]

    @fuse_errors
    async def release(self, fh: int) -> None:
        self._files.pop(fh, None)

    @fuse_errors
    async def access(self, inode: int, mode: int, ctx: pyfuse3.RequestContext) -> bool:
        # As /proc: everything looks readable (0444/0555); whether a process's
        # numbers may be read is decided at open, by the ptrace rule.
        return not mode & os.W_OK

    @fuse_errors
    async def statfs(self, ctx: pyfuse3.RequestContext) -> pyfuse3.StatvfsData:
        st = pyfuse3.StatvfsData()
        st.f_bsize = st.f_frsize = 4096
        st.f_namemax = NAME_MAX
        return st

    @fuse_errors
    async def getxattr(self, inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> bytes:
        raise pyfuse3.FUSEError(pyfuse3.ENOATTR)

    @fuse_errors
    async def listxattr(self, inode: int, ctx: pyfuse3.RequestContext) -> list[bytes]:
        return []

    # Every mutating operation is refused. The mount is also "ro", so the VFS
    # answers most of these with EROFS before they reach us; these are the
    # belt to that pair of braces.
    setattr = mknod = mkdir = unlink = rmdir = symlink = rename = link = fuse_errors(_refuse)  # type: ignore
    write = create = setxattr = removexattr = fsync = fsyncdir = fuse_errors(_refuse)  # type: ignore
