"""Domain errors: what can go wrong, named once, mapped to errnos only at the FUSE edge."""

from __future__ import annotations

import errno


class TotmapsError(Exception):
    """Base of every error a request can meet; ``errno`` is what a caller of the mount sees."""

    errno: int = errno.EIO


class NoSuchEntry(TotmapsError):
    """A name that does not exist in the tree (not a pid, or a pid with no process)."""

    errno = errno.ENOENT


class NoSuchProcess(NoSuchEntry):
    """The process left (or its pid now names another process) while we looked at it."""

    def __init__(self, pid: int) -> None:
        super().__init__(f"no process {pid}")
        self.pid = pid


class AccessDenied(TotmapsError):
    """The kernel would not let this caller read the process's smaps (ptrace read access)."""

    errno = errno.EACCES


NAME_MAX = 255  # include/uapi/linux/limits.h; what our statfs reports as f_namemax


class NameTooLong(TotmapsError):
    """A path component longer than NAME_MAX."""

    errno = errno.ENAMETOOLONG

    @classmethod
    def check(cls, name: bytes) -> None:
        """Raise for a name longer than NAME_MAX, as most filesystems do (procfs says ENOENT)."""
        if len(name) > NAME_MAX:
            raise cls(name[:32].decode("utf-8", "replace"))


class ReadOnly(TotmapsError):
    """Any attempt to change the tree: it mirrors /proc and cannot be written."""

    errno = errno.EROFS


class NotADirectory(TotmapsError):
    """A directory operation on a file."""

    errno = errno.ENOTDIR


class SourceError(TotmapsError):
    """The kernel refused a read of /proc with an errno we pass on unchanged (EIO, ENOMEM…)."""

    def __init__(self, err: int, what: str) -> None:
        super().__init__(f"{what}: {errno.errorcode.get(err, err)}")
        self.errno = err


class Busy(TotmapsError):
    """A process whose memory has been read for longer than a view waits (its mmap lock held): left out."""

    errno = errno.EAGAIN

    def __init__(self, pid: int) -> None:
        super().__init__(f"process {pid}: its smaps read has not returned")
        self.pid = pid
