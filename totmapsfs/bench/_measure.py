"""The benchmark's measurements: whole commands, in-process reads, parsers, concurrent readers, daemon footprint."""

from __future__ import annotations

import os
import re
import shutil
import statistics
import threading
import time
from collections.abc import Callable, Mapping, Sequence

from ..proc import read_fd_into

Samples = dict[str, list[float]]  # variant -> seconds, one per round

_ENV = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "LC_ALL": "C"}
_DEVNULL_OUT = [(os.POSIX_SPAWN_OPEN, 1, "/dev/null", os.O_WRONLY, 0)]
AWK_SUM = "/^Rss:/ { rss += $2 } /^Pss:/ { pss += $2 } END { print rss, pss }"


def which(name: str) -> str:
    path = shutil.which(name)
    if path is None:
        raise FileNotFoundError(f"{name} not found in PATH")
    return path


def run_command(argv: Sequence[str]) -> None:
    """Run a whole process with stdout to /dev/null, as a shell would; fail unless it exits 0."""
    pid = os.posix_spawn(argv[0], list(argv), _ENV, file_actions=_DEVNULL_OUT)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if code != 0:
        raise RuntimeError(f"{' '.join(argv)} exited {code}")


# What one read(2) asks for: cat's buffer (coreutils' io_blksize). Asking for
# more costs a FUSE reader more in itself: for a direct_io read the kernel pins
# the caller's whole buffer (fuse_get_user_pages) before the daemon answers.
CHUNK = 128 * 1024


class Reader:
    """open/read-to-EOF/close of one path into a reused buffer, CHUNK bytes a read: what a monitoring agent does."""

    def __init__(self, size: int = 1 << 20) -> None:
        self.buf = bytearray(size)
        self.view = memoryview(self.buf)

    def read(self, path: str | os.PathLike[str]) -> int:
        """Bytes read; the whole file is in ``self.buf[:n]``. An empty read is an error."""
        fd = os.open(path, os.O_RDONLY | os.O_CLOEXEC)
        self.view.release()  # the buffer may grow for a bigger file than any before
        try:
            total = read_fd_into(fd, self.buf, CHUNK)
        finally:
            self.view = memoryview(self.buf)
            os.close(fd)
        if total == 0:
            raise RuntimeError(f"{path} read empty")
        return total

    def read_bytes(self, path: str | os.PathLike[str]) -> bytes:
        n = self.read(path)
        return bytes(self.view[:n])


def interleaved(variants: Mapping[str, Callable[[], object]], rounds: int) -> Samples:
    """Time every variant once per round, round-robin, so noise hits them all alike."""
    out: Samples = {name: [] for name in variants}
    clock = time.perf_counter_ns
    items = list(variants.items())
    for _ in range(rounds):
        for name, fn in items:
            t0 = clock()
            fn()
            out[name].append((clock() - t0) / 1e9)
    return out


def medians(samples: Samples) -> dict[str, float]:
    return {name: statistics.median(xs) for name, xs in samples.items()}


# -- c. parsers --------------------------------------------------------------

_REGEX = re.compile(rb"^(\w+):\s+(\d+) kB$", re.MULTILINE)


def regex_parse(data: bytes) -> dict[str, int]:
    """The usual script: one regex over the text, a dict of sums (skips nothing)."""
    out: dict[bytes, int] = {}
    for name, value in _REGEX.findall(data):
        out[name] = out.get(name, 0) + int(value)
    return {k.decode(): v for k, v in out.items()}


def time_per_call(fn: Callable[[], object], min_time: float, min_calls: int = 3) -> float:
    """Median seconds per call over at least ``min_calls`` calls and ``min_time`` seconds."""
    xs: list[float] = []
    start = time.perf_counter()
    while len(xs) < min_calls or time.perf_counter() - start < min_time:
        t0 = time.perf_counter_ns()
        fn()
        xs.append((time.perf_counter_ns() - t0) / 1e9)
    return statistics.median(xs)


# -- d. concurrent readers ----------------------------------------------------


def busy_cpu_seconds() -> float:
    """CPU time spent not idle since boot, all CPUs and all processes (/proc/stat)."""
    with open("/proc/stat", "rb") as f:
        ticks = [int(x) for x in f.readline().split()[1:]]
    idle = ticks[3] + ticks[4]  # idle + iowait
    return (sum(ticks[:8]) - idle) / os.sysconf("SC_CLK_TCK")


def throughput(paths: Sequence[str], duration: float) -> tuple[float, float]:
    """(reads per second, CPUs busy on average) of len(paths) threads, each reading its own path in a loop.

    The CPU figure is machine-wide: the daemon, these readers and anything else running."""
    start = threading.Barrier(len(paths) + 1)
    stop = threading.Event()
    counts = [0] * len(paths)
    errors: list[BaseException] = []

    def reader(i: int, path: str) -> None:
        r = Reader()
        start.wait()
        n = 0
        try:
            while not stop.is_set():
                r.read(path)
                n += 1
        except BaseException as exc:  # reported by the main thread
            errors.append(exc)
        counts[i] = n

    threads = [threading.Thread(target=reader, args=(i, p), daemon=True) for i, p in enumerate(paths)]
    for t in threads:
        t.start()
    start.wait()
    t0, cpu0 = time.perf_counter(), busy_cpu_seconds()
    try:
        time.sleep(duration)
    finally:
        stop.set()
        for t in threads:
            t.join()
    elapsed, cpu = time.perf_counter() - t0, busy_cpu_seconds() - cpu0
    if errors:
        raise errors[0]
    return sum(counts) / elapsed, cpu / elapsed


# -- e. daemon footprint ------------------------------------------------------


def footprint(pid: int) -> tuple[int, int]:
    """(RSS in kB, open fds) of a process."""
    rss = 0
    with open(f"/proc/{pid}/status", "rb") as f:
        for line in f:
            if line.startswith(b"VmRSS:"):
                rss = int(line.split()[1])
    return rss, len(os.listdir(f"/proc/{pid}/fd"))


def hammer(mount_path: str, pids: Sequence[int], reads: int, threads: int = 2) -> int:
    """``reads`` totmaps reads spread over ``pids`` by ``threads`` threads, listing the root
    every 1000 reads; returns how many failed (processes may not vanish, so expect 0)."""
    per_thread = [reads // threads + (1 if i < reads % threads else 0) for i in range(threads)]
    failures = [0] * threads

    def work(i: int, n: int) -> None:
        r = Reader()
        for k in range(n):
            if k % 1000 == 0:
                os.listdir(mount_path)
            try:
                r.read(f"{mount_path}/{pids[(k * threads + i) % len(pids)]}/totmaps")
            except OSError:
                failures[i] += 1

    ts = [threading.Thread(target=work, args=(i, n), daemon=True) for i, n in enumerate(per_thread)]
    for t in ts:
        t.start()
    for t in ts:
        t.join()
    return sum(failures)
