"""The pure-Python smaps parser: the reference, and the spec that the C parser (_speedups.c) matches."""

import re
from typing import Final

__all__ = [
    "MAX_FIELDS",
    "MAX_NAME_LEN",
    "NOT_SUMMABLE",
    "U64_MAX",
    "SmapsParseError",
    "parse_smaps",
]

U64_MAX: Final = 2**64 - 1
MAX_NAME_LEN: Final = 64
MAX_FIELDS: Final = 256

# Per-mapping geometry, not amounts: smaps_rollup leaves them out too.
NOT_SUMMABLE: Final = frozenset({"Size", "KernelPageSize", "MMUPageSize"})
_NOT_SUMMABLE_BYTES: Final = frozenset(name.encode("ascii") for name in NOT_SUMMABLE)

# One field line, as the kernel prints it with "%-16s%8lu kB\n".  re.MULTILINE
# makes ^ and $ match only at b"\n" boundaries (and the ends of the input), so
# a stray CR, NUL, tab or trailing space makes the whole line a non-field line.
_FIELD_LINE: Final = re.compile(rb"^([A-Za-z0-9_]{1,%d}): *([0-9]+) kB$" % MAX_NAME_LEN, re.MULTILINE)

# More significant digits than this cannot fit in 64 bits (U64_MAX has 20).
_U64_DIGITS: Final = len(str(U64_MAX))


class SmapsParseError(ValueError):
    """The input cannot be summed into a bounded set of fields (raised by both implementations)."""


def _long_value(digits: bytes) -> int:
    """Value of a digit run longer than U64_MAX's: only leading zeros can keep it in range.

    Stripping them first also keeps int() clear of its 4300-digit limit.
    """
    significant = digits.lstrip(b"0")
    return int(significant or b"0") if len(significant) <= _U64_DIGITS else U64_MAX + 1


def _line_number(data: bytes, offset: int) -> int:
    """1-based number of the line containing *offset* (only computed for error messages)."""
    return data.count(b"\n", 0, offset) + 1


def _as_bytes(data: bytes | bytearray | memoryview) -> bytes:
    """The raw bytes of *data*, accepting what a PyBUF_SIMPLE buffer request accepts."""
    if isinstance(data, bytes):
        return data
    with memoryview(data) as view:  # TypeError for objects without the buffer protocol
        if not view.c_contiguous:
            raise BufferError("parse_smaps() needs a C-contiguous buffer")
        return view.tobytes()


def parse_smaps(data: bytes | bytearray | memoryview) -> dict[str, int]:
    """Sum the fields of smaps (or smaps_rollup) text; return {name: total kB}.

    The rule, which the C parser (_speedups.c) follows exactly:

    * The input is split into lines at b"\\n"; the last line need not end
      with b"\\n".
    * A line is a *field line* iff it is exactly NAME b":", zero or more
      spaces, DIGITS, one space, b"kB", end of line.  NAME is 1..64 bytes of
      [A-Za-z0-9_]; DIGITS is one or more ASCII digits, leading zeros allowed
      ("0005" is 5).  Nothing else may be on the line: a trailing CR, space,
      tab or NUL makes it a non-field line.  This is the kernel's
      "%-16s%8lu kB\\n" (SEQ_PUT_DEC in fs/proc/task_mmu.c), which leaves
      no space at all when a 16-character name ("Private_Hugetlb:") meets a
      value of 8 or more digits.
    * Every other line is skipped silently: mapping headers, "VmFlags: ...",
      "THPeligible:    0", "ProtectionKey:  0", the "[rollup]" header, blank,
      truncated or garbage lines.
    * Field lines named Size, KernelPageSize or MMUPageSize (NOT_SUMMABLE) are
      skipped too, whatever their value; they do not count as fields.
    * The result maps each remaining NAME (str) to the sum of its values over
      all its field lines, in the order of each name's first appearance.
    * Errors, checked line by line in input order so the first offending line
      decides; within a line, in this order:
      - OverflowError if the value exceeds 2**64-1;
      - SmapsParseError if the line would add a distinct name beyond
        MAX_FIELDS (256);
      - OverflowError if the running sum of that name would exceed 2**64-1.
      Sums never wrap.  Messages are part of the contract: "line N: NAME value
      exceeds 2**64-1", "line N: sum of NAME exceeds 2**64-1" (N counts lines
      from 1) and "too many distinct fields (> 256)".

    *data* is any C-contiguous bytes-like object (BufferError otherwise,
    TypeError for non-buffers).  No I/O is done.
    """
    text = _as_bytes(data)
    totals: dict[bytes, int] = {}  # keyed by the raw name; decoded once at the end
    for match in _FIELD_LINE.finditer(text):
        name, digits = match.groups()
        if name in _NOT_SUMMABLE_BYTES:
            continue
        value = int(digits) if len(digits) <= _U64_DIGITS else _long_value(digits)
        if value > U64_MAX:
            line = _line_number(text, match.start())
            raise OverflowError(f"line {line}: {name.decode()} value exceeds 2**64-1")
        total = totals.get(name)
        if total is None:
            if len(totals) >= MAX_FIELDS:
                raise SmapsParseError(f"too many distinct fields (> {MAX_FIELDS})")
            total = 0
        total += value
        if total > U64_MAX:
            line = _line_number(text, match.start())
            raise OverflowError(f"line {line}: sum of {name.decode()} exceeds 2**64-1")
        totals[name] = total
    return {name.decode("ascii"): total for name, total in totals.items()}
