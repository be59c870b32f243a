"""The kernel's dentry cache and pid namespaces: a name cached for one caller never answers another wrongly.

The kernel keeps the entries the daemon hands out (ATTR_TIMEOUT, 1 s) for
every caller of the mount alike. Until the daemon has had a request from a
caller in another pid namespace, it hands out cached entries; from then on
("mixed"), pid names are answered per walk, and what it handed out before is
dropped. These tests make the host look names up first and a container walk
the same names right after, with a daemon that has not seen the container
yet: the worst case of that second.
"""

from __future__ import annotations

import os
import subprocess
import sys
import time

from support.kernel import fields, parked_thread
from support.namespaces import Agent, Verdicts, answer

MIB = 1024  # kB


def late_container(*args: str) -> Agent:
    """A pid and mount namespace made after the mount (a mount namespace copied before it would not have it)."""
    return Agent("--unshare", "mount,pid", "--proc", "--marker", "16", *args, label="late container")


def test_a_name_the_host_looked_up_leads_a_container_to_its_own_process(mount_factory) -> None:
    """The host's pid P and 1 are other processes in the container: its reads must give its own P and 1.

    A pid directory's inode stands for the name, read in each caller's
    numbering at every open: an inode for the host's process P would give the
    container, through the host's cached dentry, the host's P (here the
    container's own init, 16 MiB) for its P (a 40 MiB workload).
    """
    m, expect = mount_factory("--max-age", "0").path, Verdicts()
    agent = late_container()
    try:
        p = agent.host_pid  # the container's init, as the host numbers it
        mine = agent.workload("container-P", "--marker", "40", at_pid=p)
        assert mine == p, f"set-up: the container's workload got pid {mine}, not {p}"
        with agent.stopped(mine):
            for number, low, high in ((p, 40, 56), (1, 16, 40)):
                os.listdir(m)  # the host: every name cached, for a second
                os.stat(m / str(number) / "totmaps")
                whole, kernel = agent.run(
                    ["read", str(m / str(number) / "totmaps")], ["read", f"/proc/{number}/smaps_rollup"]
                )
                rss = fields(kernel["ok"].encode())["Rss"]
                assert low * MIB <= rss < high * MIB, f"set-up: the container's /proc/{number}: Rss {rss} kB"
                got = fields(whole["ok"].encode()).get("Rss") if "ok" in whole else answer(whole)
                expect.that(
                    got is not None and not isinstance(got, str) and abs(got - rss) <= 1024,
                    f"the container's MOUNT/{number}/totmaps right after the host's lookups: Rss {got}, "
                    f"its /proc/{number} {rss} kB",
                )
    finally:
        agent.close()
    expect.done()


def test_a_containers_first_request_drops_the_hosts_names_even_when_it_fails(mount_factory, workloads) -> None:
    """The container's first request is an ENOENT; the host's cached names of a host pid and a tid go with it."""
    m, expect = mount_factory().path, Verdicts()
    host = workloads()
    with parked_thread() as tid:  # a thread of ours: its id resolves in MOUNT as in /proc, unlisted
        agent = late_container()
        try:
            names = {"a host pid": host.pid, "a thread id of the test": tid}
            for number in names.values():
                os.stat(m / str(number))  # the host's lookups: the kernel holds the names for a second
            first = agent.one("stat", str(m / "0"))  # no process is 0 anywhere: the daemon answers ENOENT
            assert answer(first) == "ENOENT", f"set-up: MOUNT/0 from the container: {first}"
            time.sleep(0.05)  # the kernel drops entries asynchronously; well within the second
            for what, number in names.items():
                got = agent.one("stat", str(m / str(number)))
                expect.same(answer(got), "ENOENT", f"the container's stat of MOUNT/{number}, {what} it cannot see")
        finally:
            agent.close()
    expect.done()


CWD_PROGRAM = """
import os, sys
os.chdir(sys.argv[1])
print("in", flush=True)
sys.stdin.readline()
print(os.getcwd(), flush=True)
"""


