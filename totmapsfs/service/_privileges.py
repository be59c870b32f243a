"""After mounting, keep only the capabilities serving needs: CAP_SYS_PTRACE to read, CAP_SYS_ADMIN to unmount, setns.

Root starts with every capability. Once the FUSE connection exists the daemon
only has to (a) read other users' /proc/<pid>/smaps(_rollup), which the kernel
allows under PTRACE_MODE_READ_FSCREDS to a holder of CAP_SYS_PTRACE
(Documentation/filesystems/proc.rst, kernel/ptrace.c), and (b) unmount at exit,
which needs CAP_SYS_ADMIN (umount2). So: effective {CAP_SYS_PTRACE}, permitted
{CAP_SYS_PTRACE, CAP_SYS_ADMIN}, the bounding and ambient sets cut to match, and
no_new_privs — a bug in a request handler then cannot write root's files
(no CAP_DAC_OVERRIDE), kill, load modules or mount; CAP_SYS_ADMIN comes back
into the effective set only for the unmount, and in the one thread that joins
callers' cgroup namespaces to find where they begin (proc._cgroupns raises
it there itself, proc.with_admin), for each setns(2). capget/capset are
proc._cgroupns's (ctypes: three syscalls are not worth a dependency).

Capabilities are per thread (capabilities(7)): this runs in the main thread
after pyfuse3.init and before trio starts any worker thread, so every thread
serving requests inherits the reduced sets.
"""

from __future__ import annotations

import ctypes
import ctypes.util
import logging
import os

from ..proc import CAP_SYS_ADMIN, CAP_SYS_PTRACE
from ..proc import capget as _capget
from ..proc import capset as _capset

log = logging.getLogger("totmapsfs")

SERVING = frozenset({CAP_SYS_PTRACE})
KEPT = frozenset({CAP_SYS_PTRACE, CAP_SYS_ADMIN})

_PR_CAPBSET_READ = 23
_PR_CAPBSET_DROP = 24
_PR_SET_NO_NEW_PRIVS = 38
_PR_CAP_AMBIENT = 47
_PR_CAP_AMBIENT_CLEAR_ALL = 4


_libc = ctypes.CDLL(ctypes.util.find_library("c"), use_errno=True)


def _check(result: int, what: str) -> None:
    if result != 0:
        err = ctypes.get_errno()
        raise OSError(err, f"{what}: {os.strerror(err)}")


def _mask(caps: frozenset[int]) -> int:
    return sum(1 << cap for cap in caps)


def _last_cap() -> int:
    try:
        with open("/proc/sys/kernel/cap_last_cap") as f:
            return int(f.read())
    except (OSError, ValueError):
        return 63


def drop_after_mount() -> None:
    """Cut this thread's capabilities to what serving and unmounting need; log, never fail."""
    try:
        effective, permitted = _capget()
        keep = _mask(KEPT) & permitted
        if permitted & ~keep == 0 and effective & ~_mask(SERVING) == 0:
            return  # already minimal (e.g. the systemd unit's bounding set did most of it)
        for cap in range(_last_cap() + 1):
            # Dropping needs CAP_SETPCAP: root has it; under the systemd unit the
            # bounding set holds only the kept two already, so nothing is dropped.
            if not keep >> cap & 1 and _libc.prctl(_PR_CAPBSET_READ, cap, 0, 0, 0) == 1:
                _check(_libc.prctl(_PR_CAPBSET_DROP, cap, 0, 0, 0), f"PR_CAPBSET_DROP {cap}")
        _libc.prctl(_PR_CAP_AMBIENT, _PR_CAP_AMBIENT_CLEAR_ALL, 0, 0, 0)
        _check(_libc.prctl(_PR_SET_NO_NEW_PRIVS, 1, 0, 0, 0), "PR_SET_NO_NEW_PRIVS")
        _capset(_mask(SERVING) & keep, keep)
        log.debug("capabilities now: effective %#x, permitted %#x", *_capget())
    except OSError as exc:
        log.warning("could not drop capabilities after mounting (%s); serving with the ones we have", exc)


def regain_for_unmount() -> None:
    """Put CAP_SYS_ADMIN back into the effective set (if permitted) so umount2 works; log, never fail."""
    try:
        effective, permitted = _capget()
        wanted = (effective | _mask(KEPT)) & permitted
        if wanted != effective:
            _capset(wanted, permitted)
    except OSError as exc:
        log.warning("could not raise CAP_SYS_ADMIN to unmount (%s)", exc)
