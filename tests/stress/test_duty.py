"""The walk duty and the views' walk budget on real big, busy processes.

The targets are workload.py processes with 1-1.5 GiB of written memory that
fault in a new page every millisecond, so that their memory generation never
holds still and every walk of their smaps gives new numbers: the distinct
answers a reader gets are the walks the daemon made. A walk's cost ``w`` is
measured in the same run by reading the target's smaps_rollup directly.
Figures go to the terminal (support.figures.report). The shares asserted are
measured on a real, possibly loaded machine, so statistical: `make stress`
runs this file, `make test` leaves it out (the duty's and budget's rules
themselves are held exactly in unit/test_cache.py, on an injected clock).
"""

from __future__ import annotations

import statistics
import threading
import time
from pathlib import Path

import pytest

from support.figures import report
from support.pace import EMULATED
from support.views import metrics
from totmapsfs.engine import DEFAULT_DUTY
from totmapsfs.harness import Mount, Workload

BIG = "1536"  # MiB: a walk of 5-15 ms on this machine
POLL = 3.0  # seconds of back-to-back reads
# The shares below hold where a read through the mount costs little beside one
# walk of the target. Emulated (QEMU's TCG, tests/vm/run) it is the other way
# round: on 6.1 a read's p50 was 67 ms with --duty 1 against a 5 ms walk, six
# readers waited 190-250 ms for an 18 ms one, so what they measure is the
# emulated daemon's own cost. The freshness test below is not a share: it runs.
SHARES = pytest.mark.skipif(
    EMULATED, reason="emulated CPU: a read through the mount costs more than the walk it shares out (67 ms vs 5 ms)"
)


def walk_seconds(pid: int, times: int = 9) -> float:
    """The median time of a direct read of the process's smaps_rollup: one walk."""
    took = []
    for _ in range(times):
        t0 = time.perf_counter()
        Path(f"/proc/{pid}/smaps_rollup").read_bytes()
        took.append(time.perf_counter() - t0)
    return statistics.median(took)


def poll(path: Path, seconds: float) -> tuple[list[float], set[bytes], float]:
    """Read ``path`` back to back for ``seconds``: each read's time, the distinct answers, the time taken."""
    took: list[float] = []
    seen: set[bytes] = set()
    start = time.perf_counter()
    while (now := time.perf_counter()) - start < seconds:
        seen.add(path.read_bytes())
        took.append(time.perf_counter() - now)
    return took, seen, time.perf_counter() - start


def busy(workloads, mib: str = BIG) -> Workload:
    return workloads("--private", mib, "--busy", "1")


@SHARES
def test_a_busy_process_is_walked_for_the_duty_and_readers_do_not_wait(mount_factory, workloads, request) -> None:
    big = busy(workloads)
    w = walk_seconds(big.pid)
    figures: dict[str, tuple[float, float, int]] = {}
    for duty in ("1", str(DEFAULT_DUTY)):
        mount = mount_factory("--duty", duty, name=f"duty-{duty}")
        took, seen, elapsed = poll(mount.file(big.pid), POLL)
        figures[duty] = (len(seen) * w / elapsed, statistics.median(took), len(took))
        mount.stop()
    share, p50, reads = figures[str(DEFAULT_DUTY)]
    unbounded, unbounded_p50, _ = figures["1"]
    report(
        request,
        "walk duty, one reader",
        walk_ms=round(w * 1e3, 1),
        unbounded_walked=f"{unbounded:.0%}",
        unbounded_read_p50_ms=round(unbounded_p50 * 1e3, 2),
        walked=f"{share:.1%}",
        read_p50_ms=round(p50 * 1e3, 3),
        reads=reads,
    )
    assert unbounded > 0.4, f"with no bound the reader should keep the target walked; it was {unbounded:.0%}"
    assert DEFAULT_DUTY / 3 <= share <= DEFAULT_DUTY * 3, f"walked {share:.1%} of the time, duty {DEFAULT_DUTY:.0%}"
    assert p50 < w / 5, f"readers waited {p50 * 1e3:.2f} ms (p50) for a {w * 1e3:.1f} ms walk"


