"""The engine and tree without FUSE: cache rules with an injected clock, access rule, fake procfs."""

from __future__ import annotations

import os
import threading
from pathlib import Path

import pytest

import totmapsfs
from conftest import NOBODY, fields, read_rollup
from totmapsfs._access import Caller, may_read
from totmapsfs._engine import Engine
from totmapsfs._errors import AccessDenied, NameTooLong, NoSuchEntry, NoSuchProcess, UserError
from totmapsfs._procfs import ProcReader, Status
from totmapsfs._tree import ROOT_INODE, Request, Tree, parse_pid


class Clock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


@pytest.fixture
def clock() -> Clock:
    return Clock()


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


def test_max_age_zero_never_caches(workloads, clock: Clock) -> None:
    w = workloads()
    engine = Engine(max_age=0, clock=clock)
    with w.stopped():
        for _ in range(5):
            engine.totmaps(w.pid)
    assert (engine.counters.misses, engine.counters.hits, len(engine)) == (5, 0, 0)


def test_concurrent_readers_share_one_computation(workloads) -> None:
    w = workloads("--mappings", "8000")
    engine = Engine(max_age=0)
    computing = threading.Event()
    release = threading.Event()
    real = engine._parse

    def slow_parse(data):
        computing.set()
        release.wait(10)
        return real(data)

    engine._parse = slow_parse
    results: list = []
    with w.stopped():
        threads = [threading.Thread(target=lambda: results.append(engine.totmaps(w.pid))) for _ in range(4)]
        threads[0].start()
        computing.wait(10)
        for t in threads[1:]:
            t.start()
        while engine.counters.joined < 3:
            threading.Event().wait(0.01)
        release.set()
        for t in threads:
            t.join(10)
    assert engine.counters.misses == 1 and engine.counters.joined == 3
    assert all(r is results[0] for r in results)


def test_cache_is_bounded_and_drops_the_dead(workloads, clock: Clock) -> None:
    ws = [workloads() for _ in range(4)]
    engine = Engine(max_age=60, clock=clock, capacity=3)
    for w in ws:
        engine.totmaps(w.pid)
    assert len(engine) == 3
    engine.forget_dead([ws[-1].pid])
    assert len(engine) == 1
    clock.now += 61
    engine.totmaps(os.getpid())
    assert len(engine) == 1  # the expired entry went when a new one came


def test_reused_pid_is_a_new_key(workloads, clock: Clock) -> None:
    """Entries are keyed by (pid, start time): same pid, other start time, no hit."""
    w = workloads()
    engine = Engine(max_age=3600, clock=clock)
    engine.totmaps(w.pid)
    (key,) = engine._cache
    entry = engine._cache.pop(key)
    engine._cache[(key[0], key[1] - 1)] = entry  # as if the pid had belonged to an older process
    engine.totmaps(w.pid)
    assert engine.counters.hits == 0 and engine.counters.misses == 2


def test_no_answer_kept_from_within_the_start_tick(workloads, clock: Clock) -> None:
    """A pid reused within one clock tick has the same (pid, start time): such answers are not cached."""
    w = workloads()
    starttime = int(Path(f"/proc/{w.pid}/stat").read_text().rsplit(")", 1)[1].split()[19])
    now = [starttime]  # the start tick has not ended yet
    engine = Engine(max_age=3600, clock=clock, tick=lambda: now[0])
    with w.stopped():
        engine.totmaps(w.pid)
        engine.totmaps(w.pid)
        assert (engine.counters.misses, engine.counters.hits, len(engine)) == (2, 0, 0)
        now[0] = starttime + 1  # from the next tick on, any successor has another start time
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
    root = tmp_path / "proc"
    d = root / str(w.pid)
    d.mkdir(parents=True)
    with w.stopped():
        for name in ("stat", "status", "smaps"):
            (d / name).write_bytes(Path(f"/proc/{w.pid}/{name}").read_bytes())
        expected = fields((d / "smaps").read_bytes())
    (root / "self").symlink_to(str(w.pid))
    return root, w.pid, expected


