"""Before mounting: check the host can mount FUSE and make the mountpoint ready, or say why not."""

from __future__ import annotations

import errno
import logging
import os
import shutil
import stat
import subprocess

from ..proc import ProcReader

log = logging.getLogger("totmapsfs")


class UserError(Exception):
    """A mistake in how the command was run: printed as one line, exit status 1."""


def check_host() -> None:
    """Mounting with allow_other and reading every process's smaps needs root, FUSE and fusermount3."""
    if os.geteuid() != 0:
        raise UserError("must run as root: it mounts with allow_other and reads every process's smaps")
    if not os.path.exists("/dev/fuse"):
        raise UserError(
            "/dev/fuse is missing: load the fuse module (modprobe fuse) or, in a container, pass the device in"
        )
    if shutil.which("fusermount3") is None:
        raise UserError("fusermount3 not found: install the fuse3 package (apt-get install fuse3)")


def mount_at(path: str) -> tuple[str, str] | None:
    """(fstype, source) of the filesystem mounted exactly at ``path``, or None."""
    real = os.path.realpath(path)
    on_top = [m for m in ProcReader().mounts() if m.mountpoint == real][-1:]  # the last one is on top
    return (on_top[0].fstype, on_top[0].source) if on_top else None


def lazy_unmount(path: str) -> subprocess.CompletedProcess[str]:
    """``fusermount3 -uz``: detach the FUSE mount at ``path`` now; users still inside finish first."""
    return subprocess.run(["fusermount3", "-uz", path], capture_output=True, text=True)


def prepare(path: str) -> str:
    """Make ``path`` a mountable directory and return its absolute form.

    Created with its parents when missing (mkdir -p). A FUSE mount whose daemon
    died answers ENOTCONN ("Transport endpoint is not connected") to every
    access: that is ours to clean up, lazily, so a restart needs no manual
    step. Anything else already mounted there is refused, by name.
    """
    path = os.path.abspath(path)
    try:
        st = os.stat(path)
    except FileNotFoundError:
        try:
            os.makedirs(path, exist_ok=True)
        except OSError as exc:
            raise UserError(f"cannot create mountpoint {path}: {exc.strerror}") from None
        return path
    except OSError as exc:
        if exc.errno != errno.ENOTCONN:
            raise UserError(f"cannot use mountpoint {path}: {exc.strerror}") from None
        log.warning("%s: stale FUSE mount (its daemon died); unmounting it lazily", path)
        result = lazy_unmount(path)
        if result.returncode != 0:
            raise UserError(f"cannot clear stale mount at {path}: {result.stderr.strip()}") from None
        return prepare(path)
    if not stat.S_ISDIR(st.st_mode):
        raise UserError(f"mountpoint {path} is not a directory")
    mounted = mount_at(path)
    if mounted is not None:
        fstype, source = mounted
        raise UserError(
            f"{path} already has a filesystem mounted on it ({fstype} from {source}); "
            "unmount it first or choose another mountpoint"
        )
    return path
