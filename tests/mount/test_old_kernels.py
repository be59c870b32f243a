"""Kernels older than this one, through a fake procfs given to --proc: what their /proc prints, the daemon reads."""

from __future__ import annotations

import os
import re
from pathlib import Path

import pytest

from support.fakeproc import FakeProc
from support.kernel import fields


def bump(text: bytes, name: bytes, by: int) -> bytes:
    """``text`` with the number on its line ``name`` raised by ``by``."""
    return re.sub(
        rb"(?m)^(%s[ \t]*)(\d+)" % re.escape(name), lambda m: m.group(1) + b"%d" % (int(m.group(2)) + by), text
    )


@pytest.fixture
def fake(workdir: Path) -> FakeProc:
    proc = FakeProc(workdir / "proc")
    proc.real(os.getpid())  # the caller: the daemon identifies who reads through <root>/<tid>
    return proc


@pytest.mark.parametrize("core_dumping", [False, True], ids=["before-4.15", "4.15-on"])
def test_a_process_that_only_ran_is_served_from_the_cache(
    fake: FakeProc, mount_factory, workloads, core_dumping: bool
) -> None:
    """Before 4.15 status has no CoreDumping: line after the memory counters: ctxt switches follow them.

    The process below only ran between the two reads (its context switch
    counts moved, its memory did not): the second read must be the cache's,
    which the copied smaps tells apart, as it changed behind the daemon's back.
    """
    w = workloads()
    with w.stopped():
        d = fake.copy(w.pid, ("stat", "status", "smaps"))
    status = (d / "status").read_bytes()
    assert b"\nvoluntary_ctxt_switches:" in status and b"\nCoreDumping:" in status
    if not core_dumping:  # what 4.14's proc_pid_status printed: no CoreDumping: line
        status = re.sub(rb"\nCoreDumping:[^\n]*", b"", status)
    (d / "status").write_bytes(status)
    smaps = (d / "smaps").read_bytes()
    mount = fake.mount(mount_factory, "--source", "smaps", "--max-age", "3600")
    first = fields(mount.read(w.pid))

    # Only ran: its switch counts moved. The smaps is changed too, so a walk would show.
    (d / "smaps").write_bytes(bump(smaps, b"Private_Dirty:", 4))
    ran = bump(bump(status, b"voluntary_ctxt_switches:", 7), b"nonvoluntary_ctxt_switches:", 3)
    assert ran != status
    (d / "status").write_bytes(ran)
    assert fields(mount.read(w.pid)) == first, "a process that only ran was walked again"

    # Its memory moved: walked again at once.
    (d / "status").write_bytes(bump(ran, b"VmRSS:", 4))
    second = fields(mount.read(w.pid))
    assert second["Private_Dirty"] > first["Private_Dirty"], "a process whose memory moved was served the cache's"
