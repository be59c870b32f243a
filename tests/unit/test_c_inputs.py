"""No C entry point crashes on any Python input; the C formatter is its reference's twin on hostile mappings.

The C modules run Python code in the middle of a call wherever they convert an
argument (``__index__``, ``__bool__``, a mapping's ``items()``), and that code
can change what the C code is holding. Calls that once crashed run in a child
process, so that a crash fails the test instead of killing pytest.
"""

from __future__ import annotations

import operator
import os
import subprocess
import sys
from collections.abc import Callable, Iterator
from itertools import product
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.adversarial import U64_MAX, BoolRaises, Index, format_outcome, mapping, odd_arguments
from totmapsfs.parser import _format
from totmapsfs.parser import _speedups as parser_c
from totmapsfs.proc import _speedups as proc_c

TESTS = Path(__file__).resolve().parent.parent
SCALE = float(os.environ.get("TOTMAPSFS_EXAMPLES_SCALE", "1"))
TIMEOUT = 120 * float(os.environ.get("TOTMAPSFS_TIMEOUT_SCALE", "1"))


def _child(code: str) -> subprocess.CompletedProcess[str]:
    """Run *code* in a fresh interpreter with the tests on its path; a signal shows as a negative returncode."""
    return subprocess.run(
        [sys.executable, "-c", code],
        env={**os.environ, "PYTHONPATH": os.pathsep.join([str(TESTS), os.environ.get("PYTHONPATH", "")])},
        capture_output=True,
        text=True,
        timeout=TIMEOUT,
    )


# --- format_totmaps: the heap overflow of the two-pass formatter ---

# The reproducer from the review: a value whose __index__ adds keys during
# the old second pass over the dict, which the first pass had sized the
# buffer for. Then: a heap overflow, SIGSEGV.
GROWS_ON_SECOND_CALL = """
import sys
from totmapsfs.parser._format import format_totmaps as reference
from totmapsfs.parser._speedups import format_totmaps
def fields(when):
    d = {}
    class Evil:
        calls = 0
        def __index__(self):
            Evil.calls += 1
            if Evil.calls == when:
                for i in range(5000):
                    d[f"K{i}"] = i
            return 5
    d["Rss"] = Evil()
    d["Pss"] = 7
    return d
def outcome(fmt, arg):
    try:
        return fmt(arg)
    except Exception as exc:
        return type(exc).__name__
for when in (1, 2):
    print(when, outcome(format_totmaps, fields(when)), outcome(reference, fields(when)), flush=True)
"""


def test_format_survives_an_index_that_grows_the_dict() -> None:
    result = _child(GROWS_ON_SECOND_CALL)
    assert result.returncode == 0, f"the C formatter crashed ({result.returncode}): {result.stderr[-2000:]}"
    # Changed in its first __index__ call, the dict makes the items iterator raise, as in
    # the reference's for loop; a second call never comes (each value is converted once).
    expected = b"Rss:                   5 kB\nPss:                   7 kB\n"
    assert result.stdout.splitlines() == ["1 RuntimeError RuntimeError", f"2 {expected!r} {expected!r}"]


@pytest.mark.parametrize("length", [1, 15, 16, 78, 79, 80, 200, 5000])
def test_format_long_names_as_the_reference(length: int) -> None:
    fields = {"N" * length: 12345678, "Rss": 1}
    assert parser_c.format_totmaps(fields) == _format.format_totmaps(fields)
    assert parser_c.format_totmaps(fields).startswith(b"N" * length + b":")


CHECK_ORDER_CASES: list[dict[Any, Any]] = [
    {5: 1.5},  # the value first: TypeError for it (the name would be one too)
    {5: -1},  # the range before the name: ValueError
    {5: 1},  # then the name: TypeError
    {"Rs\u015b": 1, "Pss": -1},  # a non-ASCII name raises only at the end: a later bad value wins
    {"Rs\u015b": 1, 5: 1},
    {"Rs\u015b": 1, "Pss": 1},
    {"a": 10**5000},  # the message cannot print the value: ValueError all the same
]


