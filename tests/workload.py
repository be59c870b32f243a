"""A process with a known memory layout, for the tests: run as a script, talks over stdin/stdout.

    python tests/workload.py [--mappings N] [--pages P] [--shared MiB] [--children K]
                             [--file PATH --file-pages P] [--nondumpable]

Prints "ready <pid> [child pids...]" once its memory is in place, then serves
commands on stdin: "touch N" faults in N new anonymous pages and answers
"touched"; EOF exits (its children follow).
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import signal
import sys
import time

PAGE = mmap.PAGESIZE


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mappings", type=int, default=0, help="separate small anonymous mappings")
    p.add_argument("--pages", type=int, default=1, help="pages in each of those mappings")
    p.add_argument("--shared", type=int, default=0, help="MiB of MAP_SHARED anonymous (shmem) memory")
    p.add_argument("--private", type=int, default=0, help="MiB of private anonymous memory touched before fork")
    p.add_argument("--children", type=int, default=0, help="forked children sharing all of it")
    p.add_argument("--file", help="a file to map MAP_PRIVATE and write to")
    p.add_argument("--file-pages", type=int, default=0)
    p.add_argument("--nondumpable", action="store_true")
    p.add_argument("--marker", type=int, default=0, help="MiB of private memory, to tell processes apart")
    args = p.parse_args()

    keep: list[mmap.mmap] = []
    for i in range(args.mappings):
        # Alternate protections so that neighbouring mappings never merge into one VMA.
        prot = mmap.PROT_READ | mmap.PROT_WRITE if i % 2 == 0 else mmap.PROT_READ
        m = mmap.mmap(-1, args.pages * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS, prot=prot)
        if i % 2 == 0:
            for off in range(0, args.pages * PAGE, PAGE):
                m[off] = 1
        keep.append(m)
    for mib, flags in ((args.shared, mmap.MAP_SHARED), (args.private, mmap.MAP_PRIVATE), (args.marker, mmap.MAP_PRIVATE)):
        if mib:
            m = mmap.mmap(-1, mib << 20, flags=flags | mmap.MAP_ANONYMOUS)
            m.write(b"\x5a" * (mib << 20))
            keep.append(m)
    if args.file:
        with open(args.file, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        for off in range(0, min(args.file_pages * PAGE, len(m)), PAGE):
            m[off] = 7
        keep.append(m)
    if args.nondumpable:
        PR_SET_DUMPABLE = 4
        ctypes.CDLL(None, use_errno=True).prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)

    children = []
    for _ in range(args.children):
        pid = os.fork()
        if pid == 0:
            # fork() leaves shared mappings to fault in lazily: read every page
            # so the child really maps what it shares. Then sleep until the
            # parent is gone.
            for m in keep:
                for off in range(0, len(m), PAGE):
                    m[off]
            parent = os.getppid()
            while os.getppid() == parent:
                time.sleep(0.2)
            os._exit(0)
        children.append(pid)

    print("ready", os.getpid(), *children, flush=True)
    extra: list[mmap.mmap] = []
    for line in sys.stdin:
        cmd = line.split()
        if cmd and cmd[0] == "touch":
            m = mmap.mmap(-1, int(cmd[1]) * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
            for off in range(0, len(m), PAGE):
                m[off] = 1
            extra.append(m)
            print("touched", flush=True)
    for pid in children:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)


if __name__ == "__main__":
    main()
