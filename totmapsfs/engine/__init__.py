"""The engine and its cache: what a process's totmaps is, and when an earlier answer may stand for it."""

from ._cache import DEFAULT_CAPACITY, Cache, Counters, Key
from ._engine import (
    DEFAULT_MAX_AGE,
    Engine,
    Probe,
    Signature,
    Source,
    SourceUnavailable,
    Totmaps,
    boot_tick,
    choose_source,
    totmaps,
)

__all__ = [
    "DEFAULT_CAPACITY",
    "DEFAULT_MAX_AGE",
    "Cache",
    "Counters",
    "Engine",
    "Key",
    "Probe",
    "Signature",
    "Source",
    "SourceUnavailable",
    "Totmaps",
    "boot_tick",
    "choose_source",
    "totmaps",
]
