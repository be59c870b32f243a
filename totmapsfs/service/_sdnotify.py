"""sd_notify(3) over $NOTIFY_SOCKET with the standard library: READY=1, STOPPING=1, STATUS=."""

from __future__ import annotations

import logging
import os
import socket

log = logging.getLogger("totmapsfs")


def notify(state: str) -> bool:
    """Send ``state`` to the service manager; False (and no error) when not run by one.

    The socket may be a path or, with a leading "@", an abstract address
    (sd_notify(3)); systemd uses the latter for services by default on newer
    versions. Failures are logged, never raised: a lost notification must not
    take the mount down.
    """
    address = os.environ.get("NOTIFY_SOCKET")
    if not address:
        return False
    if address.startswith("@"):
        address = "\0" + address[1:]
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM | socket.SOCK_CLOEXEC) as sock:
            sock.connect(address)
            sock.sendall(state.encode())
    except OSError as exc:
        log.warning("sd_notify(%s) failed: %s", state.split("\n")[0], exc)
        return False
    return True
