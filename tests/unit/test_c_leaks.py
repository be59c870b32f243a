"""Every entry point of the proc reader's C half, format_totmaps and parse_smaps_mappings, repeated: no leaks.

The pattern of test_parser_c.test_no_reference_or_memory_leaks (which covers
parse_smaps): warm up, then 3,000 calls, each returning or raising as
expected; the reference counts of the arguments and of the exception class
raised do not move, tracemalloc's
traced memory does not grow (Python's allocators), and neither do glibc's
in-use bytes (mallinfo2: the proc reader's malloc'ed read buffers) nor the
process's open descriptors.
"""

from __future__ import annotations

import ctypes
import gc
import os
import shutil
import sys
import tracemalloc
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import pytest

from support.adversarial import AddGivesWide, ItemsOnly
from totmapsfs.parser import SmapsParseError
from totmapsfs.parser import _speedups as parser_c
from totmapsfs.proc import _speedups as proc_c

CALLS = 3_000  # 35 entry points and cases: 10,000 each took 25 s of the unit tier
SELF = Path(f"/proc/{os.getpid()}")


class _Mallinfo2(ctypes.Structure):
    _fields_ = [
        (name, ctypes.c_size_t)
        for name in ("arena", "ordblks", "smblks", "hblks", "hblkhd", "usmblks", "fsmblks", "uordblks", "fordblks")
    ] + [("keepcost", ctypes.c_size_t)]


def _malloc_in_use() -> int | None:
    """glibc's bytes in use (mallinfo2().uordblks + mmapped blocks), or None without mallinfo2 (glibc < 2.33)."""
    libc = ctypes.CDLL(None)
    if not hasattr(libc, "mallinfo2"):
        return None
    libc.mallinfo2.restype = _Mallinfo2
    info = libc.mallinfo2()
    return int(info.uordblks + info.hblkhd)


def _open_fds() -> list[str]:
    return sorted(os.listdir("/proc/self/fd"))


class Flips:
    """A value whose __index__ adds or removes a key of its dict: the walk raises RuntimeError, call after call."""

    def __init__(self) -> None:
        self.fields: dict[str, object] = {"Rss": self, "Pss": 2}

    def __index__(self) -> int:
        if self.fields.pop("Extra", None) is None:
            self.fields["Extra"] = 1
        return 1


