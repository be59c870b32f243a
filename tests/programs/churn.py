"""Process churn and forced pid reuse against a live mount; run as init of a private pid namespace.

    unshare --pid --fork --mount-proc --kill-child .venv/bin/python tests/programs/churn.py --seconds 120

Everything lives in the new pid and mount namespaces: the mount, the daemon and
every process die with this init, nothing reaches the host. The driver lowers
the namespace's pid_max (per namespace since Linux 6.14; older kernels keep it
global, so it is left alone and every fork is steered by ns_last_pid instead)
so that pids wrap every couple of hundred forks, and on some kills writes
ns_last_pid so that the pid just reaped goes to the next child at once. It runs
``python -m totmapsfs --max-age 3600 --duty 1 MOUNT`` (a long max-age on
purpose: a cache serving a predecessor's numbers would show; no walk duty,
whose old answers are by design, see --duty) and forks short-lived
children, each locking (MAP_LOCKED|MAP_POPULATE) pages_for(pid, owner) private
pages, owner counting our children that held this pid: its ``Locked:`` is
exactly 4 kB a page, nothing else in it is locked, and each of the pid's 63
previous owners locked another amount. Reader processes list the mount and read
MOUNT/<pid>/totmaps of random live pids, checking Locked against the table the
children announce themselves in (shared memory; a child is marked dead before
it is killed). Then, readers stopped, the same-tick phase (see same_tick).

The last line of output is one JSON object; the exit status is 0 when every check held.
"""

from __future__ import annotations

import argparse
import contextlib
import errno
import json
import os
import random
import re
import signal
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import NoReturn

import psutil

# Beside this file: on sys.path when it runs as a script.
from churn_same_tick import same_tick
from churn_shared import (
    COUNTERS,
    DEAD,
    LOW,
    READY,
    VIEW_NAMES,
    Shared,
    child,
    generation,
    pack,
    pages_for,
    parse,
    stat_fields,
)

from totmapsfs.harness import HarnessError, Mount


class Reader:
    """One reader process: lists the mount and reads totmaps of random live pids, checking each answer."""

    def __init__(self, index: int, shared: Shared, mnt: Path, log: Path) -> None:
        self.c, self.shared, self.mnt, self.index = shared.counters[index], shared, mnt, index
        self.log = open(log, "w", buffering=1)
        self.rng = random.Random(index)

    def count(self, name: str, note: str = "") -> None:
        i = COUNTERS.index(name)
        self.c[i] += 1
        if note and self.c[i] <= 5:
            self.log.write(f"{name}: {note}\n")

    def run(self) -> NoReturn:
        listing: list[int] = []
        try:
            for n in range(1 << 62):
                if self.shared.flags[0]:
                    break
                if n % 16 == 0:
                    listing = self.list_mount() or listing
                if self.index == 0 and n % 200 == 199:  # the whole-system views, under churn too
                    for name in ("summary", "totmaps"):
                        try:
                            (self.mnt / name).read_bytes()
                            self.count("views")
                        except OSError as exc:
                            self.count("view_errors", f"{name}: {exc}")
                ready = [p for p, e in enumerate(self.shared.entry.tolist()) if e & 0xFF == READY]
                pool = ready if ready and (self.rng.random() < 0.75 or not listing) else listing
                if pool:
                    self.check(self.rng.choice(pool))
        finally:
            os._exit(0)

    def list_mount(self) -> list[int]:
        try:
            names = os.listdir(self.mnt)
        except OSError as exc:
            self.count("listing_errors", f"listdir: {exc}")
            return []
        self.count("listings")
        if any(not x.isdigit() and x not in VIEW_NAMES for x in names):
            self.count("listing_errors", f"unexpected names in {sorted(names)[:20]}")
        return [int(x) for x in names if x.isdigit()]

    def check(self, pid: int) -> None:
        sh = self.shared
        e1 = sh.entry[pid] if pid < sh.size else 0
        text, err = b"", 0
        try:
            fd = os.open(self.mnt / str(pid) / "totmaps", os.O_RDONLY)
            try:
                text = b"".join(iter(lambda: os.read(fd, 65536), b""))
            finally:
                os.close(fd)
        except OSError as exc:
            err = exc.errno or -1
        start = sh.start[pid] if pid < sh.size else 0
        e2 = sh.entry[pid] if pid < sh.size else 0
        self.count("reads")
        owner, pages, state = e1 >> 32, e1 >> 8 & 0xFFFFFF, e1 & 0xFF
        strict = state == READY and e2 == e1  # one child held the pid, alive, from before to after the read
        fields = parse(text)
        if err == errno.ENOENT:
            self.count("enoent_live", f"pid {pid} owner {owner}: ENOENT, alive throughout") if strict else self.count(
                "enoent"
            )
        elif err:
            self.count("errors", f"pid {pid}: {errno.errorcode.get(err, err)}")
        elif fields is None:
            self.count("wrong", f"pid {pid}: malformed {text[:200]!r}")
        elif not strict:
            # It died, or was not one of ours: any well-formed answer, empty for a zombie.
            self.count("raced" if state == READY else "unverified")
            if not text:
                self.count("empty")
        elif fields.get("Locked") != pages * 4:
            self.count("wrong", f"pid {pid} owner {owner}: Locked {fields.get('Locked')} kB, expected {pages * 4}")
        else:
            self.count("verified")
            before = sh.read_owner[pid]
            if 0 < before < owner:  # an earlier owner of this pid was read, so its answer was cached
                self.count("reused")
                if sh.read_start[pid] == start:
                    self.count("reused_same_start")  # ... under the same (pid, start time)
            if before < owner:
                sh.read_owner[pid], sh.read_start[pid] = owner, start


