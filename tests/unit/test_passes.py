"""A view's pass over many processes, split among threads or not: the same rows; a failing process left out."""

from __future__ import annotations

import contextlib
import errno
import os
import threading
from collections.abc import Callable

import pytest
import trio

from support.fakeproc import FakeProc
from support.kernel import read_rollup, settled
from support.passes import snapshot
from totmapsfs.engine import Engine
from totmapsfs.errors import SourceError
from totmapsfs.fuse import Pool
from totmapsfs.proc import Cgroup2, ProcReader
from totmapsfs.views import Plan, Snapshot, Views, _views, program_name


def in_threads(plan: Plan[Snapshot, Snapshot], ran_in: set[int]) -> Snapshot:
    """A plan run as the FUSE adapter runs it: its slices at once in a worker pool, then its finish there."""
    pool = Pool(len(plan.slices), "passes")

    def noted(part: Callable[[], Snapshot]) -> Callable[[], Snapshot]:
        def run() -> Snapshot:
            ran_in.add(threading.get_ident())
            return part()

        return run

    async def main() -> Snapshot:
        parts = await pool.run_all([noted(part) for part in plan.slices])
        return await pool.run(lambda: plan.finish(parts))

    try:
        return trio.run(main)
    finally:
        pool.close()


def threaded_pass(views: Views) -> tuple[Snapshot, set[int]]:
    ran_in: set[int] = set()
    plan = views.plan(None, lambda rows: rows)
    return in_threads(plan, ran_in), ran_in


@pytest.mark.expect_warnings  # "views leave out process ...": the planted failure
def test_a_pass_split_among_threads(monkeypatch: pytest.MonkeyPatch, workloads) -> None:
    ws = [workloads() for _ in range(3)]
    engine = Engine(max_age=0)
    views = Views(engine, Cgroup2(engine.reader))

    def one_thread() -> dict:
        monkeypatch.setattr(_views, "PASS_THREADS", 1)
        return {r.pid: r.fields for r in snapshot(views, None)}

    def three_threads() -> dict:
        monkeypatch.setattr(_views, "PASS_THREADS", 3)
        monkeypatch.setattr(_views, "_PER_THREAD", 4)
        assert views.threads_for(12) == 3  # max-age 0: every pass computes, so passes use threads
        rows, ran_in = threaded_pass(views)
        assert ran_in and threading.get_ident() not in ran_in  # the slices ran in the pool's threads
        return {r.pid: r.fields for r in rows}

    def rollups() -> list[dict[str, int]]:
        return [read_rollup(w.pid) for w in ws]

    with contextlib.ExitStack() as stack:
        for w in ws:
            stack.enter_context(w.stopped())
        # Pss moves when any process on the host maps a page the workloads
        # share: each pass is held to the kernel's own figures, read around it
        # until they held still (one window per pass, not one for both).
        kernel_one, one = settled(rollups, one_thread)
        kernel_three, three = settled(rollups, three_threads)
    for w, by_one, by_three in zip(ws, kernel_one, kernel_three, strict=True):
        assert one[w.pid] == by_one and three[w.pid] == by_three

    real = views.engine.resolve

    planted: list[Exception] = [SourceError(errno.EIO, "planted")]

    def failing(checked, **kw):
        if checked.proc.pid == ws[1].pid:
            raise planted[0]
        return real(checked, **kw)

    monkeypatch.setattr(views.engine, "resolve", failing)
    snap, _ = threaded_pass(views)
    rows = {r.pid for r in snap}  # the kernel failing one process: left out
    assert ws[0].pid in rows and ws[2].pid in rows and ws[1].pid not in rows
    assert snap.left_out >= 1
    planted[0] = RuntimeError("planted bug")
    with pytest.raises(RuntimeError, match="planted bug"):  # a bug is not swallowed in a worker thread
        threaded_pass(views)


@pytest.mark.expect_warnings  # "views leave out process ...": the planted status
def test_an_unparseable_status_leaves_out_its_process_only(tmp_path, workloads) -> None:
    """As a Busy or failing process is: left out and counted, not the whole view aborted."""
    like = workloads()
    fake = FakeProc(tmp_path / "proc")
    fake.real(like.pid)
    garbage = tmp_path / "status"
    garbage.write_bytes(b"Name:\tplanted\nUid:\t1\n")  # one uid where the kernel prints four
    planted = 999_999
    fake.plant(planted, like.pid, status=str(garbage))
    engine = Engine(ProcReader(str(fake.root)), max_age=0)
    snap = snapshot(Views(engine, Cgroup2(engine.reader)), None)
    assert {r.pid for r in snap} == {like.pid} and snap.left_out == 1


@pytest.mark.expect_warnings  # "views leave out process ...": the planted exe
def test_an_exe_that_fails_otherwise_than_gone_leaves_out_its_process_only(tmp_path, workloads) -> None:
    """A missing exe (ENOENT) is named by comm; readlink failing otherwise (EINVAL) is left out and counted."""
    like = workloads()
    fake = FakeProc(tmp_path / "proc")
    fake.real(like.pid)
    missing, broken = 999_998, 999_999
    fake.plant(missing, like.pid)
    (fake.plant(broken, like.pid) / "exe").write_bytes(b"")  # a file, not a link: readlinkat gives EINVAL
    engine = Engine(ProcReader(str(fake.root)), max_age=0)
    snap = Views(engine, Cgroup2(engine.reader)).plan(None, lambda rows: rows, programs=True).run()
    programs = {r.pid: r.program for r in snap}
    assert set(programs) == {like.pid, missing} and snap.left_out == 1
    assert programs[like.pid] == os.path.basename(os.readlink(f"/proc/{like.pid}/exe"))
    assert programs[missing] == program_name(None, snap[0].comm)
