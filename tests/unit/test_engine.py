"""The engine without FUSE, on processes of our own: the cache rules with an injected clock, sources, the API."""

from __future__ import annotations

import math
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import pytest

import totmapsfs
from support.fakeproc import FakeProc
from support.kernel import fields, read_rollup
from totmapsfs.engine import HEAVY_FACTOR, Engine, SourceUnavailable
from totmapsfs.errors import NoSuchProcess
from totmapsfs.proc import BufferPool, ProcReader


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


def starttime(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[19])


# -- cache ------------------------------------------------------------------


def test_hit_within_max_age_for_an_idle_process(workloads, clock: Clock) -> None:
    w = workloads()
    engine = Engine(max_age=5, clock=clock)
    with w.stopped():
        first = engine.totmaps(w.pid)
        clock.now += 4.9
        assert engine.totmaps(w.pid) is first
    assert (engine.counters.misses, engine.counters.hits) == (1, 1)


def test_miss_after_max_age(workloads, clock: Clock) -> None:
    w = workloads()
    engine = Engine(max_age=5, clock=clock)
    with w.stopped():
        engine.totmaps(w.pid)
        clock.now += 5.0
        engine.totmaps(w.pid)
    assert (engine.counters.misses, engine.counters.hits) == (2, 0)


def test_immediate_miss_when_the_process_touches_memory(workloads, clock: Clock) -> None:
    w = workloads()
    engine = Engine(max_age=3600, clock=clock)
    before = engine.totmaps(w.pid).fields
    w.touch(64)
    after = engine.totmaps(w.pid).fields
    assert engine.counters.hits == 0
    assert after["Anonymous"] >= before["Anonymous"] + 256
    with w.stopped():
        assert engine.totmaps(w.pid).fields == read_rollup(w.pid)


class SlowClock(Clock):
    """Every reading is ``step`` later than the last: each walk looks as long as a slow (emulated) machine's."""

    def __init__(self, step: float) -> None:
        super().__init__()
        self.step = step

    def __call__(self) -> float:
        self.now += self.step
        return self.now


def test_a_light_process_is_fresh_on_every_read_however_slow_the_walk(workloads) -> None:
    w = workloads()  # ~80 kB of page tables: light
    clock = SlowClock(0.05)  # every walk "takes" 100 ms: past any CPU-time exemption there was (1 ms)
    engine = Engine(max_age=3600, duty=0.05, clock=clock)
    first = engine.totmaps(w.pid)
    assert engine.cache.heavy == pytest.approx(HEAVY_FACTOR * 0.05, rel=1)  # our own walk, on the same clock
    for round in range(3):
        before = engine.totmaps(w.pid).fields if round else first.fields
        w.touch(64)
        after = engine.totmaps(w.pid).fields
        assert after["Anonymous"] >= before["Anonymous"] + 256, f"round {round}: a held answer"
    assert engine.counters.held_not_due == 0


def test_a_big_process_is_held_for_the_duty_however_fast_the_walk(workloads) -> None:
    w = workloads("--private", "256")  # ~600 kB of page tables: not light
    clock = SlowClock(0.0002)  # a walk looks 0.4 ms long (once exempt, under 1 ms): due again 8 ms after it began
    engine = Engine(max_age=3600, duty=0.05, clock=clock)
    first = engine.totmaps(w.pid)
    w.touch(64)
    assert engine.totmaps(w.pid) is first and engine.counters.held_not_due == 1
    clock.now += 1
    assert engine.totmaps(w.pid).fields["Anonymous"] >= first.fields["Anonymous"] + 256


def test_max_age_zero_never_caches(workloads, clock: Clock) -> None:
    w = workloads()
    engine = Engine(max_age=0, clock=clock)
    with w.stopped():
        for _ in range(5):
            engine.totmaps(w.pid)
    assert (engine.counters.misses, engine.counters.hits, len(engine)) == (5, 0, 0)


def test_concurrent_readers_share_one_computation(workloads) -> None:
    w = workloads("--mappings", "8000")
    computing = threading.Event()
    release = threading.Event()
    real = totmapsfs.parse_smaps

    def slow_parse(data):
        computing.set()
        release.wait(10)
        return real(data)

    engine = Engine(max_age=0, parse=slow_parse)
    results: list = []
    with w.stopped():
        threads = [threading.Thread(target=lambda: results.append(engine.totmaps(w.pid))) for _ in range(4)]
        threads[0].start()
        assert computing.wait(10)
        for t in threads[1:]:
            t.start()
        deadline = time.monotonic() + 10
        while engine.counters.joined < 3:
            assert time.monotonic() < deadline, f"only {engine.counters.joined} of 3 readers joined in 10 s"
            time.sleep(0.01)
        release.set()
        for t in threads:
            t.join(10)
            assert not t.is_alive()
    assert engine.counters.misses == 1 and engine.counters.joined == 3
    assert len(results) == 4 and all(r is results[0] for r in results)


def test_keyed_by_pid_and_start_time(workloads, clock: Clock) -> None:
    """A reused pid is another key: the process's start time is in it (the cache tests show a new key misses)."""
    w = workloads()
    engine = Engine(max_age=3600, clock=clock)
    engine.totmaps(w.pid)
    assert engine.cache.keys() == [(w.pid, starttime(w.pid))]


def test_no_answer_kept_from_within_the_start_tick(workloads, clock: Clock) -> None:
    """A pid reused within one clock tick has the same (pid, start time): such answers are not cached."""
    w = workloads()
    start = starttime(w.pid)
    now = [start]  # the start tick has not ended yet
    engine = Engine(max_age=3600, clock=clock, tick=lambda: now[0])
    with w.stopped():
        engine.totmaps(w.pid)
        engine.totmaps(w.pid)
        assert (engine.counters.misses, engine.counters.hits, len(engine)) == (2, 0, 0)
        now[0] = start + 1  # from the next tick on, any successor has another start time
        engine.totmaps(w.pid)
        engine.totmaps(w.pid)
    assert (engine.counters.misses, engine.counters.hits, len(engine)) == (3, 1, 1)


