"""The whole-system views: one snapshot of what a caller may read, as totmaps, summary, per-cgroup sums, metrics."""

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
    "KNOWN_FIELDS",
    "PASS_THREADS",
    "PATIENCE",
    "SUMMARY_COLUMNS",
    "USS_PARTS",
    "Family",
    "MetricsOptions",
    "Plan",
    "Row",
    "Snapshot",
    "Views",
    "WalkStats",
    "by_pss",
    "families",
    "format_summary",
    "one_word",
    "parse_fields",
    "render",
    "snake",
    "total",
    "user_name",
]
