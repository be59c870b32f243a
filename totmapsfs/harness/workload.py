"""A process with a known memory layout, for the tests and the benchmark: run as a script, driven over stdin/stdout.

Run as a file (``python .../harness/workload.py``), never imported: importing
the package would add its own mappings and memory to the process measured.

    workload.py [--mappings N] [--pages P] [--shared MiB] [--private MiB] [--marker MiB]
                [--file PATH --file-pages P] [--nondumpable] [--children K] [--parent PID]
                [--busy MS] [--latency MS]

--mappings maps N anonymous regions of P written pages each, with a one-page
hole between neighbours so the kernel can never merge them into one VMA.
--shared/--private/--marker map and write that many MiB of MAP_SHARED (shmem)
or private anonymous memory (--marker: to tell processes apart by size).
--file maps PATH MAP_PRIVATE and writes its first P pages. --children forks K
copies that map all of it too (reading every page, as fork leaves shared pages
to fault in lazily) and sleep. With no option it is a small idle process.
--busy makes it a busy one (for the walk duty's tests): a thread faults in one new page every
MS milliseconds, so its memory generation never holds still. --latency adds
a thread that every MS milliseconds maps 16 pages, faults them in and unmaps
them, timing each round: munmap needs the mmap lock for writing, so a walk
of our smaps (which holds it for reading) shows as a slow round.

Prints "ready <pid> [child pids...]" once its memory is in place, then serves
commands on stdin: "touch N" faults in N new anonymous pages and answers
"touched"; "latency" answers "latency <rounds> <p50> <p99> <max> <slow>" of
the rounds since the last ask (µs; slow: how many took over 1 ms); EOF
exits, its children with it. Every process dies with the one
that started it (PR_SET_PDEATHSIG, set here, after any setpriv changed the
credentials, which clears it), so a test or benchmark killed with SIGKILL
leaves nothing behind.
"""

from __future__ import annotations

import argparse
import ctypes
import mmap
import os
import signal
import sys
import threading
import time

PAGE = mmap.PAGESIZE
PR_SET_PDEATHSIG, PR_SET_DUMPABLE = 1, 4
PROT_READ, PROT_WRITE = 1, 2
MAP_PRIVATE, MAP_ANONYMOUS, MAP_NORESERVE = 0x02, 0x20, 0x4000
MAP_FAILED = ctypes.c_void_p(-1).value

_libc = ctypes.CDLL(None, use_errno=True)
_libc.mmap.restype = ctypes.c_void_p
_libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
_libc.munmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t]
_libc.prctl.argtypes = [ctypes.c_int, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong, ctypes.c_ulong]


def die_with(parent: int) -> None:
    """Have the kernel SIGKILL us when ``parent`` exits; exit now if it already has."""
    _libc.prctl(PR_SET_PDEATHSIG, signal.SIGKILL, 0, 0, 0)
    if os.getppid() != parent:
        os._exit(0)