def test_auto_falls_back_to_smaps_without_rollup(old_kernel_proc) -> None:
    root, pid, expected = old_kernel_proc
    engine = Engine(ProcReader(str(root)), "auto")
    assert engine.source.value == "smaps"
    assert engine.totmaps(pid).fields == expected
    assert "Pss_Anon" not in expected  # a rollup-only field: smaps does not carry it


def test_rollup_source_refused_without_rollup(old_kernel_proc) -> None:
    root, _, _ = old_kernel_proc
    with pytest.raises(UserError, match="smaps_rollup"):
        Engine(ProcReader(str(root)), "rollup")


# -- the access rule, as pure logic ------------------------------------------

def status(uids=(1000,) * 4, gids=(1000,) * 4, tgid=50, memory=b"VmSize: 1 kB", prm=0) -> Status:
    return Status(name="t", tgid=tgid, uids=uids, gids=gids, cap_prm=prm, cap_eff=prm, memory=memory)


USER = Caller(tgid=10, uid=1000, gid=1000, has_ptrace_cap=False)
ADMIN = Caller(tgid=11, uid=0, gid=0, has_ptrace_cap=True)


@pytest.mark.parametrize(
    "caller, target, owner, allowed",
    [
        (USER, status(), (1000, 1000), True),  # own, dumpable
        (USER, status(), (0, 0), False),  # own, not dumpable
        (USER, status(memory=b""), (1000, 1000), True),  # own zombie: no mm, no dumpable check
        (USER, status(uids=(0,) * 4, memory=b""), (0, 0), True),  # root's kernel thread: no mm, no check
        (USER, status(uids=(1000, 1000, 0, 1000)), (1000, 1000), False),  # setuid: saved uid differs
        (USER, status(gids=(1000, 5, 1000, 1000)), (1000, 1000), False),  # setgid
        (USER, status(uids=(1001,) * 4), (1001, 1000), False),  # another user
        (USER, status(prm=1 << 21), (1000, 1000), False),  # own, but holds capabilities we lack
        (USER, status(tgid=10, uids=(0,) * 4), (0, 0), True),  # our own thread group, whatever its ids
        (ADMIN, status(uids=(1001,) * 4), (0, 0), True),  # CAP_SYS_PTRACE reads anything
        (Caller(12, 0, 0, False), status(uids=(0,) * 4, gids=(0,) * 4), (0, 0), False),  # capless root
    ],
)
def test_may_read(caller: Caller, target: Status, owner: tuple[int, int], allowed: bool) -> None:
    assert may_read(caller, target, *owner) is allowed


# -- the tree: names --------------------------------------------------------

@pytest.mark.parametrize("name", [b"0", b"-1", b"1x", b"01", b"99999999999", b"4194304", b"..x", b"", b"self2"])
def test_names_that_are_not_pids(name: bytes) -> None:
    tree = Tree(Engine())
    with pytest.raises(NoSuchEntry):
        tree.lookup(ROOT_INODE, name)


def test_long_names() -> None:
    tree = Tree(Engine())
    with pytest.raises(NameTooLong):
        tree.lookup(ROOT_INODE, b"1" * 300)
    pid_dir = tree.lookup(ROOT_INODE, str(os.getpid()).encode()).ino
    with pytest.raises(NameTooLong):
        tree.lookup(pid_dir, b"x" * 300)
    with pytest.raises(NoSuchEntry):
        tree.lookup(pid_dir, b"smaps")


def test_parse_pid_mirrors_proc() -> None:
    assert parse_pid(b"1") == 1 and parse_pid(b"4194303") == 4194303


def test_read_file_checks_access(workloads) -> None:
    tree = Tree(Engine())
    target = workloads()  # root's
    caller = workloads(user=NOBODY)  # the request comes from this process
    ino = tree.lookup(tree.lookup(ROOT_INODE, str(target.pid).encode()).ino, b"totmaps").ino
    with pytest.raises(AccessDenied):
        tree.read_file(ino, Request(pid=caller.pid, uid=NOBODY, gid=NOBODY))
    own = tree.lookup(tree.lookup(ROOT_INODE, str(caller.pid).encode()).ino, b"totmaps").ino
    assert b"Pss:" in tree.read_file(own, Request(pid=caller.pid, uid=NOBODY, gid=NOBODY))
    assert b"Pss:" in tree.read_file(ino, Request(pid=os.getpid(), uid=0, gid=0))
