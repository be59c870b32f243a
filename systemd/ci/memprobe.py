"""The boot test's fleet probe: a service holding known private memory, growing it on SIGUSR1."""

# Run by fleet-test.sh as a transient unit in system.slice, with the
# container's (the host's) /usr/bin/python3 and nothing but the standard
# library: python3 memprobe.py MIB GROW_MIB STATE. It writes MIB of private
# anonymous memory, then writes "ready <pid>" to STATE; each SIGUSR1 writes
# GROW_MIB more and then "grown <pid> <unix ms>" (the moment the pages were in
# place: the start of the end-to-end delay the test measures). The state file
# is replaced by rename, so a reader never sees half a line.

from __future__ import annotations

import mmap
import os
import signal
import sys
import time

held: list[mmap.mmap] = []


def hold(mib: int) -> None:
    m = mmap.mmap(-1, mib << 20, flags=mmap.MAP_PRIVATE | mmap.MAP_ANONYMOUS)
    m.write(b"\x5a" * (mib << 20))  # every page faulted in and dirty: Pss = Rss = USS
    held.append(m)


def report(state: str, line: str) -> None:
    tmp = f"{state}.tmp"
    with open(tmp, "w") as f:
        f.write(line + "\n")
    os.rename(tmp, state)


def main() -> None:
    mib, grow, state = int(sys.argv[1]), int(sys.argv[2]), sys.argv[3]
    grow_requested = False

    def on_usr1(signum: int, frame: object) -> None:
        nonlocal grow_requested
        grow_requested = True

    signal.signal(signal.SIGUSR1, on_usr1)
    hold(mib)
    report(state, f"ready {os.getpid()}")
    while True:
        signal.pause()
        if grow_requested:
            grow_requested = False
            hold(grow)
            report(state, f"grown {os.getpid()} {time.time_ns() // 1_000_000}")


if __name__ == "__main__":
    main()
