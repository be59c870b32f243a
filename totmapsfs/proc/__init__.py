"""The /proc side: every read of /proc (and of the cgroup2 tree), its errnos as domain errors, the access rule.

``ProcReader`` opens a process as a ``Process`` pinned by its /proc directory;
``_text`` turns what the kernel prints into fields; ``_access`` restates the
kernel's rule for who may read a process's smaps; ``_cgroup2`` mirrors the
cgroup v2 hierarchy. Nothing here caches or decides what to serve.
"""

from ._access import Caller, check, identify, may_read
from ._cgroup2 import (
    ROOT,
    Cgroup2,
    Cgroup2Mount,
    ancestors,
    child_path,
    find_cgroup2,
    parent_path,
    unified_path,
    within,
)
from ._reader import IMPLEMENTATION, MISSING_C, BufferPool, Process, ProcReader, translate, wrap_exceptions
from ._text import CAP_SYS_PTRACE, Mount, Stat, Status, parse_mountinfo, parse_stat, parse_status

__all__ = [
    "CAP_SYS_PTRACE",
    "IMPLEMENTATION",
    "MISSING_C",
    "ROOT",
    "BufferPool",
    "Caller",
    "Cgroup2",
    "Cgroup2Mount",
    "Mount",
    "ProcReader",
    "Process",
    "Stat",
    "Status",
    "ancestors",
    "check",
    "child_path",
    "find_cgroup2",
    "identify",
    "may_read",
    "parent_path",
    "parse_mountinfo",
    "parse_stat",
    "parse_status",
    "translate",
    "unified_path",
    "within",
    "wrap_exceptions",
]