@pytest.mark.parametrize("fields", CHECK_ORDER_CASES, ids=range(len(CHECK_ORDER_CASES)))
def test_format_checks_in_the_reference_order(fields: dict[Any, Any]) -> None:
    c, py = format_outcome(parser_c.format_totmaps, fields), format_outcome(_format.format_totmaps, fields)
    assert c == py and c[0] == "raise"


def test_format_any_mapping_and_bools() -> None:
    class Reversed(dict[str, int]):
        def items(self) -> Any:
            return list(reversed(list(super().items())))

    fields = Reversed(Rss=1, Pss=2)
    assert parser_c.format_totmaps(fields) == _format.format_totmaps(fields)
    assert parser_c.format_totmaps(fields).startswith(b"Pss:")  # its items(), not the dict underneath
    assert parser_c.format_totmaps({"Rss": True, "Pss": Index(lambda calls: U64_MAX)}) == (
        b"Rss:                   1 kB\nPss:            18446744073709551615 kB\n"
    )
    with pytest.raises(AttributeError):
        parser_c.format_totmaps([("Rss", 1)])  # no items(): the reference refuses it too


@settings(max_examples=int(2000 * SCALE), deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(st.binary(max_size=64))
def test_format_agrees_with_the_reference_on_hostile_mappings(data: bytes) -> None:
    """The fuzz target's mappings (tests/support/adversarial.py): same bytes, or the same exception class."""
    c = format_outcome(parser_c.format_totmaps, mapping(data))
    assert c == format_outcome(_format.format_totmaps, mapping(data)), data
    assert c[0] != "not bytes"


# --- every entry point, every odd argument: an exception, never a crash ---


def _calls(procfd: int) -> Iterator[tuple[str, Callable[..., object], tuple[object, ...]]]:
    odd = odd_arguments()
    fds = [procfd, *odd]
    for arg in [*odd, b"x" * 100_000, b"Rss: 1 kB\n" * 10_000]:
        yield "parse_smaps", parser_c.parse_smaps, (arg,)
        yield "parse_smaps_mappings", parser_c.parse_smaps_mappings, (arg,)
        yield "parse_stat", proc_c.parse_stat, (arg,)
        yield "parse_status", proc_c.parse_status, (arg,)
        yield "format_totmaps", parser_c.format_totmaps, (arg,)
        yield "probe", proc_c.probe, (arg,)
    for data in range(256):
        yield "format_totmaps", parser_c.format_totmaps, (mapping(bytes([data, data * 7 % 256, 255 - data]) * 8),)
    for fd, name in product(fds, [*odd, "self/status", "self", "\0", "x" * 5000]):
        yield "read_at", proc_c.read_at, (fd, name)
    for wait in odd:
        yield "read_at", proc_c.read_at, (procfd, "self/stat", wait)
    for fd, tid in product(fds, [*odd, os.getpid(), 2**63 - 1]):
        yield "caller", proc_c.caller, (fd, tid)

    def emptied() -> list[object]:
        pids: list[object] = []
        pids.extend([Index(lambda calls: pids.clear() or 1), *[object()] * 8])
        return pids

    pid_lists: list[object] = [*odd, [os.getpid(), -1, 0, 2**40], range(5), iter([1, 2]), emptied(), [2**64]]
    for fd, pids, cgroup in product(fds, pid_lists, [False, True, BoolRaises()]):
        yield "probe_many", proc_c.probe_many, (fd, pids, cgroup)
    yield "probe_many", proc_c.probe_many, (procfd, [os.getpid()] * 20_000)  # more than the fds we may hold
    for args in [(), (1, 2, 3, 4), (procfd,)]:
        for name, fn in [("read_at", proc_c.read_at), ("caller", proc_c.caller), ("probe_many", proc_c.probe_many)]:
            yield name, fn, args


def battery() -> None:
    """Make every call of _calls(); exit 1 listing any that raised SystemError (a C API misuse) or a BaseException."""
    procfd = os.open("/proc", os.O_RDONLY | os.O_DIRECTORY)
    count, wrong = 0, []
    for name, fn, args in _calls(procfd):
        count += 1
        try:
            result = fn(*args)
        except SystemError as exc:
            wrong.append(f"{name}{args!r:.200}: SystemError {exc}")
        except Exception:
            continue
        if name == "probe_many":  # the caller owns the dirfds it returns
            for item in result:  # type: ignore[attr-defined]
                if isinstance(item, tuple):
                    os.close(item[0])
    print(f"{count} calls", flush=True)
    if wrong:
        sys.exit("\n".join(wrong))


def test_no_entry_point_crashes_on_any_argument() -> None:
    result = _child("import unit.test_c_inputs as t; t.battery()")
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-3000:]}"
    assert int(result.stdout.split()[0]) > 3000, result.stdout


