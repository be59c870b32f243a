"""A program whose processes form a tree: a forking server sharing memory with its children, renamed or setuid.

    groupload.py [--depth D] [--fanout F] [--shared MiB] [--private KiB] [--rename NAME] [--uids A,B]

The first process maps --shared MiB of MAP_SHARED memory and writes it, then
forks F children, each of which forks F more, down to D levels in all (the
first process is level 1). Every process reads all of the shared memory (fork
leaves it to fault in lazily) and writes a private mapping of --private KiB
plus 64 KiB times its index, so that no two have the same smaps (ps_mem takes
processes with identical smaps_rollup for CLONE_VM siblings and counts one).
--rename sets every child's comm with prctl(PR_SET_NAME), as Firefox's
"Web Content" children do; --uids gives the children of the first level these
uids in turn (setresuid, then dumpable again), their descendants inheriting them. Every process
dies with its parent (PR_SET_PDEATHSIG, set after any setresuid, which clears
it). Prints "ready PID PID..." (the first process first, then the others in
the order they came up) once all are in place; EOF on stdin exits.
Only the standard library: run by a copy of the interpreter named for the
test, so that its executable names the program.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import signal
import sys

PR_SET_PDEATHSIG, PR_SET_DUMPABLE, PR_SET_NAME = 1, 4, 15
_libc = ctypes.CDLL(None, use_errno=True)
KEEP: list[mmap.mmap] = []  # mappings live as long as the process


def die_with(parent: int) -> None:
    _libc.prctl(PR_SET_PDEATHSIG, int(signal.SIGKILL), 0, 0, 0)
    if os.getppid() != parent:
        os._exit(1)


def private(kib: int) -> None:
    m = mmap.mmap(-1, kib * 1024, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    for off in range(0, len(m), mmap.PAGESIZE):
        m[off] = 1
    KEEP.append(m)


def grow(args: argparse.Namespace, level: int, report: int, shared: mmap.mmap, me: int) -> None:
    """Fork this level's children; each sets itself up, grows the next level, reports its pid and waits.

    ``me`` numbers processes as a heap does (the children of n are n*F+1 ..
    n*F+F): a different private size for each.
    """
    for i in range(args.fanout):
        parent = os.getpid()
        index = me * args.fanout + i + 1
        pid = os.fork()
        if pid:
            continue
        try:
            if level == 1 and args.uids:
                uid = args.uids[i % len(args.uids)]
                os.setgroups([])
                os.setresgid(uid, uid, uid)
                os.setresuid(uid, uid, uid)
                # A change of uid makes the process non-dumpable (commit_creds, kernel/cred.c): only root
                # could read it. Dumpable again, as a user's own process (exec'd after the change) is.
                _libc.prctl(PR_SET_DUMPABLE, 1, 0, 0, 0)
            die_with(parent)
            if args.rename:
                _libc.prctl(PR_SET_NAME, args.rename.encode(), 0, 0, 0)
            sum(shared[off] for off in range(0, len(shared), mmap.PAGESIZE))
            private(args.private + 64 * index)
            if level + 1 < args.depth:
                grow(args, level + 1, report, shared, index)
            os.write(report, f"{os.getpid()}\n".encode())
            signal.pause()
        finally:
            os._exit(0)


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--depth", type=int, default=2)
    p.add_argument("--fanout", type=int, default=2)
    p.add_argument("--shared", type=int, default=8)
    p.add_argument("--private", type=int, default=4096)
    p.add_argument("--rename", default="")
    p.add_argument("--uids", type=lambda t: [int(u) for u in t.split(",")], default=[])
    args = p.parse_args()
    die_with(os.getppid())
    shared = mmap.mmap(-1, args.shared << 20, flags=mmap.MAP_SHARED | mmap.MAP_ANONYMOUS)
    for off in range(0, len(shared), mmap.PAGESIZE):
        shared[off] = 1
    private(args.private)
    read, write = os.pipe()
    total = sum(args.fanout**level for level in range(1, args.depth))
    grow(args, 1, write, shared, 0)
    os.close(write)  # so that a child dying before it reports ends the wait (EOF) rather than hanging it
    pids: list[str] = []
    with os.fdopen(read) as lines:
        while len(pids) < total:
            line = lines.readline()
            if not line:
                sys.exit("a child died before it reported")
            pids.append(line.strip())
        print("ready", os.getpid(), *pids, flush=True)
        sys.stdin.read()


if __name__ == "__main__":
    main()
