"""Daemon lifecycle: mount, serve until SIGINT/SIGTERM, tell systemd, unmount."""

from __future__ import annotations

import faulthandler
import inspect
import logging
import os
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any, cast

import pyfuse3
import trio

from ._privileges import drop_after_mount, regain_for_unmount
from ._sdnotify import notify

log = logging.getLogger("totmapsfs")

# Debian 12's python3-trio, which the .deb runs on, is 0.22: to_thread.run_sync's
# abandon_on_cancel= came in 0.23 (renamed from cancellable=, since removed).
_RUN_SYNC_KEYWORDS = inspect.signature(trio.to_thread.run_sync).parameters
_ABANDON = "abandon_on_cancel" if "abandon_on_cancel" in _RUN_SYNC_KEYWORDS else "cancellable"

# Seconds that requests still in flight at SIGTERM get to finish before they
# are abandoned (a read stuck on a target's mmap lock must not delay stop).
GRACE = 2.0


class MountFailed(Exception):
    """The kernel (or libfuse) refused the mount: printed as one line, exit status 1."""


def mount_options(debug: bool = False) -> set[str]:
    # allow_other: every user reads through the mount (our open() applies the
    # ptrace rule). ro: the VFS refuses writes itself. No default_permissions:
    # like /proc, files look 0444 and access is decided when they are opened.
    options = {"fsname=totmapsfs", "subtype=totmapsfs", "allow_other", "ro", "nosuid", "nodev", "noexec"}
    if debug:
        options.add("debug")
    return options


def serve(ops: pyfuse3.Operations, mountpoint: str, *, debug: bool = False, detail: str = "") -> None:
    """Mount ``ops`` at ``mountpoint`` and serve until a stop signal; always unmounts."""
    try:
        pyfuse3.init(ops, mountpoint, mount_options(debug))
    except RuntimeError as exc:  # what pyfuse3.init raises when the mount is refused
        raise MountFailed(str(exc)) from None
    try:
        drop_after_mount()  # before trio.run starts any thread: capabilities are per thread
        trio.run(_main, mountpoint, detail)
    finally:
        regain_for_unmount()
        pyfuse3.close(unmount=True)
    log.info("unmounted %s", mountpoint)


async def _main(mountpoint: str, detail: str) -> None:
    async with trio.open_nursery() as nursery:
        nursery.start_soon(_stop_on_signal, nursery.cancel_scope)
        nursery.start_soon(_announce_ready, mountpoint, detail)
        await pyfuse3.main()
        nursery.cancel_scope.cancel()


async def _stop_on_signal(scope: trio.CancelScope) -> None:
    faulthandler.register(signal.SIGUSR1, all_threads=True)  # dump stacks to diagnose a hang
    with trio.open_signal_receiver(signal.SIGINT, signal.SIGTERM, signal.SIGHUP) as signals:
        async for signum in signals:
            if signum == signal.SIGHUP:
                log.info("SIGHUP: nothing to reload; still serving")
                continue
            log.info("%s: unmounting", signal.Signals(signum).name)
            notify("STOPPING=1")
            pyfuse3.terminate()
            # pyfuse3.main() returns once handlers in flight finish; give them
            # a moment, then cancel what remains.
            await trio.sleep(GRACE)
            scope.cancel()
            return


async def _announce_ready(mountpoint: str, detail: str) -> None:
    # A lookup the kernel cannot answer from its caches: when it returns, the
    # loop is serving requests, and only then is the service ready.
    run_sync = cast(Callable[..., Awaitable[Any]], trio.to_thread.run_sync)  # the keyword differs by version
    await run_sync(os.lstat, os.path.join(mountpoint, "self"), **{_ABANDON: True})
    log.info("serving %s%s", mountpoint, detail)
    notify(f"READY=1\nSTATUS=serving {mountpoint}\nMAINPID={os.getpid()}")


def _open_std_fds() -> None:
    """Point any of descriptors 0-2 that our starter left closed at /dev/null.

    A closed one would be handed out by the next open() (/dev/fuse, say), and
    libfuse's --debug output, written to descriptor 2, would go into it; and
    Python, finding no stderr, sets sys.stderr to None, on which
    faulthandler.register raises and stops the daemon.
    """
    for fd in (0, 1, 2):
        try:
            os.fstat(fd)
        except OSError:
            null = os.open(os.devnull, os.O_RDWR)
            if null != fd:
                os.dup2(null, fd)
                os.close(null)
    if sys.stderr is None:
        sys.stderr = open(2, "w", errors="backslashreplace", closefd=False)


def flush_std_streams() -> None:
    """Flush stdout and stderr now, pointing one that cannot take the bytes (a full disk, a dead pipe) at /dev/null.

    Python flushes both once more as it exits and turns a failure there into
    exit status 120 (Py_FinalizeEx's flush_std_files, Python/pylifecycle.c):
    a daemon that stopped cleanly would report failure because its stderr is
    unwritable. PYTHONUNBUFFERED hides this (nothing is left to flush); systemd
    does not set it. What could not be written is lost either way.
    """
    for stream in (sys.stdout, sys.stderr):
        if stream is None:
            continue
        try:
            stream.flush()
        except (OSError, ValueError):
            null = os.open(os.devnull, os.O_WRONLY)
            try:
                os.dup2(null, stream.fileno())
                stream.flush()  # the bytes still buffered go to /dev/null: the exit's flush finds none
            except (OSError, ValueError):
                pass  # closed underneath us: nothing left that the exit could fail to flush
            finally:
                os.close(null)


def setup_logging(debug: bool) -> None:
    _open_std_fds()
    logging.basicConfig(
        stream=sys.stderr,
        level=logging.DEBUG if debug else logging.INFO,
        format="totmapsfs: %(levelname)s: %(message)s",
    )
    # A closed or full stderr must not take the daemon down with it.
    logging.raiseExceptions = False
