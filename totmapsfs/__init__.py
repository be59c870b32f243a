"""totmapsfs: /proc/<pid>/totmaps — a process's smaps summed — served from user space over FUSE.

The package is layered; each subpackage imports only those below it
(``make check`` enforces it with import-linter):

- ``parser``: the smaps parser (``_speedups.c``, and ``_reference.py``, the
  pure-Python spec), bytes in, sums out; the totmaps formatter.
- ``proc``: every read of /proc, errnos turned into ``errors`` in one place;
  the kernel's ptrace-read rule; the cgroup2 hierarchy.
- ``engine``: a process's totmaps, and the cache (injected clock).
- ``views``: whole-system snapshots (totmaps, summary, per cgroup, metrics; by program, user, process tree).
- ``tree``: paths, inodes, attributes; no FUSE.
- ``fuse``: the thin pyfuse3 adapter.
- ``service``: the command line, mounting, signals, privileges, systemd.

``harness`` (real daemons and workloads) and ``bench`` serve the tests and
the benchmark; nothing at run time imports them.

Without FUSE, the same engine answers directly::

    >>> import os, totmapsfs
    >>> totmapsfs.totmaps(os.getpid())["Pss"] > 0
    True
"""

from .engine import Engine, Source, totmaps
from .errors import AccessDenied, NoSuchProcess, TotmapsError
from .parser import IMPLEMENTATION, format_totmaps, parse_smaps
from .proc import ProcReader

__all__ = [
    "IMPLEMENTATION",
    "AccessDenied",
    "Engine",
    "NoSuchProcess",
    "ProcReader",
    "Source",
    "TotmapsError",
    "format_totmaps",
    "parse_smaps",
    "totmaps",
]
__version__ = "0.1.0"
