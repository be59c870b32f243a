"""stat and status, read and parsed by the C half of the proc reader and by the Python reference: the same, always.

The markupsafe pattern again (as for the smaps parser): ``_text.py`` is the
rule, ``proc/_speedups.c`` must agree with it on every input, values and
exception classes alike, on live /proc text and on generated text.
"""

from __future__ import annotations

import errno
import os
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from totmapsfs.proc import _io, _text

try:
    from totmapsfs.proc import _speedups as c
except ImportError:  # pragma: no cover - TOTMAPSFS_REQUIRE_C=1 makes the reader fail first
    c = None

SCALE = float(os.environ.get("TOTMAPSFS_EXAMPLES_SCALE", "1"))
needs_c = pytest.mark.skipif(c is None, reason="the proc reader's C half is not built")


def outcome(fn, data):
    try:
        return tuple(fn(data))
    except Exception as exc:  # the class must agree; messages may differ
        return type(exc)


def live(name: str) -> list[bytes]:
    texts = []
    for pid in (p for p in os.listdir("/proc") if p.isdigit()):
        try:
            texts.append(Path(f"/proc/{pid}/{name}").read_bytes())
        except OSError:
            continue  # gone, or not ours to read
    return texts


@needs_c
def test_live_text_parses_alike() -> None:
    statuses, stats = live("status"), live("stat")
    assert len(statuses) > 10 and len(stats) > 10
    for data in statuses:
        assert outcome(c.parse_status, data) == outcome(_text.parse_status, data)
    for data in stats:
        assert outcome(c.parse_stat, data) == outcome(_text.parse_stat, data)


def test_reference_reads_what_the_kernel_prints() -> None:
    me = _text.parse_status(Path("/proc/self/status").read_bytes())
    assert me.tgid == os.getpid() and me.uids == (*os.getresuid(), os.geteuid())  # the fsuid is the euid here
    assert me.mm_counters.startswith(b"\nVmPeak:") and me.mm_counters.endswith(b" kB")
    assert b"\nRssAnon:" in me.mm_counters and b"CoreDumping" not in me.mm_counters
    assert me.ns_pids[-1] == os.getpid() and me.ns_tgids[-1] == os.getpid()
    kthread = _text.parse_status(Path("/proc/2/status").read_bytes())
    assert kthread.mm_counters == b"" and kthread.name == "kthreadd"
    stat = _text.parse_stat(Path("/proc/self/stat").read_bytes())
    assert stat.state == "R" and stat.starttime > 0


STATUS_LINE = st.sampled_from(
    [
        b"Name:\t",
        b"Tgid:\t",
        b"Uid:\t",
        b"Gid:\t",
        b"CapPrm:\t",
        b"CapEff:\t",
        b"NStgid:\t",
        b"NSpid:\t",
        b"VmSize:\t",
        b"VmRSS:\t",
        b"RssAnon:\t",
        b"HugetlbPages:\t",
        b"Hugetlb",
        b"Vm",
        b"Rs",
        b"CoreDumping:\t",
        b"voluntary_ctxt_switches:\t",
        b"Pid:\t",
        b"Threads:\t",
        b"",
    ]
)
VALUE = st.one_of(
    st.integers(0, 2**70).map(lambda n: str(n).encode()),
    st.integers(0, 2**64).map(lambda n: f"{n:016x}".encode()),
    st.lists(st.integers(0, 2**32), max_size=5).map(lambda xs: b"\t".join(str(x).encode() for x in xs)),
    st.binary(max_size=12),
    st.sampled_from([b" 1_0 ", b"-1", b"+7", b"0x1f", b"1\x002", b"\xff\xfe", b"", b" ", b"1 2 3 4 5"]),
)


@needs_c
@settings(max_examples=int(400 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.lists(st.tuples(STATUS_LINE, VALUE), max_size=20), st.sampled_from([b"\n", b""]))
def test_generated_status_parses_alike(lines, end) -> None:
    data = b"\n".join(key + value for key, value in lines) + end
    assert outcome(c.parse_status, data) == outcome(_text.parse_status, data)


@needs_c
@settings(max_examples=int(400 * SCALE), deadline=None)
@given(
    st.binary(max_size=20),
    st.lists(st.one_of(st.integers(0, 2**70).map(lambda n: str(n).encode()), st.binary(max_size=4)), max_size=30),
)
def test_generated_stat_parses_alike(comm, fields) -> None:
    data = b"123 (" + comm + b") " + b" ".join(fields) + b"\n"
    assert outcome(c.parse_stat, data) == outcome(_text.parse_stat, data)


@pytest.mark.parametrize("impl", ["c", "python"])
def test_reads_relative_to_a_directory(impl: str, tmp_path: Path) -> None:
    if impl == "c" and c is None:
        pytest.skip("the proc reader's C half is not built")
    read_at = c.read_at if impl == "c" else _io._py_read_at
    probe = (
        (lambda fd: tuple(map(tuple, c.probe(fd))))
        if impl == "c"
        else (lambda fd: tuple(map(tuple, _io._py_probe(fd))))
    )
    big = b"x" * 100_000  # past the C half's stack buffer: it grows
    (tmp_path / "big").write_bytes(big)
    os.mkfifo(tmp_path / "fifo")
    fd = os.open(tmp_path, os.O_RDONLY | os.O_DIRECTORY)
    proc = os.open(f"/proc/{os.getpid()}", os.O_RDONLY | os.O_DIRECTORY)
    try:
        assert read_at(fd, "big") == big
        assert read_at(fd, "fifo") == b""  # O_NONBLOCK: a FIFO nobody writes answers at once
        with pytest.raises(FileNotFoundError):
            read_at(fd, "missing")
        stat, status = probe(proc)
        assert status[1] == os.getpid() and stat[3] > 0
        with pytest.raises(OSError) as info:
            probe(fd)  # no stat or status in it
        assert info.value.errno == errno.ENOENT
    finally:
        os.close(fd)
        os.close(proc)


@needs_c
def test_batches_and_the_caller_agree_with_one_at_a_time(workloads) -> None:
    w = workloads("--children", "3")
    root = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    pids = [*w.pids, 4194303, 2]  # live ones, one that does not exist, a kernel thread
    try:
        with w.stopped():
            ours = c.probe_many(root, pids, True)
            theirs = _io._py_probe_many(root, pids, True)
        assert ours[-2] == theirs[-2] == errno.ENOENT
        for a, b in zip(ours, theirs, strict=True):
            if isinstance(a, int):
                assert a == b
                continue
            assert isinstance(b, tuple)
            assert (a[1], a[2], a[3]) == (tuple(b[1]), tuple(b[2]), b[3])
            assert c.read_at(a[0], "cgroup") == c.read_at(b[0], "cgroup") == a[3]  # the fds pin those processes
            os.close(a[0])
            os.close(b[0])
        with pytest.raises(FileNotFoundError):
            c.read_at(root, "nope")
        status, user_ns = c.caller(root, os.getpid())
        py_status, py_user_ns = _io._py_caller(root, os.getpid())
        assert status[1] == os.getpid() and user_ns == py_user_ns == os.stat("/proc/self/ns/user").st_ino
        assert status[:6] == tuple(py_status)[:6]
    finally:
        os.close(root)