@SHARES
def test_many_readers_share_the_duty(mount_factory, workloads, request) -> None:
    big = busy(workloads)
    w = walk_seconds(big.pid)
    mount = mount_factory()
    results: list[tuple[list[float], set[bytes], float]] = []

    def reader() -> None:
        results.append(poll(mount.file(big.pid), POLL))

    threads = [threading.Thread(target=reader) for _ in range(6)]
    for t in threads:
        t.start()
    for t in threads:
        t.join(POLL + 30)
    assert len(results) == 6
    answers = set().union(*(seen for _, seen, _ in results))
    share = len(answers) * w / max(elapsed for _, _, elapsed in results)
    p50s = [statistics.median(took) for took, _, _ in results]
    report(
        request,
        "walk duty, six readers",
        walk_ms=round(w * 1e3, 1),
        walks=len(answers),
        reads=sum(len(t) for t, _, _ in results),
        walked=f"{share:.1%}",
        read_p50s_ms="/".join(f"{p * 1e3:.2f}" for p in p50s),
    )
    assert share <= DEFAULT_DUTY * 3, f"six readers had the target walked {share:.1%} of the time"
    assert max(p50s) < w / 2, f"a reader waited {max(p50s) * 1e3:.2f} ms (p50) for a {w * 1e3:.1f} ms walk"


def test_a_small_process_beside_a_busy_one_is_fresh_on_the_next_read(mount_factory, workloads) -> None:
    big, small = busy(workloads), workloads()
    mount = mount_factory()
    stop = threading.Event()

    def hammer() -> None:
        while not stop.is_set():
            mount.read(big.pid)

    hammering = threading.Thread(target=hammer)
    hammering.start()
    try:
        for _ in range(5):
            before = fields(mount.read(small.pid))["Anonymous"]
            small.touch(256)  # 1 MiB
            after = fields(mount.read(small.pid))["Anonymous"]
            assert after >= before + 1024, f"the read right after the small process grew said {after} kB"
    finally:
        stop.set()
        hammering.join(30)


def fields(text: bytes) -> dict[str, int]:
    return {line.split()[0].rstrip(":"): int(line.split()[1]) for line in text.decode().splitlines() if ":" in line}


def view_walking(mount: Mount, seconds: float) -> tuple[float, int, int, dict[int, float]]:
    """Read MOUNT/metrics back to back: (walk seconds spent meanwhile, reads, answers deferred, last ages by pid)."""

    def counters(text: str) -> tuple[float, float, dict[int, float]]:
        fams = metrics(text)
        spent = sum(s.value for s in fams["totmapsfs_walk_seconds"])
        deferred = sum(s.value for s in fams["totmapsfs_held_answers"] if s.labels["reason"] == "budget")
        ages = {int(s.labels["pid"]): s.value for s in fams.get("totmapsfs_process_age_seconds", [])}
        return spent, deferred, ages

    first = counters(mount.path.joinpath("metrics").read_text())
    start, reads, last = time.perf_counter(), 0, first
    while time.perf_counter() - start < seconds:
        last = counters(mount.path.joinpath("metrics").read_text())
        reads += 1
    return last[0] - first[0], reads, int(last[1] - first[1]), last[2]


@SHARES
def test_the_views_walk_budget_degrades_to_older_answers(mount_factory, workloads, request) -> None:
    bigs = [busy(workloads, "1024") for _ in range(3)]
    w = sum(walk_seconds(b.pid, 5) for b in bigs)
    budget = 0.05  # of one CPU; its bucket holds 10 s of it: 0.5 s of walking
    seconds = 4.0
    out: dict[str, tuple[float, int, int, dict[int, float]]] = {}
    for setting in ("off", str(budget)):
        mount = mount_factory("--duty", "1", "--walk-budget", setting, name=f"budget-{setting}")
        mount.path.joinpath("metrics").read_bytes()  # the first pass walks everything, budget or not
        out[setting] = view_walking(mount, seconds)
        mount.stop()
    spent, reads, deferred, ages = out[str(budget)]
    free_spent, free_reads, _, _ = out["off"]
    report(
        request,
        "views' walk budget",
        walk_all_three_ms=round(w * 1e3),
        unbounded_cpu=f"{free_spent / seconds:.0%}",
        unbounded_reads=free_reads,
        budget=budget,
        cpu=f"{spent / seconds:.1%}",
        reads=reads,
        deferred=deferred,
        ages_s="/".join(f"{ages.get(b.pid, -1):.1f}" for b in bigs),
    )
    # The bucket's 0.5 s, the budget's share, and one walk of each in debt at most.
    bound = 0.5 + budget * seconds + w
    # Unbounded, the same reads walk well past that bound (so the budget had
    # something to stop). Not a fixed share of it: on a loaded box (CI beside
    # other work) unbounded walking came to 1.21 s against 0.65 s budgeted.
    assert free_spent > bound, f"unbounded views walked {free_spent:.2f} s: too little to test a budget"
    assert spent <= bound, f"{spent:.2f} s of walking under a {budget:g} CPU budget"
    assert deferred > 0, "a spent budget should give older answers instead of walks"
    assert all(ages.get(b.pid, 1e9) < seconds for b in bigs), f"every process gets its turn: ages {ages}"
