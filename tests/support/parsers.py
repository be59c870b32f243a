"""What the parser tests share: the implementations, an independent oracle, guard-page buffers, hand-written input."""

import contextlib
import ctypes
import mmap
import os
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any, NamedTuple, NoReturn

import pytest

from totmapsfs.parser import SmapsParseError, _format, _reference

U64_MAX = 2**64 - 1
ParseFn = Callable[[bytes | bytearray | memoryview], dict[str, int]]
SEED_CORPUS = Path(__file__).resolve().parent.parent / "corpus" / "parser"  # the fuzz target's seeds


class Impl(NamedTuple):
    name: str  # "c" or "python"
    parse: ParseFn
    format: Callable[[Any], bytes]  # format_totmaps


def _c_parse() -> ParseFn | None:
    try:
        from totmapsfs.parser._speedups import parse_smaps
    except ImportError:
        return None
    return parse_smaps


@pytest.fixture(scope="session", params=["c", "python"])
def impl(request: pytest.FixtureRequest) -> Impl:
    if request.param == "python":
        return Impl("python", _reference.parse_smaps, _format.format_totmaps)
    parse = _c_parse()
    if parse is None:
        missing_c()
    from totmapsfs.parser._speedups import format_totmaps

    return Impl("c", parse, format_totmaps)


def missing_c() -> NoReturn:
    """The C parser does not import: a failure under TOTMAPSFS_REQUIRE_C=1 (CI), else a skip."""
    if os.environ.get("TOTMAPSFS_REQUIRE_C") == "1":
        pytest.fail("TOTMAPSFS_REQUIRE_C=1 but totmapsfs.parser._speedups does not import")
    pytest.skip("totmapsfs.parser._speedups is not built")


# --- an independent oracle: the rule written line by line, without regexes ---

_NAME_BYTES = frozenset(b"ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_")
_SKIPPED = {b"Size", b"KernelPageSize", b"MMUPageSize"}


def oracle_line(line: bytes) -> tuple[str, int] | None:
    """(name, value) if *line* is a summable field line, else None."""
    name, colon, rest = line.partition(b":")
    if not colon or not 1 <= len(name) <= 64 or not set(name) <= _NAME_BYTES:
        return None
    if not rest.endswith(b" kB"):
        return None
    padded = rest[: -len(b" kB")]
    digits = padded.lstrip(b" ")
    if not digits.isdigit() or name in _SKIPPED:  # zero or more spaces before the digits
        return None
    significant = digits.lstrip(b"0")
    value = int(significant or b"0") if len(significant) <= 20 else 2**64
    return name.decode(), value


def oracle(data: bytes) -> dict[str, int]:
    totals: dict[str, int] = {}
    names: set[str] = set()
    for lineno, line in enumerate(data.split(b"\n"), 1):
        field = oracle_line(line)
        if field is None:
            continue
        oracle_add(totals, names, field, lineno)
    return totals


def oracle_add(totals: dict[str, int], names: set[str], field: tuple[str, int], lineno: int) -> None:
    """Add one field line to ``totals``, ``names`` being every name met so far: the rule's checks, in its order."""
    name, value = field
    if value > U64_MAX:
        raise OverflowError(f"line {lineno}: {name} value exceeds 2**64-1")
    if name not in names and len(names) == 256:
        raise SmapsParseError("too many distinct fields (> 256)")
    names.add(name)
    total = totals.get(name, 0) + value
    if total > U64_MAX:
        raise OverflowError(f"line {lineno}: sum of {name} exceeds 2**64-1")
    totals[name] = total


def outcome(parse: Callable[[Any], dict[str, int]], data: bytes | memoryview) -> object:
    """Ordered result, or exception class and message: what must agree exactly."""
    try:
        result = parse(data)
    except (OverflowError, SmapsParseError) as exc:
        return type(exc), str(exc)
    assert type(result) is dict
    assert all(type(k) is str and type(v) is int for k, v in result.items())
    return list(result.items())


class GuardedBuffer:
    """Anonymous memory followed by a PROT_NONE page: a parser reading even one byte
    past data placed against it faults (SIGSEGV) at once, no sanitizer needed."""

    def __init__(self, capacity: int) -> None:
        page = mmap.PAGESIZE
        self.size = max(page, -(-capacity // page) * page)
        self.map = mmap.mmap(-1, self.size + page)
        anchor = ctypes.c_char.from_buffer(self.map)  # only to learn the mapping's address
        address = ctypes.addressof(anchor)
        del anchor  # drop the buffer export, or the mmap could not be closed
        libc = ctypes.CDLL(None, use_errno=True)
        libc.mprotect.argtypes = [ctypes.c_void_p, ctypes.c_size_t, ctypes.c_int]
        if libc.mprotect(address + self.size, page, 0) != 0:  # PROT_NONE (mmap does not export it)
            raise OSError(ctypes.get_errno(), "mprotect")

    @contextlib.contextmanager
    def placed(self, data: bytes | memoryview) -> Iterator[memoryview]:
        """*data* copied so that its last byte is the last readable one, as a zero-copy view."""
        start = self.size - len(data)
        self.map[start : self.size] = data
        with memoryview(self.map) as whole, whole[start : self.size] as view:
            yield view


_guard: GuardedBuffer | None = None


def guarded_outcome(parse: ParseFn, data: bytes) -> object:
    """outcome() on a copy of *data* that ends at a guard page (see GuardedBuffer)."""
    global _guard
    if _guard is None or _guard.size < len(data):
        _guard = GuardedBuffer(max(len(data), 1 << 16))
    with _guard.placed(data) as view:
        return outcome(parse, view)


def assert_agree(impl: Impl, data: bytes) -> object:
    """impl == oracle == every other importable implementation, on *data*;
    the C one also on a copy that ends at a guard page (an over-read faults)."""
    got = outcome(impl.parse, data)
    assert got == outcome(oracle, data)
    c_parse = _c_parse()
    for other in (_reference.parse_smaps, c_parse):
        if other is not None and other is not impl.parse:
            assert got == outcome(other, data)
    if c_parse is not None:
        assert got == guarded_outcome(c_parse, data)
    return got


# --- hand-written input ---

HANDWRITTEN = b"""\
00400000-00452000 r-xp 00000000 08:02 173521                             /usr/bin/dbus-daemon
Size:                328 kB
KernelPageSize:        4 kB
MMUPageSize:           4 kB
Rss:                 296 kB
Pss:                 148 kB
Shared_Clean:        296 kB
Private_Dirty:         0 kB
Swap:                  0 kB
THPeligible:    0
ProtectionKey:         0
VmFlags: rd ex mr mw me dw
00651000-00652000 rw-p 00051000 08:02 173521                             /usr/bin/dbus-daemon
Size:                  4 kB
Rss:                   4 kB
Pss:                   2 kB
Private_Dirty:         4 kB
Anonymous:             4 kB
Swap:                 12 kB
VmFlags: rd wr mr mw me dw ac

7fffd1a3c000-7fffd1a5d000 rw-p 00000000 00:00 0                          [stack]
Size:                132 kB
Rss:                 100 kB\r
Pss:                  10 kB\x20
Pss:                  10 kB
Anonymous:        000012 kB
Locked:   18446744073709551615 kB"""

HANDWRITTEN_SUMS = [
    ("Rss", 300),
    ("Pss", 160),
    ("Shared_Clean", 296),
    ("Private_Dirty", 4),
    ("Swap", 12),
    ("Anonymous", 16),
    ("Locked", U64_MAX),
]


def _names(count: int) -> list[bytes]:
    return [b"Field%d" % i for i in range(count)]
