"""The /proc side: every read of /proc (and of the cgroup2 tree), its errnos as domain errors, the access rule.

``ProcReader`` opens a process as a ``Process`` pinned by its /proc directory
(``_errnos`` turns what its reads meet into domain errors),
its hot reads done by ``_io`` (the C half or its Python reference);
``_text`` turns what the kernel prints into fields; ``_pidns`` and
``_userns`` relate pid and user namespaces through nsfs (``_nsfs``),
``_cgroupns`` finds where a cgroup namespace begins; ``_access`` restates the
kernel's rule for who may read a process's smaps over them; ``_cgroup2``
mirrors the cgroup v2 hierarchy.
Nothing here caches or decides what to serve.
"""

from ._access import CAP_PERFMON, Access, Caller, Target
from ._cgroup2 import (
    ROOT,
    Cgroup2,
    Cgroup2Mount,
    ancestors,
    child_path,
    find_cgroup2,
    parent_path,
    rebase,
    unified_path,
    within,
)
from ._cgroupns import CAP_SYS_ADMIN, CgroupRoots, capget, capset, root_from, setns, with_admin
from ._errnos import translate, wrap_exceptions
from ._io import read_fd_into
from ._nsfs import WouldWait
from ._pidns import FALLBACK_ENV, PidNamespaces, PidView
from ._reader import IMPLEMENTATION, MISSING_C, BufferPool, Process, ProcReader
from ._text import CAP_SYS_PTRACE, Mount, Stat, Status, parse_mountinfo, parse_stat, parse_status
from ._userns import UserNamespaces, UserNs, capable

__all__ = [
    "CAP_PERFMON",
    "CAP_SYS_ADMIN",
    "CAP_SYS_PTRACE",
    "FALLBACK_ENV",
    "IMPLEMENTATION",
    "MISSING_C",
    "ROOT",
    "Access",
    "BufferPool",
    "Caller",
    "Cgroup2",
    "Cgroup2Mount",
    "CgroupRoots",
    "Mount",
    "PidNamespaces",
    "PidView",
    "ProcReader",
    "Process",
    "Stat",
    "Status",
    "Target",
    "UserNamespaces",
    "UserNs",
    "WouldWait",
    "ancestors",
    "capable",
    "capget",
    "capset",
    "child_path",
    "find_cgroup2",
    "parent_path",
    "parse_mountinfo",
    "parse_stat",
    "parse_status",
    "read_fd_into",
    "rebase",
    "root_from",
    "setns",
    "translate",
    "unified_path",
    "with_admin",
    "within",
    "wrap_exceptions",
]
