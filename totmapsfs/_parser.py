"""The smaps parser to use (C extension, else the pure-Python reference) and the totmaps formatter."""

import logging
import operator
import os
from collections.abc import Callable, Mapping
from typing import Final

from totmapsfs import _native
from totmapsfs._native import U64_MAX, SmapsParseError

__all__ = ["IMPLEMENTATION", "SmapsParseError", "format_totmaps", "parse_smaps"]

_log = logging.getLogger("totmapsfs")

IMPLEMENTATION: str  # "c" or "python"
parse_smaps: Callable[[bytes | bytearray | memoryview], dict[str, int]]

try:
    from totmapsfs._speedups import parse_smaps as _c_parse_smaps

    parse_smaps, IMPLEMENTATION = _c_parse_smaps, "c"
except ImportError as exc:
    # CI sets TOTMAPSFS_REQUIRE_C=1 so that a broken extension build fails
    # loudly instead of silently running the much slower fallback.
    if os.environ.get("TOTMAPSFS_REQUIRE_C") == "1":
        raise ImportError(
            f"TOTMAPSFS_REQUIRE_C=1 but the C parser totmapsfs._speedups did not import: {exc}"
        ) from exc
    parse_smaps, IMPLEMENTATION = _native.parse_smaps, "python"
    _log.warning("totmapsfs._speedups unavailable (%s); using the pure-Python smaps parser", exc)

_LINE_FORMAT: Final = "%-16s%8lu kB\n"  # the kernel's, see SEQ_PUT_DEC in fs/proc/task_mmu.c


def format_totmaps(fields: Mapping[str, int]) -> bytes:
    """Render *fields* as smaps field lines, in mapping order, with no header line.

    Each line is "%-16s%8lu kB\\n" % (name + ":", value), ASCII; {} gives b"".
    Raises TypeError for a non-integer value, ValueError for one outside
    0..2**64-1 or for a non-ASCII name.
    """
    lines = []
    for name, value in fields.items():
        value = operator.index(value)  # TypeError for floats and the like, as %lu would truncate them
        if not 0 <= value <= U64_MAX:
            raise ValueError(f"{name}: {value} kB is outside 0..2**64-1")
        lines.append(_LINE_FORMAT % (name + ":", value))
    return "".join(lines).encode("ascii")
