"""A target that keeps its own mmap lock busy, for the fault tests: run as a script, talks over stdin/stdout.

    python tests/mmap_hammer.py [--threads N] [--mib M] [--nice K]

Half the threads map M MiB of anonymous memory populated (MAP_POPULATE), then
unmap it; the other half flip a populated M MiB region between read-write and
read-only (mprotect rewrites every page table entry with the lock held for
writing). Calls go through ctypes, which releases the GIL, so the threads
really run in the kernel at once. Prints "ready <pid>" once they run; at EOF
on stdin stops them and prints "ops <count>" (calls done) before exiting.
"""

from __future__ import annotations

import argparse
import ctypes
import ctypes.util
import os
import sys
import threading

PROT_READ, PROT_WRITE = 0x1, 0x2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_POPULATE = 0x02, 0x20, 0x8000
MAP_FAILED = ctypes.c_void_p(-1).value

libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]


def populated(size: int) -> int:
    addr = libc.mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS | MAP_POPULATE, -1, 0)
    if addr in (None, MAP_FAILED):
        raise OSError(ctypes.get_errno(), "mmap")
    return addr


def map_unmap(size: int, stop: threading.Event, counts: list[int], i: int) -> None:
    while not stop.is_set():
        libc.munmap(populated(size), size)
        counts[i] += 2


def flip(size: int, stop: threading.Event, counts: list[int], i: int) -> None:
    addr = populated(size)
    while not stop.is_set():
        libc.mprotect(addr, size, PROT_READ)
        libc.mprotect(addr, size, PROT_READ | PROT_WRITE)
        counts[i] += 2


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--mib", type=int, default=16)
    p.add_argument("--nice", type=int, default=0, help="leave CPU to others: the point is the lock, not the cores")
    args = p.parse_args()
    os.nice(args.nice)
    size = args.mib << 20
    stop = threading.Event()
    counts = [0] * args.threads
    threads = [
        threading.Thread(target=map_unmap if i % 2 == 0 else flip, args=(size, stop, counts, i))
        for i in range(args.threads)
    ]
    for t in threads:
        t.start()
    print("ready", os.getpid(), flush=True)
    sys.stdin.read()
    stop.set()
    for t in threads:
        t.join()
    print("ops", sum(counts), flush=True)


if __name__ == "__main__":
    main()
