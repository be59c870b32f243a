"""Worker threads for what must not run on the event loop, their answers handed back through one eventfd per pool.

Reading smaps makes the kernel take the target's mmap lock, so it may block
for as long as another thread holds that lock for writing (a big munmap, a
fault stuck on a dead NFS server): such reads run here, never on the trio
thread, which keeps answering everyone else.

A hop costs what it costs to wake a thread twice, and that is the price of a
cold read: measured inside FUSE on this project's 2-vCPU VM, trio's
``to_thread.run_sync`` added 229 us of CPU to a read, a persistent worker
handing back through ``run_sync_soon`` 135 us, and one handing back through an
eventfd that the waiting task ``wait_readable``s 112 us (the benchmark's hop
row keeps measuring it). So: persistent threads (started as jobs need them,
up to ``threads``, then kept), a SimpleQueue in; out, the worker appends the
job to a done queue and bumps the pool's eventfd, and one system task of the
pool, woken by it, reschedules each waiting task. One eventfd for the pool's
life (a descriptor per job in flight would grow with the peak of stuck
reads); no limiter, no contextvars copy, no thread renaming.

A job whose waiter is cancelled (the daemon stopping) is abandoned: it still
runs to its end in its thread (a read stuck in the kernel cannot be
interrupted), and its answer is dropped.
"""

from __future__ import annotations

import collections
import os
import queue
import threading
from collections.abc import Callable, Sequence
from typing import Any, Generic, TypeVar

import outcome
import trio

R = TypeVar("R")


class _Job(Generic[R]):
    __slots__ = ("fn", "result", "task")

    def __init__(self, fn: Callable[[], R]) -> None:
        self.fn = fn
        self.task: trio.lowlevel.Task | None = None  # the task waiting for it, while one is
        self.result: outcome.Outcome[R] | None = None


class Pool:
    """Up to ``threads`` persistent worker threads; ``await run(fn)`` is ``fn()`` done in one of them."""

    def __init__(self, threads: int, name: str) -> None:
        if threads < 1:
            raise ValueError("a pool needs at least one thread")
        self.name = name
        self.max_threads = threads
        self._queue: queue.SimpleQueue[_Job[Any] | None] = queue.SimpleQueue()
        self._done: collections.deque[_Job[Any]] = collections.deque()
        self._efd = os.eventfd(0, os.EFD_CLOEXEC | os.EFD_NONBLOCK)
        self._lock = threading.Lock()
        self._threads = 0
        self._idle = 0
        self._queued = 0
        self._closed = False
        self._run_token: trio.lowlevel.TrioToken | None = None  # the trio run our hand-back task serves

    @property
    def threads(self) -> int:
        return self._threads

    async def run(self, fn: Callable[[], R]) -> R:
        job = self._submit(fn)
        return (await self._wait(job)).unwrap()

    async def run_all(self, fns: Sequence[Callable[[], R]]) -> list[R]:
        """Every ``fn()`` at once (as far as there are threads), in order; the first failure raised after all ended."""
        jobs = [self._submit(fn) for fn in fns]
        results = [await self._wait(job) for job in jobs]
        return [r.unwrap() for r in results]

    def _submit(self, fn: Callable[[], R]) -> _Job[R]:
        token = trio.lowlevel.current_trio_token()
        if self._run_token is not token:  # the first job of this trio run (the tests make many runs)
            self._run_token = token
            trio.lowlevel.spawn_system_task(self._hand_back, name=f"{self.name}-hand-back")
        job = _Job(fn)
        with self._lock:
            self._queued += 1
            spawn = self._queued > self._idle and self._threads < self.max_threads
            if spawn:
                self._threads += 1
        if spawn:
            # Daemon threads: one stuck in the kernel must not hold up the exit.
            threading.Thread(target=self._work, name=f"{self.name}-{self._threads}", daemon=True).start()
        self._queue.put(job)
        return job

    async def _wait(self, job: _Job[R]) -> outcome.Outcome[R]:
        # The hand-back task and this one both run on the trio thread: once
        # job.task is set, the job's answer reaches us through it; a job done
        # before we got here is simply read.
        if job.result is None:
            job.task = trio.lowlevel.current_task()

            def abandon(_: object) -> trio.lowlevel.Abort:
                job.task = None  # its answer, when it comes, is dropped
                return trio.lowlevel.Abort.SUCCEEDED

            await trio.lowlevel.wait_task_rescheduled(abandon)
        assert job.result is not None
        return job.result

    async def _hand_back(self) -> None:
        """The pool's system task: each time a worker bumps the eventfd, wake the waiters of the jobs done."""
        efd, done, reschedule = self._efd, self._done, trio.lowlevel.reschedule
        while True:
            await trio.lowlevel.wait_readable(efd)
            os.eventfd_read(efd)
            while done:
                job = done.popleft()
                if job.task is not None:
                    reschedule(job.task)  # the waiter reads job.result
                    job.task = None

    def _work(self) -> None:
        while True:
            with self._lock:
                self._idle += 1
            job = self._queue.get()
            with self._lock:
                self._idle -= 1
                self._queued -= 1
            if job is None:
                self._retire()
                return
            job.result = outcome.capture(job.fn)
            self._done.append(job)
            os.eventfd_write(self._efd, 1)
            del job  # nothing of the last job stays alive while we wait for the next

    def _retire(self) -> None:
        """A worker's end after close: the last one out closes the eventfd, which no worker can write to any more."""
        with self._lock:
            self._threads -= 1
            last = self._threads == 0
        if last:
            os.close(self._efd)

    def close(self) -> None:
        """Let idle threads end (busy ones end after their job), then the eventfd; for the tests, which make many pools.

        Only once the trio runs the pool served have ended: a run's hand-back
        task waits on the eventfd. No job may be submitted after.
        """
        with self._lock:
            if self._closed:
                return
            self._closed = True
            threads = self._threads
        if threads == 0:
            os.close(self._efd)
        for _ in range(threads):
            self._queue.put(None)
