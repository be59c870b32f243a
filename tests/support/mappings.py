"""What the per-mapping parser tests share: both implementations, an oracle without regexes, the outcome to compare."""

import os
from collections.abc import Callable
from typing import Any

from support import parsers
from support.parsers import oracle_add, oracle_line
from totmapsfs.parser import SmapsParseError, _mappings

U64_MAX = 2**64 - 1
MappingsFn = Callable[[Any], dict[str, dict[str, int]]]
_HEX = frozenset(b"0123456789abcdef")


def c_mappings() -> MappingsFn:
    try:
        from totmapsfs.parser._speedups import parse_smaps_mappings
    except ImportError:
        parsers.missing_c()
    return parse_smaps_mappings


def outcome(parse: MappingsFn, data: object) -> object:
    """Ordered result (keys, and fields under each), or exception class and message."""
    try:
        result = parse(data)
    except (OverflowError, SmapsParseError) as exc:
        return type(exc), str(exc)
    assert type(result) is dict
    return [(k, list(v.items())) for k, v in result.items()]


def _hex(part: bytes) -> bool:
    return bool(part) and set(part) <= _HEX


def oracle_header(line: bytes) -> tuple[bytes, bytes, bytes] | None:
    """(device, inode, name) if *line* is a mapping header, by splitting on spaces rather than a regex."""
    parts = line.split(b" ", 5)
    if len(parts) < 5:
        return None
    span, perms, offset, device = parts[:4]
    low, dash, high = span.partition(b"-")
    major, colon, minor = device.partition(b":")
    if not (dash and _hex(low) and _hex(high) and len(perms) == 4 and _hex(offset)):
        return None
    if not (colon and _hex(major) and _hex(minor)):
        return None
    inode = parts[4]
    if not inode.isdigit() or not inode.isascii():
        return None
    return device, inode, parts[5] if len(parts) > 5 else b""


def oracle(data: bytes) -> dict[str, dict[str, int]]:
    out: dict[str, dict[str, int]] = {}
    names: set[str] = set()
    current: dict[str, int] | None = None
    for lineno, line in enumerate(data.split(b"\n"), 1):
        header = oracle_header(line)
        if header is not None:
            current = out.setdefault(os.fsdecode(_mappings.mapping_key(*header)), {})
            continue
        field = oracle_line(line)
        if field is None or current is None:
            continue
        oracle_add(current, names, field, lineno)
    return out


def assert_agree(data: bytes) -> object:
    """C == reference == oracle on *data*, and C again on a copy ending at a guard page."""
    c = c_mappings()
    got = outcome(c, data)
    assert got == outcome(_mappings.parse_smaps_mappings, data)
    assert got == outcome(oracle, data)
    assert got == _guarded(c, data)
    return got


def _guarded(parse: MappingsFn, data: bytes) -> object:
    if parsers._guard is None or parsers._guard.size < len(data):
        parsers._guard = parsers.GuardedBuffer(max(len(data), 1 << 16))
    with parsers._guard.placed(data) as view:
        return outcome(parse, view)
