"""The totmaps file format: summed fields printed exactly as the kernel prints smaps field lines."""

from __future__ import annotations

import operator
from collections.abc import Mapping
from typing import Final

from ._reference import U64_MAX

LINE_FORMAT: Final = "%-16s%8lu kB\n"  # the kernel's, see SEQ_PUT_DEC in fs/proc/task_mmu.c


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
        lines.append(LINE_FORMAT % (name + ":", value))
    return "".join(lines).encode("ascii")
