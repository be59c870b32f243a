"""A real daemon whose tree has bugs planted in it: for the "no request kills the daemon" tests.

    python tests/faulty_daemon.py MOUNTPOINT

Looking up the name "4194000" raises RuntimeError; opening the totmaps of the
pid in $FAULT_PID raises ZeroDivisionError. Everything else is the real thing.
"""

from __future__ import annotations

import os
import sys

from totmapsfs import _daemon
from totmapsfs._engine import Engine
from totmapsfs._mountpoint import prepare
from totmapsfs._ops import Operations
from totmapsfs._tree import Attr, Request, Tree, decode_inode


class FaultyTree(Tree):
    def lookup(self, parent: int, name: bytes) -> Attr:
        if name == b"4194000":
            raise RuntimeError("planted bug in lookup")
        return super().lookup(parent, name)

    def read_file(self, ino: int, request: Request) -> bytes:
        if decode_inode(ino)[0] == int(os.environ.get("FAULT_PID", "-1")):
            1 / 0
        return super().read_file(ino, request)


if __name__ == "__main__":
    _daemon.setup_logging(False)
    _daemon.serve(Operations(FaultyTree(Engine())), prepare(sys.argv[1]))
