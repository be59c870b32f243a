"""totmapsfs: /proc/<pid>/totmaps — a process's smaps summed — served from user space over FUSE.

The package is layered; each module imports only from those above it here:

- ``_speedups`` (C) / ``_native`` (Python): the smaps parser, bytes in, sums out.
- ``_parser``: picks the C parser (or falls back) and formats the file.
- ``_procfs``: every read of /proc, errnos turned into ``_errors`` in one place.
- ``_access``: the kernel's ptrace-read rule; ``_engine``: compute and cache.
- ``_cgroups``: the cgroup v2 tree; ``_views``: whole-system snapshots (totmaps,
  summary, per cgroup) over the engine; ``_metrics``: them as Prometheus gauges.
- ``_tree``: paths, inodes, attributes; ``_ops``: the thin pyfuse3 adapter.
- ``_daemon`` / ``_cli``: mounting, signals, systemd notification.

Without FUSE, the same engine answers directly::

    >>> import os, totmapsfs
    >>> totmapsfs.totmaps(os.getpid())["Pss"] > 0
    True
"""

from ._engine import Engine, Source, totmaps
from ._errors import AccessDenied, NoSuchProcess, TotmapsError
from ._parser import IMPLEMENTATION, format_totmaps, parse_smaps
from ._procfs import ProcReader

__all__ = [
    "AccessDenied",
    "Engine",
    "IMPLEMENTATION",
    "NoSuchProcess",
    "ProcReader",
    "Source",
    "TotmapsError",
    "format_totmaps",
    "parse_smaps",
    "totmaps",
]
__version__ = "0.1.0"
