"""The pyfuse3 floor: the cheapest read a pyfuse3 + trio filesystem can serve, and two of totmapsfs's costs on it.

Run as a program (``python -m totmapsfs.bench.floor [options] MOUNTPOINT``; the
benchmark starts it through the harness, which waits for its READY=1):

    /f     one file of FLOOR_SIZE bytes (a small process's totmaps is ~600),
           opened with direct_io as totmaps is, so that a read costs the same
           FUSE round trips: OPEN, READ, READ (end of file), RELEASE.

Every handler answers on the trio thread, as a hello-world would. Mount
options and timeouts are totmapsfs's. Two options add one piece of what
totmapsfs does to each open, for the benchmark's bounds:

    --hop      the open's answer comes back from a worker thread of
               totmapsfs's own pool (fuse._pool): what a cold read cannot avoid
    --hop-read P,...  adds a file /<P> for each process P, its open answered
               from a worker that reads P's smaps_rollup: the least a cold
               read of P does (the concurrent readers' bound; no parse, no
               access rule, no cache)
    --reads P  the open reads, on the trio thread, what totmapsfs's access rule
               and cache need: the calling thread's status and user namespace,
               and process P's /proc directory, stat and status (proc's C
               reads): what a cached read cannot avoid

SIGTERM or SIGINT unmounts and exits 0.
"""

from __future__ import annotations

import argparse
import errno
import functools
import os
import signal
import stat
import sys
from collections.abc import Sequence

import pyfuse3
import trio

from ..errors import TotmapsError
from ..fuse import Pool
from ..proc import ProcReader
from ..service._daemon import mount_options
from ..service._sdnotify import notify

FILE_INODE = 2
NAME = b"f"
FLOOR_SIZE = 600
TIMEOUT = 1.0  # as fuse.ATTR_TIMEOUT


def content(size: int) -> bytes:
    line = b"%-16s%8d kB\n" % (b"Field:", 1234)  # a totmaps line
    return (line * (size // len(line) + 1))[:size]


class FloorOps(pyfuse3.Operations):
    """One file, every answer inline; ``hop`` and ``reads`` add one of totmapsfs's costs to open."""

    supports_dot_lookup = False
    enable_writeback_cache = False
    enable_acl = False

    def __init__(self, data: bytes, hop: bool, reads: int, hop_read: Sequence[int] = ()) -> None:
        super().__init__()
        self.data = data
        self.pool = Pool(4, "floor") if hop or hop_read else None
        self.reads = reads
        # inode FILE_INODE + 1 + i is /<hop_read[i]>
        self.targets = {str(pid).encode(): FILE_INODE + 1 + i for i, pid in enumerate(hop_read)}
        self.pids = {ino: int(name) for name, ino in self.targets.items()}
        self.reader = ProcReader()

    def _attr(self, inode: int) -> pyfuse3.EntryAttributes:
        e = pyfuse3.EntryAttributes()
        e.st_ino = inode
        e.st_mode, e.st_nlink = (stat.S_IFDIR | 0o555, 2) if inode == pyfuse3.ROOT_INODE else (stat.S_IFREG | 0o444, 1)
        e.st_blksize = 4096
        e.entry_timeout = e.attr_timeout = TIMEOUT
        return e

    async def lookup(self, parent_inode: int, name: bytes, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if parent_inode == pyfuse3.ROOT_INODE and name == NAME:
            return self._attr(FILE_INODE)
        if parent_inode == pyfuse3.ROOT_INODE and name in self.targets:
            return self._attr(self.targets[name])
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def getattr(self, inode: int, ctx: pyfuse3.RequestContext) -> pyfuse3.EntryAttributes:
        if inode in (pyfuse3.ROOT_INODE, FILE_INODE) or inode in self.pids:
            return self._attr(inode)
        raise pyfuse3.FUSEError(errno.ENOENT)

    async def open(self, inode: int, flags: int, ctx: pyfuse3.RequestContext) -> pyfuse3.FileInfo:
        if inode in self.pids:
            assert self.pool is not None
            try:
                await self.pool.run(functools.partial(self._rollup, self.pids[inode]))
            except TotmapsError:  # the process is gone: an error for this reader, not the end of the floor
                raise pyfuse3.FUSEError(errno.ENOENT) from None
            return pyfuse3.FileInfo(fh=1, direct_io=True, keep_cache=False)
        if inode != FILE_INODE:
            raise pyfuse3.FUSEError(errno.EISDIR)
        if self.reads:
            self.reader.thread(ctx.pid)
            with self.reader.open(self.reads) as proc:
                proc.probe()
        if self.pool is not None:
            await self.pool.run(lambda: None)
        return pyfuse3.FileInfo(fh=1, direct_io=True, keep_cache=False)

    def _rollup(self, pid: int) -> None:
        with self.reader.open(pid) as proc:
            proc.rollup()

    async def read(self, fh: int, off: int, size: int) -> bytes:
        return self.data[off : off + size]

    async def release(self, fh: int) -> None:
        pass

    async def opendir(self, inode: int, ctx: pyfuse3.RequestContext) -> int:
        if inode != pyfuse3.ROOT_INODE:
            raise pyfuse3.FUSEError(errno.ENOTDIR)
        return 1

    async def readdir(self, fh: int, start_id: int, token: pyfuse3.ReaddirToken) -> None:
        if start_id == 0:
            pyfuse3.readdir_reply(token, NAME, self._attr(FILE_INODE), 1)

    async def releasedir(self, fh: int) -> None:
        pass


async def _serve(mountpoint: str) -> None:
    async def stop(scope: trio.CancelScope) -> None:
        with trio.open_signal_receiver(signal.SIGTERM, signal.SIGINT) as signals:
            async for _ in signals:
                pyfuse3.terminate()
                await trio.sleep(1.0)
                scope.cancel()
                return

    async def ready() -> None:
        # A lookup the kernel cannot answer from its caches: once it returns, requests are served.
        await trio.to_thread.run_sync(os.lstat, os.path.join(mountpoint, NAME.decode()))
        notify("READY=1")

    async with trio.open_nursery() as nursery:
        nursery.start_soon(stop, nursery.cancel_scope)
        nursery.start_soon(ready)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


def _pids(text: str) -> list[int]:
    try:
        return [int(p) for p in text.split(",")]
    except ValueError:
        raise argparse.ArgumentTypeError(f"not a comma-separated list of pids: {text!r}") from None


def main() -> int:
    ap = argparse.ArgumentParser(prog="python -m totmapsfs.bench.floor", description=(__doc__ or "").splitlines()[0])
    ap.add_argument("mountpoint")
    ap.add_argument("--size", type=int, default=FLOOR_SIZE)
    ap.add_argument("--hop", action="store_true", help="answer open from a worker of totmapsfs's pool")
    ap.add_argument(
        "--hop-read", type=_pids, default=(), metavar="PID,...", help="a file /PID each, read through a hop"
    )
    ap.add_argument("--reads", type=int, default=0, metavar="PID", help="read what a cached totmapsfs read reads")
    args = ap.parse_args()
    os.makedirs(args.mountpoint, exist_ok=True)
    options = mount_options() | {"fsname=floor", "subtype=floor"}
    options -= {"fsname=totmapsfs", "subtype=totmapsfs"}
    pyfuse3.init(FloorOps(content(args.size), args.hop, args.reads, args.hop_read), args.mountpoint, options)
    try:
        trio.run(_serve, args.mountpoint)
    finally:
        pyfuse3.close(unmount=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