def test_probe_many_survives_a_pid_that_empties_the_list() -> None:
    """Once, probe_many walked the caller's list: a pid's __index__ emptying it made it read freed memory."""
    code = (
        "import os\n"
        "from support.adversarial import Index\n"
        "from totmapsfs.proc._speedups import probe_many\n"
        "pids = []\n"
        "pids.extend([Index(lambda calls: pids.clear() or os.getpid()), os.getpid(), 1])\n"
        "items = probe_many(os.open('/proc', os.O_RDONLY), pids)\n"
        "print(len(items), [type(item).__name__ for item in items])\n"
    )
    result = _child(code)
    assert result.returncode == 0, f"exit {result.returncode}: {result.stderr[-2000:]}"
    assert result.stdout.split(" ", 1)[0] == "3"  # the pids as they were passed: a copy is walked


def _not_an_open_fd(value: object) -> bool:
    """Not a descriptor this process holds (nor AT_FDCWD): a call with it cannot read anything real."""
    try:
        value = operator.index(value)  # as the C code takes it: Index(3) is fd 3
    except Exception:
        return True
    if value == -100:  # AT_FDCWD
        return False
    try:
        os.fstat(value)
    except (OSError, OverflowError, ValueError):
        return True
    return False


ODD = st.one_of(
    st.none(),
    st.integers(),
    st.floats(),
    st.text(alphabet=st.characters(blacklist_characters="/"), max_size=12),  # never an absolute path
    st.binary(max_size=200).filter(lambda b: b"/" not in b),
    st.builds(bytearray, st.binary(max_size=200)),
    st.lists(st.integers(), max_size=4),
    st.sampled_from(odd_arguments()),
).filter(_not_an_open_fd)
C_FUNCTIONS: list[Callable[..., object]] = [
    parser_c.parse_smaps,
    parser_c.parse_smaps_mappings,
    parser_c.format_totmaps,
    proc_c.parse_stat,
    proc_c.parse_status,
    proc_c.read_at,
    proc_c.probe,
    proc_c.caller,
    proc_c.probe_many,
]


@settings(max_examples=int(1000 * SCALE), deadline=None, suppress_health_check=[HealthCheck.filter_too_much])
@given(st.sampled_from(C_FUNCTIONS), st.lists(ODD, max_size=4))
def test_every_entry_point_refuses_odd_arguments(fn: Callable[..., object], args: list[object]) -> None:
    """Any arguments at all (in-process: the child-process battery above has run the known crashers)."""
    try:
        result = fn(*args)
    except SystemError as exc:  # a C API misuse: NULL returned with no exception set, and the like
        raise AssertionError(f"{fn.__name__}{tuple(args)!r:.300}: {exc!r}") from exc
    except Exception:
        return
    if fn is proc_c.probe_many:
        for item in result:  # type: ignore[attr-defined]
            if isinstance(item, tuple):
                os.close(item[0])
