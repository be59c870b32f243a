"""Errnos of /proc and /sys reads turned into domain errors: the one place they are interpreted."""

from __future__ import annotations

import errno
import functools
from collections.abc import Callable
from typing import ParamSpec, TypeVar

from ..errors import AccessDenied, NoSuchEntry, NoSuchProcess, SourceError, TotmapsError
from ._io import GONE, ns_inode_at

__all__ = ["ns_inode", "translate", "unless_gone", "unparseable", "wrap_exceptions"]

P = ParamSpec("P")
R = TypeVar("R")


def _pid_of(args: tuple[object, ...]) -> int:
    """The pid a wrapped call is about: a Process's own, or ProcReader.open's argument."""
    pid = getattr(args[0], "pid", None) if args else None
    if pid is None and len(args) > 1 and isinstance(args[1], int):
        pid = args[1]
    return pid if isinstance(pid, int) else -1


def translate(exc: OSError, what: str, gone: TotmapsError) -> TotmapsError:
    """The domain error for an OSError from /proc or /sys: the one place errnos are interpreted.

    ENOENT and ESRCH mean the thing is gone (``gone``: a /proc/<pid> directory
    whose task died answers ESRCH through an open dirfd); ENOTDIR, a name that
    is no directory (a procfs root given with --proc may hold anything);
    EACCES/EPERM mean the kernel refused; anything else (EIO, ENOMEM, EINTR...)
    is passed on as it is.
    """
    if exc.errno in GONE:
        return gone
    if exc.errno in (errno.EACCES, errno.EPERM):
        return AccessDenied(f"{what}: {exc.strerror}")
    return SourceError(exc.errno or errno.EIO, what)


def unless_gone(exc: OSError, what: str) -> None:
    """Return when ``exc`` says ``what`` is gone (the caller then answers None or []), else raise ``translate``'s error.

    For the readers whose answer for a vanished task or namespace is "none":
    EMFILE, EIO or EACCES must not read as "not there" (a caller that is not
    visible, a namespace that cannot be told).
    """
    if exc.errno not in GONE:
        raise translate(exc, what, NoSuchEntry(what)) from None


def ns_inode(dirfd: int, path: str) -> int | None:
    """The inode of nsfs file ``path`` (which namespace it is); None when it is gone, else ``translate``'s error."""
    try:
        return ns_inode_at(dirfd, path)
    except OSError as exc:
        raise translate(exc, path, NoSuchEntry(path)) from None


def unparseable(exc: ValueError, what: str) -> SourceError:
    """The domain error for a /proc text the parser refuses: the kernel's read failed, as far as a caller can tell."""
    return SourceError(errno.EIO, f"{what}: {exc}")


def wrap_exceptions(what: str) -> Callable[[Callable[P, R]], Callable[P, R]]:
    """Every OSError of a per-process read becomes ``translate``'s domain error (psutil's _pslinux does the same)."""

    def deco(fn: Callable[P, R]) -> Callable[P, R]:
        @functools.wraps(fn)
        def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
            try:
                return fn(*args, **kwargs)
            except OSError as exc:
                pid = _pid_of(args)
                raise translate(exc, f"{what} of {pid}", NoSuchProcess(pid)) from None

        return wrapper

    return deco