class Spawner:
    """Forks churn children, kills them after a short random life, forces pid reuse."""

    def __init__(self, shared: Shared, live_max: int, lifetime: float, targeted: float, steer_all: bool) -> None:
        self.shared, self.live_max, self.lifetime, self.targeted = shared, live_max, lifetime, targeted
        self.steer_all = steer_all  # no per-namespace pid_max: every fork goes to the lowest free pid >= LOW
        self.owners: dict[int, int] = {}
        self.live: dict[int, list] = {}  # pid -> [owner, kill time (None until ready), fork time]
        self.killed: set[int] = set()
        self.rng = random.Random(0)
        self.stats = dict(spawned=0, killed=0, fork_eagain=0, child_failures=0, targeted=0, targeted_hits=0)

    def spawn(self, want: int | None = None) -> int | None:
        want = LOW if want is None and self.steer_all else want
        if want is not None:
            Path("/proc/sys/kernel/ns_last_pid").write_text(str(want - 1))
        try:
            pid = os.fork()
        except BlockingIOError:  # every pid of the namespace taken: let reaping catch up
            self.stats["fork_eagain"] += 1
            return None
        if pid == 0:
            child(self.shared, self.owners)
        self.owners[pid] = self.owners.get(pid, 0) + 1
        self.live[pid] = [self.owners[pid], None, time.monotonic()]
        self.stats["spawned"] += 1
        if pid >= self.shared.size:
            self.kill(pid)  # outside the table (only without a small pid_max): of no use to readers
        return pid

    def kill(self, pid: int) -> None:
        owner = self.live.pop(pid)[0]
        if pid < self.shared.size:
            self.shared.entry[pid] = pack(owner, pages_for(pid, owner), DEAD)  # before the signal: readers rely on it
        os.kill(pid, signal.SIGKILL)
        self.killed.add(pid)
        self.stats["killed"] += 1

    def reap(self, pid: int, block: bool) -> None:
        got, status = os.waitpid(pid, 0 if block else os.WNOHANG)
        if got:
            self.stats["child_failures"] += os.waitstatus_to_exitcode(status) != -signal.SIGKILL
            self.killed.discard(pid)
            self.live.pop(pid, None)

    def step(self) -> None:
        now = time.monotonic()
        for pid in list(self.killed):
            self.reap(pid, block=False)
        for pid, (owner, kill_at, forked) in list(self.live.items()):
            if kill_at is None:
                if self.shared.entry[pid] == pack(owner, pages_for(pid, owner), READY):
                    self.live[pid][1] = now + self.rng.uniform(0, self.lifetime)
                elif now - forked > 1.0:
                    self.reap(pid, block=False)  # did it die before announcing itself?
            elif now >= kill_at:
                self.kill(pid)
                if self.rng.random() < self.targeted and self.shared.read_owner[pid] == owner:
                    # Its answer was read, so it is cached: hand its pid to the next child at once.
                    self.reap(pid, block=True)
                    self.stats["targeted"] += 1
                    self.stats["targeted_hits"] += self.spawn(pid) == pid
        if len(self.live) >= self.live_max or self.spawn() is None:
            time.sleep(0.0005)

    def stop_all(self) -> None:
        for pid in list(self.live):
            self.kill(pid)
        for pid in list(self.killed):
            self.reap(pid, block=True)