@pytest.fixture(scope="module")
def fake_root(tmp_path_factory: pytest.TempPathFactory) -> Iterator[int]:
    """A --proc root: 1 a copy of this process's files, 2 an unparseable stat, 3 no stat at all, 4 nothing."""
    root = tmp_path_factory.mktemp("proc")
    for pid in ("1", "2", "3"):
        (root / pid).mkdir()
        shutil.copyfile(SELF / "status", root / pid / "status")
    shutil.copyfile(SELF / "stat", root / "1" / "stat")
    for pid in ("1", "2"):
        (root / pid / "cgroup").write_bytes(b"0::/leak.test\n")
    (root / "2" / "stat").write_bytes(b"1 (x) R")
    big = root / "big"
    big.write_bytes(b"x" * 100_000)  # past the 4 KiB on the stack: read into malloc'ed memory
    fd = os.open(root, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


@pytest.fixture(scope="module")
def procfd() -> Iterator[int]:
    fd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


@pytest.fixture(scope="module")
def selffd() -> Iterator[int]:
    fd = os.open(SELF, os.O_RDONLY | os.O_DIRECTORY)
    yield fd
    os.close(fd)


Case = tuple[Callable[..., Any], tuple[Any, ...], type[BaseException] | None]


def _cases(procfd: int, selffd: int, fake_root: int, no_stat: int) -> dict[str, Case]:
    stat, status = (SELF / "stat").read_bytes(), (SELF / "status").read_bytes()
    rollup = {"Rss": 300, "Pss": 160, "Shared_Clean": 296, "Locked": 2**64 - 1}
    flips = Flips()
    smaps = (SELF / "smaps").read_bytes()  # keys, slots and arenas that grow
    head = b"0040-0045 r-xp 0000 08:02 1 /a\n"
    mappings = parser_c.parse_smaps_mappings
    return {
        "read_at": (proc_c.read_at, (procfd, "self/status"), None),
        "read_at big": (proc_c.read_at, (fake_root, "big"), None),
        "read_at missing": (proc_c.read_at, (procfd, "no-such-file"), FileNotFoundError),
        "read_at NUL": (proc_c.read_at, (procfd, "a\0b"), ValueError),
        "parse_stat": (proc_c.parse_stat, (stat,), None),
        "parse_stat short": (proc_c.parse_stat, (b"1 (x) R 1",), ValueError),
        "parse_stat str": (proc_c.parse_stat, ("1 (x) R",), TypeError),
        "parse_status": (proc_c.parse_status, (status,), None),
        "parse_status bad uid": (proc_c.parse_status, (b"Name:\tx\nUid:\t1 2 x 4\n",), ValueError),
        "parse_status few uids": (proc_c.parse_status, (b"Uid:\t1 2\n",), ValueError),
        "probe": (proc_c.probe, (selffd,), None),
        "probe no status": (proc_c.probe, (fake_root,), FileNotFoundError),
        "probe no stat": (proc_c.probe, (no_stat,), FileNotFoundError),  # status read, then stat fails
        "probe not an fd": (proc_c.probe, (bytearray(b"3"),), TypeError),
        "caller": (proc_c.caller, (procfd, os.getpid()), None),
        "caller missing": (proc_c.caller, (procfd, -5), FileNotFoundError),
        "caller huge tid": (proc_c.caller, (procfd, 2**70), OverflowError),
        "probe_many": (proc_c.probe_many, (fake_root, [1, 2, 3, 4], True), None),
        "probe_many live": (proc_c.probe_many, (procfd, [os.getpid(), 1], False), None),
        "probe_many bad pid": (proc_c.probe_many, (procfd, [os.getpid(), "x"]), TypeError),
        "format_totmaps": (parser_c.format_totmaps, (rollup,), None),
        "format_totmaps long names": (parser_c.format_totmaps, ({"N" * n: n for n in range(1, 120)},), None),
        "format_totmaps str subclass": (parser_c.format_totmaps, ({AddGivesWide("x"): 1},), UnicodeEncodeError),
        "format_totmaps range": (parser_c.format_totmaps, ({"Rss": 1, "Pss": -1},), ValueError),
        "format_totmaps type": (parser_c.format_totmaps, ({"Rss": 1, "Pss": 1.5},), TypeError),
        "format_totmaps name": (parser_c.format_totmaps, ({"Rss": 1, 5: 1},), TypeError),
        "format_totmaps not ascii": (parser_c.format_totmaps, ({"Rs\u015b": 1, "Pss": 1},), UnicodeEncodeError),
        "format_totmaps mutated": (parser_c.format_totmaps, (flips.fields,), RuntimeError),
        "format_totmaps bad item": (parser_c.format_totmaps, (ItemsOnly([("Rss", 1, 2)]),), ValueError),
        "parse_smaps_mappings": (mappings, (smaps,), None),
        "parse_smaps_mappings value": (mappings, (head + b"Rss: 99999999999999999999 kB",), OverflowError),
        "parse_smaps_mappings sum": (mappings, (head + b"Rss: 18446744073709551615 kB\nRss: 1 kB",), OverflowError),
        "parse_smaps_mappings fields": (
            mappings,
            (head + b"".join(b"F%d: 1 kB\n" % i for i in range(257)),),
            SmapsParseError,
        ),
        "parse_smaps_mappings str": (mappings, ("text",), TypeError),
        "parse_smaps_mappings strided": (mappings, (memoryview(smaps)[::2],), BufferError),
    }


def _call(fn: Callable[..., Any], args: tuple[Any, ...], error: type[BaseException] | None) -> None:
    try:
        result = fn(*args)
    except BaseException as exc:
        assert error is not None and type(exc) is error, (exc, error)
        return
    assert error is None, (result, error)
    if fn is proc_c.probe_many:  # the dirfds it returns are the caller's to close
        for item in result:
            if isinstance(item, tuple):
                os.close(item[0])


CASE_NAMES = list(_cases(-1, -1, -1, -1))


@pytest.mark.parametrize("name", CASE_NAMES)
def test_no_reference_memory_or_fd_leaks(name: str, procfd: int, selffd: int, fake_root: int) -> None:
    no_stat = os.open("3", os.O_RDONLY | os.O_DIRECTORY, dir_fd=fake_root)
    try:
        _no_leaks(*_cases(procfd, selffd, fake_root, no_stat)[name])
    finally:
        os.close(no_stat)


def _held(args: tuple[Any, ...]) -> list[object]:
    """The arguments and what they hold (a mapping's names and values), ints aside: a reference leaked to any shows."""
    held: list[object] = []
    for arg in args:
        held.append(arg)
        if isinstance(arg, dict):
            held += [*arg.keys(), *arg.values()]
        elif isinstance(arg, list | ItemsOnly):
            items = arg if isinstance(arg, list) else arg.items()
            held += items
            held += [part for item in items if isinstance(item, tuple) for part in item]
    return [obj for obj in held if not isinstance(obj, int)]  # small ints are shared: their counts move


def _no_leaks(fn: Callable[..., Any], args: tuple[Any, ...], error: type[BaseException] | None) -> None:
    for _ in range(100):  # warm up caches, interned strings and small-int objects
        _call(fn, args, error)
    gc.collect()
    held = _held(args) + ([] if error is None else [error])  # raise_too_many looks its class up, each call
    refs = [sys.getrefcount(obj) for obj in held]
    total = getattr(sys, "gettotalrefcount", lambda: 0)()  # a debug build counts every reference
    fds = _open_fds()
    tracemalloc.start()
    try:
        before = tracemalloc.get_traced_memory()[0]
        for _ in range(CALLS):
            _call(fn, args, error)
        gc.collect()
        grown = tracemalloc.get_traced_memory()[0] - before
    finally:
        tracemalloc.stop()
    in_use = _malloc_in_use()
    for _ in range(CALLS):  # again without tracemalloc, whose own records are malloc'ed
        _call(fn, args, error)
    gc.collect()
    malloc_grown = (_malloc_in_use() or 0) - (in_use or 0)
    assert [sys.getrefcount(obj) for obj in held] == refs
    assert getattr(sys, "gettotalrefcount", lambda: 0)() - total < 100
    assert grown < 32 * 1024, grown
    # The C code mallocs only read buffers (8 KiB and up): one leaked a call would be 24 MB here.
    assert malloc_grown < 128 * 1024, malloc_grown
    assert _open_fds() == fds