# -- the Python API ----------------------------------------------------------


def test_api_without_fuse(workloads) -> None:
    w = workloads("--mappings", "100")
    with w.stopped():
        assert dict(totmapsfs.totmaps(w.pid)) == read_rollup(w.pid)
        smaps = totmapsfs.totmaps(w.pid, source="smaps")
        assert smaps["Rss"] == read_rollup(w.pid)["Rss"]
    with pytest.raises(NoSuchProcess):
        totmapsfs.totmaps(4194303)


# -- a kernel without smaps_rollup: a fake procfs root ------------------------


@pytest.fixture
def old_kernel_proc(tmp_path: Path, workloads) -> tuple[Path, int, dict[str, int]]:
    """A procfs tree like a 4.9 kernel's: a real process's files, but no smaps_rollup."""
    w = workloads("--mappings", "50")
    fake = FakeProc(tmp_path / "proc", self_link=str(w.pid))
    with w.stopped():
        d = fake.copy(w.pid, ("stat", "status", "smaps"))
        expected = fields((d / "smaps").read_bytes())
    return fake.root, w.pid, expected


def test_auto_falls_back_to_smaps_without_rollup(old_kernel_proc) -> None:
    root, pid, expected = old_kernel_proc
    engine = Engine(ProcReader(str(root)), "auto")
    assert engine.source.value == "smaps"
    assert engine.totmaps(pid).fields == expected
    assert "Pss_Anon" not in expected  # a rollup-only field: smaps does not carry it


def test_rollup_source_refused_without_rollup(old_kernel_proc) -> None:
    root, _, _ = old_kernel_proc
    with pytest.raises(SourceUnavailable, match="smaps_rollup"):
        Engine(ProcReader(str(root)), "rollup")


@pytest.mark.parametrize("buffer", [64, 333, 4096, 1 << 20])
def test_smaps_parsed_run_by_run_sums_as_the_whole_text(old_kernel_proc, buffer: int) -> None:
    """Process.memory_lines hands the parser runs of whole lines: any buffer size, a line longer than it."""
    root, pid, _ = old_kernel_proc
    smaps = Path(root, str(pid), "smaps")
    long_header = b"7f0000000000-7f0000001000 r--p 00000000 00:00 0    /" + b"x" * 700 + b"\n"
    smaps.write_bytes(long_header + smaps.read_bytes() + long_header + b"Rss:  5 kB")  # the last line unended
    reader = ProcReader(str(root))
    reader.buffers = BufferPool(initial=buffer)
    assert Engine(reader, "smaps", max_age=0).totmaps(pid).fields == totmapsfs.parse_smaps(smaps.read_bytes())


# A process with small page tables but very many mappings (none of them
# touched): light by its page tables, but a walk of it is long.
MANY_EMPTY_MAPPINGS = """
import ctypes, mmap, signal, sys
libc = ctypes.CDLL(None, use_errno=True)
libc.mmap.restype = ctypes.c_void_p
libc.mmap.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int, ctypes.c_int, ctypes.c_int, ctypes.c_long]
n, page = int(sys.argv[1]), mmap.PAGESIZE
spare = mmap.mmap(-1, 64 * page)
base = libc.mmap(None, 2 * n * page, 0, 0x22, -1, 0)  # PROT_NONE, MAP_PRIVATE|MAP_ANONYMOUS
for i in range(n):  # every other page readable: 2n mappings the kernel cannot merge (max_map_count: 65530)
    libc.mmap(base + 2 * i * page, page, 1, 0x32, -1, 0)  # PROT_READ, ...|MAP_FIXED
touched = iter(range(64))
signal.signal(signal.SIGUSR1, lambda *_: spare.__setitem__(next(touched) * page, 1))
print("ready", flush=True)
sys.stdin.read()
"""


def test_a_light_process_whose_walk_is_long_is_held_all_the_same(workloads) -> None:
    """Small page tables, 60,000 mappings: its walk is far more than HEAVY_FACTOR of a small process's: held.

    The reference is a small Python process, as the daemon is (this test
    process, which the engine would walk by default, is much bigger).
    """
    small = workloads()
    p = subprocess.Popen(
        [sys.executable, "-c", MANY_EMPTY_MAPPINGS, "30000"], stdin=subprocess.PIPE, stdout=subprocess.PIPE
    )
    try:
        assert p.stdout is not None and p.stdout.readline() == b"ready\n"
        engine = Engine(max_age=3600, duty=0.05, reference=small.pid)
        with engine.reader.open(p.pid) as proc:
            assert engine.check(proc).light, "set-up: its page tables should be small"
        first = engine.totmaps(p.pid)
        assert first.walk * 1e3 > 0 and engine.cache.heavy < math.inf
        assert first.walk >= engine.cache.heavy, (
            f"a {first.walk * 1e3:.1f} ms walk not heavy, heavy from {engine.cache.heavy * 1e3:.1f} ms"
        )
        os.kill(p.pid, signal.SIGUSR1)  # it touches a page: its memory generation moves
        deadline = time.monotonic() + 10
        while engine.counters.held_not_due == 0 and engine.counters.misses == 1:
            assert time.monotonic() < deadline, "it never changed"
            assert engine.totmaps(p.pid) is first
        assert engine.counters.held_not_due >= 1 and engine.counters.misses == 1
    finally:
        p.kill()
        p.communicate()