def daemon_figures(pid: int) -> dict[str, int]:
    p = psutil.Process(pid)
    return dict(rss_kb=p.memory_info().rss // 1024, fds=p.num_fds(), threads=p.num_threads())


def wait_for(predicate: Callable[[], bool], timeout: float) -> bool:
    deadline = time.monotonic() + timeout
    while not predicate():
        if time.monotonic() > deadline:
            return False
        time.sleep(0.05)
    return True


def arguments() -> argparse.Namespace:
    p = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    p.add_argument("--seconds", type=float, default=6.0, help="churn at least this long")
    p.add_argument("--min-reused", type=int, default=0, help="then until this many reads of reused pids were verified")
    p.add_argument("--max-seconds", type=float, help="but never longer than this (default 4 x seconds + 30)")
    p.add_argument("--max-age", default="3600", help="the daemon's --max-age (default 3600)")
    p.add_argument("--source", default="auto", help="the daemon's --source")
    # The walk duty (engine._cache) serves a process's last answer, however it changed, for
    # w/D after a walk of w >= 1 ms: a child read before it locked its pages and
    # again right after would read "Locked: 0" by design whenever a loaded box made
    # that first walk cost over 1 ms of CPU (seen in CI). That staleness is the
    # duty's, tested in tests/stress/test_duty.py; here only identity may explain
    # an old figure, so the duty is off unless asked for.
    p.add_argument("--duty", default="1", help="the daemon's --duty (default 1: off)")
    p.add_argument("--readers", type=int, default=4)
    p.add_argument("--live", type=int, default=24, help="children alive at once")
    p.add_argument("--lifetime", type=float, default=0.03, help="longest life of a ready child, seconds")
    p.add_argument("--targeted", type=float, default=0.3, help="share of kills whose pid goes to the next child")
    p.add_argument("--pid-max", type=int, default=512, help="the namespace's pid_max (pids wrap to 300)")
    p.add_argument("--no-pid-max", action="store_true", help="leave pid_max alone, as on kernels before 6.14")
    p.add_argument("--same-tick-rounds", type=int, default=200, help="rounds of the same-tick phase, at least")
    p.add_argument("--same-tick-min", type=int, default=0, help="then until this many had the same key and generation")
    p.add_argument("--workdir", type=Path, help="for the mountpoint and logs (default: a new temporary directory)")
    return p.parse_args()


def main() -> int:
    args = arguments()
    if os.getpid() != 1:
        print(
            "churn.py: run me as init of a new pid namespace: unshare --pid --fork --mount-proc --kill-child …",
            file=sys.stderr,
        )
        return 2
    workdir = args.workdir or Path(tempfile.mkdtemp(prefix="totmapsfs-churn-"))
    mnt = workdir / "mnt"
    mnt.mkdir(parents=True, exist_ok=True)
    # From a child namespace, on a kernel where pid_max is global, this would change the host's.
    per_ns = tuple(int(x) for x in re.findall(r"\d+", os.uname().release)[:2]) >= (6, 14) and not args.no_pid_max
    if per_ns:
        Path("/proc/sys/kernel/pid_max").write_text(str(args.pid_max))
    shared = Shared(args.pid_max, args.readers)
    result: dict = dict(
        seconds=args.seconds,
        max_age=args.max_age,
        source=args.source,
        duty=args.duty,
        pid_max=args.pid_max,
        pid_max_per_ns=per_ns,
        workdir=str(workdir),
    )
    try:
        mount = Mount(mnt, "--max-age", args.max_age, "--source", args.source, "--duty", args.duty, log_dir=workdir)
    except HarnessError as exc:
        print(json.dumps({**result, "ok": False, "daemon_log": str(exc)[-3000:]}))
        return 1
    daemon = mount.proc
    os.listdir(mnt)  # warm up: the daemon's first worker threads start now, with low pids
    (mnt / "1" / "totmaps").read_bytes()
    result["daemon_start"] = daemon_figures(daemon.pid)

    readers = []
    for i in range(args.readers):
        if (pid := os.fork()) == 0:
            Reader(i, shared, mnt, workdir / f"reader-{i}.log").run()
        readers.append(pid)
    sp = Spawner(shared, args.live, args.lifetime, args.targeted, steer_all=not per_ns)
    began = time.monotonic()
    cap = args.max_seconds if args.max_seconds is not None else 4 * args.seconds + 30
    while daemon.poll() is None and (elapsed := time.monotonic() - began) < cap:
        if elapsed >= args.seconds and shared.total("reused") >= args.min_reused:
            break
        sp.step()
    churn = time.monotonic() - began
    shared.flags[0] = 1
    hung = [pid for pid in readers if not wait_for(lambda p=pid: os.waitpid(p, os.WNOHANG)[0] != 0, 20)]
    for pid in hung:
        os.kill(pid, signal.SIGKILL)
        os.waitpid(pid, 0)
    sp.stop_all()
    result.update(
        churn_seconds=round(churn, 2),
        **sp.stats,
        spawned_per_s=round(sp.stats["spawned"] / churn, 1),
        readers_hung=len(hung),
        **{name: shared.total(name) for name in COUNTERS},
    )
    result["reads_per_s"] = round(result["reads"] / churn, 1)
    result["other_errors"] = sum(result[k] for k in ("errors", "enoent_live", "listing_errors", "view_errors"))
    result["daemon_alive_after_churn"] = daemon.poll() is None
    if daemon.poll() is None:
        result["same_tick_reuse"] = same_tick(
            mnt, workdir, args.same_tick_rounds, args.same_tick_min, LOW + 150, parse, stat_fields, generation
        )
        result["daemon_end"] = daemon_figures(daemon.pid)
    status = mount.stop()  # SIGTERM, SIGKILL after 15 s
    result["daemon_exit"] = status if status == 0 else f"exit status {status}"
    log_text = mount.log_text()
    result["daemon_log_errors"] = len(re.findall(r"Traceback|internal error|ERROR", log_text))
    with open("/proc/self/mountinfo", "rb") as f:
        result["mounted_after_stop"] = any(line.split()[4] == os.fsencode(mnt) for line in f)
    with contextlib.suppress(ChildProcessError):
        while os.waitpid(-1, os.WNOHANG)[0] > 0:  # init's duty: any orphan that ended up with us
            pass
    result["leftover_processes"] = [int(x) for x in os.listdir("/proc") if x.isdigit() and x != "1"]
    result["samples"] = [
        line for i in range(args.readers) for line in (workdir / f"reader-{i}.log").read_text().splitlines()
    ][:10]
    tick = result.get("same_tick_reuse", {})
    result["ok"] = bool(
        result["daemon_alive_after_churn"]
        and result["daemon_exit"] == 0
        and result["other_errors"] == 0
        and result["wrong"] == 0
        and not hung
        and sp.stats["child_failures"] == 0
        and not tick.get("stale")
        and not tick.get("errors")
        and result["daemon_log_errors"] == 0
        and not result["mounted_after_stop"]
        and not result["leftover_processes"]
    )
    if result["daemon_log_errors"]:
        result["daemon_log_tail"] = log_text[-3000:]
    print(json.dumps(result), flush=True)
    return 0 if result["ok"] else 1


if __name__ == "__main__":
    sys.exit(main())
