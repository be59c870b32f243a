"""The worker pool without FUSE: answers and errors handed back, the thread bound, a waiter that gives up."""

from __future__ import annotations

import gc
import os
import re
import threading
import time

import pytest
import trio

from totmapsfs.fuse import Pool


def eventfds() -> int:
    """Our open eventfds (each pool holds one)."""
    count = 0
    for name in os.listdir("/proc/self/fd"):
        try:
            count += os.readlink(f"/proc/self/fd/{name}") == "anon_inode:[eventfd]"
        except OSError:
            pass  # the listing's own fd, closed by now
    return count


def test_answers_and_errors_come_back() -> None:
    pool = Pool(4, "test")

    async def main() -> None:
        assert await pool.run(lambda: threading.get_ident()) != threading.get_ident()  # another thread
        assert await pool.run_all([lambda i=i: i * i for i in range(10)]) == [i * i for i in range(10)]
        with pytest.raises(ZeroDivisionError):
            await pool.run(lambda: 1 / 0)
        with pytest.raises(KeyError):  # every job ran to its end before the first failure is raised
            await pool.run_all([lambda: {}["x"], lambda: 2])

    try:
        trio.run(main)
        trio.run(main)  # a second trio run: the pool serves it too
    finally:
        pool.close()


def workers(name: str) -> int:
    return sum(1 for t in threading.enumerate() if t.name.startswith(f"{name}-"))


def other_pools_done() -> None:
    """Wait (10 s at most) for earlier tests' pools to end: the last worker of a closed pool closes its eventfd."""
    gc.collect()  # an earlier test's pool, dropped unclosed, must not close its eventfd during this one
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline and any(
        re.fullmatch(r".+-\d+", t.name) and not t.name.startswith("Thread-") for t in threading.enumerate()
    ):
        time.sleep(0.01)


def test_threads_are_bounded_and_reused() -> None:
    other_pools_done()
    before = eventfds()  # before the pool: its eventfd is counted, and must be gone after close
    pool = Pool(2, "bounded")
    lock, release = threading.Lock(), threading.Event()
    running, most, submitted = [0], [0], [0]

    def held() -> int:
        with lock:
            running[0] += 1
            most[0] = max(most[0], running[0])
        release.wait(10)
        with lock:
            running[0] -= 1
        return 1

    async def main() -> list[int]:
        results: list[int] = []

        async def one() -> None:
            submitted[0] += 1  # pool.run submits before its first checkpoint
            results.append(await pool.run(held))

        async with trio.open_nursery() as nursery:
            for _ in range(3):  # the third waits for a free thread: there are two
                nursery.start_soon(one)
            with trio.fail_after(10):
                while most[0] < 2 or submitted[0] < 3:
                    await trio.sleep(0.01)
            # All three submitted, two running: a pool that broke its bound
            # would have started a third thread in the third submit, already.
            assert workers("bounded") == 2 and running[0] == 2
            release.set()
        return results

    try:
        assert trio.run(main) == [1, 1, 1]
        assert pool.threads == 2 and most[0] == 2
        trio.run(lambda: pool.run_all([lambda: None] * 50))
        assert pool.threads == 2 and eventfds() == before + 1  # no descriptor per job: one eventfd for the pool
    finally:
        pool.close()
    deadline = time.monotonic() + 10
    while (workers("bounded") or eventfds() != before) and time.monotonic() < deadline:
        time.sleep(0.01)  # the workers end (and the last closes the eventfd) in their own threads
    assert workers("bounded") == 0
    assert eventfds() == before  # the eventfd closed with the pool


def test_a_waiter_that_gives_up_leaves_the_pool_working() -> None:
    pool = Pool(2, "test")
    stuck = threading.Event()
    ran = threading.Event()

    def slow() -> str:
        stuck.wait(10)
        ran.set()
        return "late"

    async def main() -> str:
        with trio.move_on_after(0.2):
            await pool.run(slow)
            pytest.fail("the job was not abandoned")
        stuck.set()  # the abandoned job ends in its thread; its answer is dropped
        return await pool.run(lambda: "next")

    try:
        assert trio.run(main) == "next"
        assert ran.wait(10)
    finally:
        pool.close()
