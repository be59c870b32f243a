"""The smaps parser: the C extension when it is built, else the pure-Python reference; and the formatter.

Both implementations follow one rule, written down in ``_reference.parse_smaps``
and checked against each other by the parser suite (the markupsafe pattern:
``_reference.py`` is the spec, ``_speedups.c`` the fast copy). Nothing is
logged here: the package may be imported before logging is set up, so the
daemon reports a missing extension itself, once (``MISSING_C``).
"""

from __future__ import annotations

import os
from collections.abc import Callable, Mapping

from . import _format, _mappings, _reference
from ._format import LINE_FORMAT
from ._reference import MAX_FIELDS, MAX_NAME_LEN, NOT_SUMMABLE, U64_MAX, SmapsParseError

__all__ = [
    "IMPLEMENTATION",
    "LINE_FORMAT",
    "MAX_FIELDS",
    "MAX_NAME_LEN",
    "MISSING_C",
    "NOT_SUMMABLE",
    "U64_MAX",
    "SmapsParseError",
    "format_totmaps",
    "parse_smaps",
    "parse_smaps_mappings",
]

ParseFn = Callable[[bytes | bytearray | memoryview], dict[str, int]]
FormatFn = Callable[[Mapping[str, int]], bytes]
MappingsFn = Callable[[bytes | bytearray | memoryview], dict[str, dict[str, int]]]

IMPLEMENTATION: str  # "c" or "python"
MISSING_C: str | None  # why the C parser is not in use, or None when it is
parse_smaps: ParseFn
format_totmaps: FormatFn
parse_smaps_mappings: MappingsFn  # per mapping key (_mappings.mapping_key): MOUNT/files

try:
    from ._speedups import format_totmaps as _c_format_totmaps
    from ._speedups import parse_smaps as _c_parse_smaps
    from ._speedups import parse_smaps_mappings as _c_parse_smaps_mappings
except ImportError as exc:
    # CI sets TOTMAPSFS_REQUIRE_C=1 so that a broken extension build fails
    # loudly instead of silently running the much slower fallback.
    if os.environ.get("TOTMAPSFS_REQUIRE_C") == "1":
        raise ImportError(f"TOTMAPSFS_REQUIRE_C=1 but the C parser did not import: {exc}") from exc
    parse_smaps, format_totmaps, IMPLEMENTATION, MISSING_C = (
        _reference.parse_smaps,
        _format.format_totmaps,
        "python",
        str(exc),
    )
    parse_smaps_mappings = _mappings.parse_smaps_mappings
else:
    parse_smaps, format_totmaps, IMPLEMENTATION, MISSING_C = _c_parse_smaps, _c_format_totmaps, "c", None
    parse_smaps_mappings = _c_parse_smaps_mappings
