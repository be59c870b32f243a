"""How much slower than a plain host this run is: sanitizers, valgrind and emulators stretch every wait.

TOTMAPSFS_TIMEOUT_SCALE multiplies the tests' timeouts and their waits for a
daemon or an agent to come up (make asan 5, make valgrind 10, tests/vm/run
10). TOTMAPSFS_EMULATED=1 (tests/vm/run) says the CPU itself is software
emulated (QEMU's TCG): a test whose assertion is a share of wall-clock time
between two things the emulator slows unequally reads it.
"""

from __future__ import annotations

import os

TIMEOUT_SCALE = float(os.environ.get("TOTMAPSFS_TIMEOUT_SCALE", "1"))
EMULATED = os.environ.get("TOTMAPSFS_EMULATED", "") == "1"
# A daemon's start (python, pyfuse3, trio imports, the mount, READY=1): under a
# second on the host, 20-30 s emulated on a loaded 2-core box (Debian 12's 6.1 under QEMU).
DAEMON_START = 30.0 * TIMEOUT_SCALE


def patience(seconds: float) -> float:
    """How long to wait for what takes well under ``seconds`` on a plain host."""
    return seconds * TIMEOUT_SCALE
