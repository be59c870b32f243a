"""The whole-system views: one snapshot of what a caller may read, summed, tabled, per cgroup, per file, reconciled."""

from ._files import FILES_COLUMNS, FileViews, files_families, format_files, walk_families
from ._meminfo import MeminfoViews, format_meminfo, parse_meminfo, reconcile
from ._metrics import (
    DEFAULT_TOP,
    FIELD_HELP,
    KNOWN_FIELDS,
    Family,
    MetricsOptions,
    families,
    parse_fields,
    render,
    snake,
)
from ._snapshot import USS_PARTS, Row, Snapshot, WalkStats, by_pss, total, user_name
from ._summary import SUMMARY_COLUMNS, format_summary, one_word
from ._views import PASS_THREADS, PATIENCE, Plan, Views

__all__ = [
    "DEFAULT_TOP",
    "FIELD_HELP",
    "FILES_COLUMNS",
    "KNOWN_FIELDS",
    "PASS_THREADS",
    "PATIENCE",
    "SUMMARY_COLUMNS",
    "USS_PARTS",
    "Family",
    "FileViews",
    "MeminfoViews",
    "MetricsOptions",
    "Plan",
    "Row",
    "Snapshot",
    "Views",
    "WalkStats",
    "by_pss",
    "families",
    "files_families",
    "format_files",
    "format_meminfo",
    "format_summary",
    "one_word",
    "parse_fields",
    "parse_meminfo",
    "reconcile",
    "render",
    "snake",
    "total",
    "user_name",
    "walk_families",
]
