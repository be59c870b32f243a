"""A real daemon whose tree has bugs planted in it: for the "no request kills the daemon" tests.

    python tests/programs/faulty_daemon.py MOUNTPOINT

Looking up the name "4194000" raises RuntimeError; opening the totmaps of the
pid in $FAULT_PID raises ZeroDivisionError. Everything else is the real thing.
"""

from __future__ import annotations

import os
import sys
from typing import Any

from totmapsfs.engine import Engine
from totmapsfs.fuse import Operations
from totmapsfs.proc import Cgroup2
from totmapsfs.service import _daemon, prepare
from totmapsfs.tree import Attr, Request, Tree, decode
from totmapsfs.views import Plan, Views


class FaultyTree(Tree):
    def lookup(self, parent: int, name: bytes, request: Request) -> Attr | Plan[Attr, Attr]:
        if name == b"4194000":
            raise RuntimeError("planted bug in lookup")
        return super().lookup(parent, name, request)

    def open_file(self, ino: int, request: Request) -> bytes | Plan[Any, bytes]:
        if decode(ino).number == int(os.environ.get("FAULT_PID", "-1")):
            _ = 1 / 0  # ZeroDivisionError, on purpose
        return super().open_file(ino, request)


if __name__ == "__main__":
    _daemon.setup_logging(False)
    engine = Engine()
    tree = FaultyTree(engine, Views(engine, Cgroup2(engine.reader)))
    _daemon.serve(Operations(tree, threads=16), prepare(sys.argv[1]))
