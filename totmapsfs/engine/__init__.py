"""The engine and its cache: what a process's totmaps is, and when an earlier answer may stand for it."""

from ._budget import DEFAULT_WALK_BUDGET, WalkBudget
from ._cache import DEFAULT_CAPACITY, Budget, Cache, Counters, Key
from ._engine import (
    DEFAULT_DUTY,
    DEFAULT_MAX_AGE,
    HEAVY_FACTOR,
    LIGHT_PAGE_TABLES,
    SLOWDOWN_ENV,
    Checked,
    Engine,
    Signature,
    Source,
    SourceUnavailable,
    Totmaps,
    boot_tick,
    choose_source,
    page_tables,
    totmaps,
)
from ._files import FILE_SUMS, FileSums, FileWalks, Mapped, NotDue

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_DUTY",
    "DEFAULT_MAX_AGE",
    "DEFAULT_WALK_BUDGET",
    "FILE_SUMS",
    "HEAVY_FACTOR",
    "LIGHT_PAGE_TABLES",
    "SLOWDOWN_ENV",
    "Budget",
    "Cache",
    "Checked",
    "Counters",
    "Engine",
    "FileSums",
    "FileWalks",
    "Key",
    "Mapped",
    "NotDue",
    "Signature",
    "Source",
    "SourceUnavailable",
    "Totmaps",
    "WalkBudget",
    "boot_tick",
    "choose_source",
    "page_tables",
    "totmaps",
]