def make_mappings(count: int, pages: int) -> None:
    """``count`` VMAs of ``pages`` written pages each, separated by unmapped holes."""
    if count <= 0:
        return
    stride = (pages + 1) * PAGE
    base = _libc.mmap(None, count * stride, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
    if base in (None, MAP_FAILED):
        err = ctypes.get_errno()
        raise OSError(err, f"mmap of {count * stride} bytes: {os.strerror(err)}")
    for i in range(count):
        start = base + i * stride
        ctypes.memset(start, 1, pages * PAGE)  # fault every page in
        if _libc.munmap(start + pages * PAGE, PAGE) != 0:  # the hole
            err = ctypes.get_errno()
            raise OSError(err, f"munmap: {os.strerror(err)}")


def written(mib: int, flags: int) -> mmap.mmap:
    m = mmap.mmap(-1, mib << 20, flags=flags | mmap.MAP_ANONYMOUS)
    chunk = b"\x5a" * (1 << 20)  # a MiB at a time: no copy of the whole in our own heap
    for _ in range(mib):
        m.write(chunk)
    return m


def busy(period: float) -> None:
    """Fault in one new page every ``period`` seconds, for good (a reserve of 1 GiB: 4.5 min at 1 ms)."""
    reserve = mmap.mmap(-1, 1 << 30, flags=MAP_PRIVATE | MAP_ANONYMOUS | MAP_NORESERVE)
    for off in range(0, len(reserve), PAGE):
        reserve[off] = 1
        time.sleep(period)


class Latency:
    """Rounds of map, fault 16 pages, unmap, every ``period`` seconds, timed."""

    def __init__(self, period: float) -> None:
        self.period = period
        self.lock = threading.Lock()
        self.samples: list[float] = []
        threading.Thread(target=self.run, daemon=True).start()

    def run(self) -> None:
        size = 16 * PAGE
        while True:
            t0 = time.perf_counter()
            addr = _libc.mmap(None, size, PROT_READ | PROT_WRITE, MAP_PRIVATE | MAP_ANONYMOUS, -1, 0)
            if addr not in (None, MAP_FAILED):
                ctypes.memset(addr, 1, size)
                _libc.munmap(addr, size)
            took = time.perf_counter() - t0
            with self.lock:
                self.samples.append(took)
            time.sleep(self.period)

    def report(self) -> str:
        with self.lock:
            got, self.samples = sorted(self.samples), []
        if not got:
            return "latency 0 0 0 0 0"
        pick = [got[len(got) // 2], got[min(len(got) - 1, int(len(got) * 0.99))], got[-1]]
        slow = sum(1 for x in got if x > 0.001)
        return "latency " + " ".join([str(len(got)), *(f"{x * 1e6:.0f}" for x in pick), str(slow)])


def fork_children(count: int, keep: list[mmap.mmap]) -> list[int]:
    """``count`` sleeping copies, returned once each has faulted in all of ``keep`` (so that "ready" is true)."""
    me = os.getpid()
    children = []
    done_r, done_w = os.pipe()
    for _ in range(count):
        pid = os.fork()
        if pid == 0:
            try:
                os.close(done_r)
                die_with(me)
                for m in keep:  # map what is shared: fork leaves it to fault in lazily
                    for off in range(0, len(m), PAGE):
                        m[off]
                os.write(done_w, b".")
                os.close(done_w)
                while True:
                    signal.pause()
            finally:
                os._exit(0)
        children.append(pid)
    os.close(done_w)
    got = 0
    while got < count:
        chunk = os.read(done_r, count - got)
        if not chunk:
            raise RuntimeError("a child died before it had mapped its memory")
        got += len(chunk)
    os.close(done_r)
    return children


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--mappings", type=int, default=0, help="separate anonymous mappings, every page written")
    p.add_argument("--pages", type=int, default=1, help="pages in each of those mappings")
    p.add_argument("--shared", type=int, default=0, help="MiB of MAP_SHARED anonymous (shmem) memory")
    p.add_argument("--private", type=int, default=0, help="MiB of private anonymous memory touched before fork")
    p.add_argument("--marker", type=int, default=0, help="MiB of private memory, to tell processes apart")
    p.add_argument("--file", help="a file to map MAP_PRIVATE and write to")
    p.add_argument("--file-pages", type=int, default=0)
    p.add_argument("--nondumpable", action="store_true")
    p.add_argument("--children", type=int, default=0, help="forked copies sharing all of it")
    p.add_argument("--parent", type=int, default=os.getppid(), help="die with this process (default: our parent)")
    p.add_argument("--busy", type=float, default=0, metavar="MS", help="fault in a new page every MS ms")
    p.add_argument("--latency", type=float, default=0, metavar="MS", help="time a map/fault/unmap round every MS ms")
    args = p.parse_args()

    die_with(args.parent)
    make_mappings(args.mappings, args.pages)
    keep: list[mmap.mmap] = []
    for mib, flags in (
        (args.shared, mmap.MAP_SHARED),
        (args.private, mmap.MAP_PRIVATE),
        (args.marker, mmap.MAP_PRIVATE),
    ):
        if mib:
            keep.append(written(mib, flags))
    if args.file:
        with open(args.file, "r+b") as f:
            m = mmap.mmap(f.fileno(), 0, access=mmap.ACCESS_COPY)
        for off in range(0, min(args.file_pages * PAGE, len(m)), PAGE):
            m[off] = 7
        keep.append(m)
    if args.nondumpable:
        _libc.prctl(PR_SET_DUMPABLE, 0, 0, 0, 0)
    children = fork_children(args.children, keep)
    if args.busy:
        threading.Thread(target=busy, args=(args.busy / 1000,), daemon=True).start()
    latency = Latency(args.latency / 1000) if args.latency else None

    print("ready", os.getpid(), *children, flush=True)
    extra: list[mmap.mmap] = []
    try:
        for line in sys.stdin:
            cmd = line.split()
            if cmd and cmd[0] == "touch":
                m = mmap.mmap(-1, int(cmd[1]) * PAGE, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
                for off in range(0, len(m), PAGE):
                    m[off] = 1
                extra.append(m)
                print("touched", flush=True)
            elif cmd and cmd[0] == "latency":
                print(latency.report() if latency else "latency 0 0 0 0 0", flush=True)
    finally:
        for pid in children:
            try:
                os.kill(pid, signal.SIGKILL)
                os.waitpid(pid, 0)
            except OSError:
                pass


if __name__ == "__main__":
    main()
