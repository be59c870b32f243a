"""Load: eight reader processes against one daemon for a bounded time, and readers killed mid-read.

TOTMAPSFS_STRESS_SECONDS (default 5) is how long the eight readers run, and
how many batches of eight readers the kill test kills. The long version:

    TOTMAPSFS_STRESS_SECONDS=120 make test PYTEST_ARGS="tests/stress/test_load.py"

Figures (reads/s, latency percentiles, the daemon's RSS, descriptors and
threads before and after) are printed straight to the terminal, with or
without -s, and recorded as junit-xml properties.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import statistics
import subprocess
import threading
import time
from collections import Counter
from pathlib import Path

import psutil
import pytest

from support import PROGRAMS
from support.figures import report
from totmapsfs.harness import PY, Mount, wait_for
from totmapsfs.proc import BufferPool

SECONDS = float(os.environ.get("TOTMAPSFS_STRESS_SECONDS", "5"))
READERS = 8
THREADS = 4  # --threads: small, so that the thread bound below means something
# Threads the daemon may have at rest: the main one, two pools of THREADS
# workers (trio keeps idle ones for 10 s) and a whole-system view's helpers
# if one is finishing (_views.PASS_THREADS - 1 <= 3).
MAX_THREADS = 1 + 2 * THREADS + 3
RSS_SLACK = 4 << 20  # bytes: what the allocator may keep after a busy phase, once warm


def daemon_stats(pid: int) -> dict[str, int]:
    p = psutil.Process(pid)
    return {"rss": p.memory_info().rss, "fds": p.num_fds(), "threads": p.num_threads()}


class RssSampler(threading.Thread):
    """Samples the daemon's RSS every 0.2 s until stopped: a slow leak shows as a rising series."""

    def __init__(self, pid: int) -> None:
        super().__init__(daemon=True)
        self.pid, self.samples, self.done = pid, list[int](), threading.Event()
        self.start()

    def run(self) -> None:
        while not self.done.wait(0.2):
            self.samples.append(psutil.Process(self.pid).memory_info().rss)

    def stop(self) -> str:
        """The samples at 0, 25, 50, 75 and 100% of the run, and the peak, in MB."""
        self.done.set()
        self.join()
        ss = self.samples or [psutil.Process(self.pid).memory_info().rss]
        marks = [ss[min(len(ss) - 1, len(ss) * q // 4)] for q in range(5)]
        return " ".join(f"{m / 2**20:.1f}" for m in marks) + f" MB (peak {mb(max(ss))})"


def start_reader(mount: Path, seconds: float, seed: int, paths: list[str]) -> subprocess.Popen:
    return subprocess.Popen(
        [PY, str(PROGRAMS / "load_reader.py"), str(mount), str(seconds), str(seed), *paths],
        stdout=subprocess.PIPE,
        text=True,
    )


def run_readers(mount: Path, seconds: float, paths: list[str]) -> tuple[int, Counter[str], list[int]]:
    """READERS processes reading ``paths`` for ``seconds``: (reads, errors by kind, latencies in us)."""
    procs = [start_reader(mount, seconds, seed, paths) for seed in range(READERS)]
    reads, errors, lat = 0, Counter[str](), list[int]()
    for p in procs:
        out, _ = p.communicate(timeout=seconds + 120)
        assert p.returncode == 0, out
        result = json.loads(out.splitlines()[-1])
        assert result["reads"] > 0, "a reader never completed a read"
        reads += result["reads"]
        errors.update(result["errors"])
        lat.extend(result["lat_us"])
    return reads, errors, lat


def mb(n: int) -> str:
    return f"{n / 2**20:.1f} MB"


def test_eight_readers(mount_factory, workloads, request: pytest.FixtureRequest) -> None:
    """Eight processes read a mix (per-pid files, one of 2000 mappings, self, ls, every view): no error, no growth."""
    # max-age 0.2: entries expire many times a second, so the cache is filled,
    # hit, joined by concurrent readers and evicted all through the run.
    m = mount_factory("--max-age", "0.2", "--threads", str(THREADS))
    big, small = workloads("--mappings", "2000"), workloads("--mappings", "200")
    shared = workloads("--shared", "16", "--children", "2")
    pids = [big.pid, small.pid, shared.pid, *shared.children]
    paths = (
        [f"{pid}/totmaps" for pid in pids] * 3
        + ["self/totmaps"] * 3
        + ["."] * 3
        + ["summary", "metrics", "totmaps", "cgroup/totmaps"]
    )
    daemon = m.proc.pid
    # Warm-up: thread pools, caches and the allocator reach their working size.
    _, errors, _ = run_readers(m.path, min(2.0, SECONDS), paths)
    assert not errors, errors
    before = daemon_stats(daemon)
    sampler = RssSampler(daemon)
    reads, errors, lat = run_readers(m.path, SECONDS, paths)
    series = sampler.stop()
    time.sleep(0.5)  # replies to the last releases
    after = daemon_stats(daemon)
    q = statistics.quantiles(lat, n=100)
    report(
        request,
        "load",
        seconds=f"{SECONDS:g}",
        readers=READERS,
        reads=reads,
        reads_per_s=f"{reads / SECONDS:.0f}",
        p50_ms=f"{statistics.median(lat) / 1e3:.2f}",
        p99_ms=f"{q[98] / 1e3:.2f}",
        max_ms=f"{max(lat) / 1e3:.1f}",
        errors=sum(errors.values()),
        rss=f"{mb(before['rss'])} -> {mb(after['rss'])}",
        rss_during=series,
        fds=f"{before['fds']} -> {after['fds']}",
        threads=f"{before['threads']} -> {after['threads']}",
    )
    assert not errors, errors
    assert m.proc.poll() is None
    assert after["fds"] == before["fds"], (before, after)
    assert after["threads"] <= MAX_THREADS, (before, after)
    assert after["rss"] <= before["rss"] * 1.1 + RSS_SLACK, (before, after)
    assert max(lat) < 30e6, "one read took longer than 30 s: something hung"


OPCODE = re.compile(r"^unique: (\d+), opcode: (\w+)")
REPLY = re.compile(r"^\s+unique: (\d+), (success|error)")


def handles(log: str) -> Counter[str]:
    """Successful requests by opcode, from libfuse's --debug log (one line per request, one per reply)."""
    opcodes: dict[str, str] = {}
    done = Counter[str]()
    for line in log.splitlines():
        if match := OPCODE.match(line):
            opcodes[match[1]] = match[2]
        elif (match := REPLY.match(line)) and match[2] == "success":
            done[opcodes.get(match[1], "?")] += 1
    done["INTERRUPT"] = sum(op == "INTERRUPT" for op in opcodes.values())
    return done


def kill_batch(mount: Path, paths: list[str], rng: random.Random, daemon: Mount | None = None) -> tuple[int, int]:
    """READERS readers started, then each SIGKILLed at a random moment: (kills, kills inside a FUSE request).

    A killed reader inside a request the daemon has taken waits, uninterruptibly,
    for its answer: one that does not end within 30 s is a request the daemon
    never answered, and the failure then shows where the daemon's threads are.
    """
    readers = [start_reader(mount, 60, rng.randrange(1 << 30), paths) for _ in range(READERS)]
    time.sleep(0.3)  # past interpreter start-up: into the read loop
    in_request = 0
    for p in rng.sample(readers, len(readers)):
        time.sleep(rng.uniform(0, 0.05))
        try:
            in_request += Path(f"/proc/{p.pid}/wchan").read_text() == "request_wait_answer"
        except OSError:
            pass
        p.kill()
    for p in readers:
        try:
            p.communicate(timeout=30)  # reaps it and closes its pipe
        except subprocess.TimeoutExpired:
            wchan = Path(f"/proc/{p.pid}/wchan").read_text(errors="replace")
            for q in readers:
                q.kill()
            if daemon is not None:
                os.kill(daemon.proc.pid, signal.SIGUSR1)  # faulthandler: every thread's stack into the log
                time.sleep(1)
            tail = daemon.log_text()[-6000:] if daemon is not None else ""
            raise AssertionError(
                f"a killed reader still waits after 30 s (wchan {wchan}); daemon log:\n{tail}"
            ) from None
    return len(readers), in_request


def test_readers_killed_mid_read_leak_nothing(mount_factory, workloads, request: pytest.FixtureRequest) -> None:
    """SIGKILLed while the daemon computes their answer, readers leave no handle, descriptor or thread behind."""
    # --source smaps of 8000 mappings: ~6 MB of smaps text per open, the slowest
    # file there is, so that most kills land while the request is in the daemon.
    # A fixed mmap threshold: glibc would otherwise raise it after the first
    # multi-megabyte buffer is freed and keep later ones on its heap, and RSS
    # would show the allocator's high-water mark instead of live memory.
    m = mount_factory(
        "--source",
        "smaps",
        "--max-age",
        "0",
        "--threads",
        str(THREADS),
        "--debug",
        env={"MALLOC_MMAP_THRESHOLD_": str(128 << 10)},
    )
    slow = workloads("--mappings", "8000")
    paths = [f"{slow.pid}/totmaps"] * 4 + ["summary", "."]
    daemon = m.proc.pid
    rng = random.Random(0)
    for _ in range(2):  # warm-up: pools and buffers reach their working size
        kill_batch(m.path, paths, rng, m)
    before = daemon_stats(daemon)
    kills, in_request, rss = 0, 0, []
    for _ in range(max(1, round(SECONDS))):
        k, r = kill_batch(m.path, paths, rng, m)
        kills, in_request = kills + k, in_request + r
        rss.append(psutil.Process(daemon).memory_info().rss)
    # Every open the daemon answered is released by the kernel once its
    # reader is gone: the counts in libfuse's log must meet.
    wait_for(lambda: balanced(handles(m.log_text())), 10, "a release for every open")
    time.sleep(0.5)
    after = daemon_stats(daemon)
    done = handles(m.log_text())
    report(
        request,
        "killed readers",
        kills=kills,
        in_fuse_request=in_request,
        opens=done["OPEN"],
        releases=done["RELEASE"],
        opendirs=done["OPENDIR"],
        releasedirs=done["RELEASEDIR"],
        interrupts=done["INTERRUPT"],
        rss=f"{mb(before['rss'])} -> {mb(after['rss'])} (after each batch {mb(min(rss))} to {mb(max(rss))})",
        fds=f"{before['fds']} -> {after['fds']}",
        threads=f"{before['threads']} -> {after['threads']}",
    )
    assert in_request > 0, "no kill landed inside a FUSE request: the test did not test anything"
    assert m.proc.poll() is None and b"\nPss:" in m.read("self")
    assert after["fds"] == before["fds"], (before, after)
    assert after["threads"] <= MAX_THREADS, (before, after)
    # The buffer pool may end up holding a few more of its smaps-sized buffers than it did before.
    size = len(Path(f"/proc/{slow.pid}/smaps").read_bytes())
    pooled = BufferPool().keep * (1 << (size - 1).bit_length())  # buffers grow by doubling
    assert after["rss"] <= before["rss"] * 1.1 + RSS_SLACK + pooled, (before, after, pooled)


def balanced(done: Counter[str]) -> bool:
    return done["OPEN"] == done["RELEASE"] and done["OPENDIR"] == done["RELEASEDIR"]
