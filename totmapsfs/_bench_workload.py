"""A benchmark workload: a process with N separate mappings of P touched pages, run as a script by totmapsfs.bench."""

# Run as a file (python .../_bench_workload.py), not with -m: importing the
# package would add its own mappings and memory to the process measured.
#
#   _bench_workload.py [--mappings N] [--pages P] [--children K]
#
# Maps N anonymous regions of P pages each, with a one-page hole between
# neighbours so the kernel can never merge them into one VMA, and writes every
# page. --children forks K sleeping copies with the same layout (sharing its
# pages); with --mappings 0 they are small idle processes. Prints "ready <pid> <child pids...>" and then waits for EOF
# on stdin. Every process dies with its parent (PR_SET_PDEATHSIG), so a
# benchmark killed with SIGKILL leaves nothing behind.

from __future__ import annotations

import argparse
import ctypes
import os
import signal
import sys

PR_SET_PDEATHSIG = 1
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS = 0x02, 0x20
MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def die_with(parent: int, sig: int = signal.SIGKILL) -> None:
    """Have the kernel send ``sig`` when the parent exits; exit now if it already has."""
    _libc.prctl(PR_SET_PDEATHSIG, sig, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def make_mappings(count: int, pages: int) -> None:
    """``count`` VMAs of ``pages`` written pages each, separated by unmapped holes."""
    if count <= 0:
        return
    page = os.sysconf("SC_PAGE_SIZE")
    stride = (pages + 1) * page
    base = _libc.mmap(None, count * stride, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if base in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of {count * stride} bytes: {os.strerror(err)}")
    for i in range(count):
        start = base + i * stride
        ctypes.memset(start, 1, pages * page)  # fault every page in
        if _libc.munmap(start + pages * page, page) != 0:  # the hole
            err = ctypes.get_errno()
            raise OSError(err, f"munmap: {os.strerror(err)}")


def fork_sleepers(count: int, parent: int) -> list[int]:
    pids = []
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                die_with(parent)
                while True:
                    signal.pause()
            finally:
                os._exit(0)
        pids.append(pid)
    return pids


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mappings", type=int, default=0)
    p.add_argument("--pages", type=int, default=1)
    p.add_argument("--children", type=int, default=0, help="forked sleeping copies with the same mappings")
    p.add_argument("--parent", type=int, default=os.getppid(), help=argparse.SUPPRESS)
    args = p.parse_args()

    die_with(args.parent)
    me = os.getpid()
    make_mappings(args.mappings, args.pages)
    children = fork_sleepers(args.children, me)
    print("ready", me, *children, flush=True)
    try:
        while sys.stdin.buffer.read(4096):
            pass
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass


if __name__ == "__main__":
    main()