def test_a_hosts_working_directory_keeps_its_name(mount_factory) -> None:
    """The host sits in MOUNT/<X>, the container walks MOUNT/1, the same process: the host's getcwd() stays <X>.

    The kernel gives a directory one dentry; were both names one inode, it
    would move that dentry to the name walked last, and getcwd(), /proc/self/fd
    and lsof would name another process.
    """
    m, expect = mount_factory().path, Verdicts()
    agent = late_container()
    try:
        # The daemon knows of the container first: what it hands out from then
        # on is what is tested (entering that mode drops the host's entries,
        # and with them a working directory's name, as a removed one's).
        assert "ok" in agent.one("stat", str(m / "1")), "set-up: the container's MOUNT/1"
        where = m / str(agent.host_pid)
        cwd = subprocess.Popen(
            [sys.executable, "-c", CWD_PROGRAM, str(where)], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True
        )
        try:
            assert cwd.stdout is not None and cwd.stdin is not None
            assert cwd.stdout.readline().strip() == "in", "set-up: the host process did not chdir"
            got = agent.run(["stat", str(m / "1")], ["stat", str(m / "1" / "totmaps")])
            assert all("ok" in g for g in got), f"set-up: the container's stat of MOUNT/1: {got}"
            out, _ = cwd.communicate("\n", timeout=10)
        finally:
            if cwd.poll() is None:
                cwd.kill()
                cwd.wait()
        expect.same(out.strip(), str(where), "the host's getcwd() after the container walked MOUNT/1")
    finally:
        agent.close()
    expect.done()


def test_per_caller_names_leave_no_window(mount_factory, workloads) -> None:
    """--per-caller-names: a name a host caller just looked up never answers a container's walk.

    Without it the daemon learns of the container at its first request, and
    until then the kernel may reuse the host's dentry for up to a second: the
    host pid's existence and owner, never numbers (see the first test). Both
    halves are shown: without the option the container's stat succeeds at least
    once (the window, kept honest), with it never.
    """
    outcomes: dict[bool, list[str]] = {}
    for option in (False, True):
        m = mount_factory(*(["--per-caller-names"] if option else []), name=f"names-{option}").path
        host = workloads()
        agent = late_container()
        try:
            outcomes[option] = []
            for _ in range(5):
                os.stat(m / str(host.pid))  # a host caller, and the kernel caches the name
                outcomes[option].append(answer(agent.one("stat", str(m / str(host.pid)))))
        finally:
            agent.close()
    assert "ok" in outcomes[False], f"set-up: no window to close without the option: {outcomes[False]}"
    assert outcomes[True] == ["ENOENT"] * 5, f"--per-caller-names: a container's stats of a host pid: {outcomes[True]}"


BURN = "import time\nend = time.monotonic() + 60\nwhile time.monotonic() < end: pass\n"
FIRST_WALKS = 8


def test_a_containers_first_walk_keeps_its_working_directory_under_load(mount_factory) -> None:
    """`cd -P MOUNT/self && pwd -P` as a new pid namespace's first request, with every CPU busy: pwd names it.

    That first request (the readlink of self) switches the daemon to per-caller
    names, which drops the entries it handed out before; were they dropped
    after the reply, the walk's next lookup (its own pid's directory) could be
    created first and dropped after, leaving the shell in a deleted directory
    (getcwd: ENOENT). Each round is a fresh daemon, so each is a first walk;
    the host looks the names up first, so that there is something to drop.
    """
    burners = [
        subprocess.Popen([sys.executable, "-c", BURN]) for _ in range(2 * (os.cpu_count() or 1))
    ]  # the load under which the race was seen; ended below, bounded to 60 s anyway
    failures: list[str] = []
    try:
        for round_ in range(FIRST_WALKS):
            m = mount_factory(name=f"first-walk-{round_}").path
            os.listdir(m)  # the host: every name cached, for a second
            os.stat(m / "1")
            walk = subprocess.run(
                ["unshare", "--pid", "--fork", "sh", "-c", 'cd -P "$0/self" && pwd -P', str(m)],
                capture_output=True,
                text=True,
                timeout=30,
            )
            if walk.returncode != 0 or walk.stdout.strip() != f"{m}/1":
                failures.append(
                    f"round {round_}: exit {walk.returncode}, {walk.stdout.strip()!r} {walk.stderr.strip()!r}"
                )
    finally:
        for b in burners:
            b.kill()
            b.wait()
    assert not failures, f"{len(failures)} of {FIRST_WALKS} first walks lost their directory: {failures}"
