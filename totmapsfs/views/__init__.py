"""The whole-system views: what a caller may read, summed, tabled, by cgroup, program, user, tree and file."""

from ._files import FILES_COLUMNS, FileViews, files_families, format_files, walk_families
from ._groups import Groups, format_groups
from ._meminfo import MeminfoViews, format_meminfo, parse_meminfo, reconcile
from ._metrics import (
    DEFAULT_GROUPS,
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
from ._names import CHROMEOS_FIELDS, COMM_MARK, LAYOUTS, GroupSum, chromeos, entry_name, program_name, sums_by
from ._snapshot import USS_PARTS, Row, Snapshot, WalkStats, by_pss, total, user_name
from ._summary import SUMMARY_COLUMNS, format_summary, one_word
from ._views import PASS_THREADS, PATIENCE, Plan, Views

__all__ = [
    "CHROMEOS_FIELDS",
    "COMM_MARK",
    "DEFAULT_GROUPS",
    "DEFAULT_TOP",
    "FIELD_HELP",
    "FILES_COLUMNS",
    "KNOWN_FIELDS",
    "LAYOUTS",
    "PASS_THREADS",
    "PATIENCE",
    "SUMMARY_COLUMNS",
    "USS_PARTS",
    "Family",
    "FileViews",
    "GroupSum",
    "Groups",
    "MeminfoViews",
    "MetricsOptions",
    "Plan",
    "Row",
    "Snapshot",
    "Views",
    "WalkStats",
    "by_pss",
    "chromeos",
    "entry_name",
    "families",
    "files_families",
    "format_files",
    "format_groups",
    "format_meminfo",
    "format_summary",
    "one_word",
    "parse_fields",
    "parse_meminfo",
    "program_name",
    "reconcile",
    "render",
    "snake",
    "sums_by",
    "total",
    "user_name",
    "walk_families",
]
