"""Running the command as users do, and what a user error must look like: one line, no traceback."""

from __future__ import annotations

import os
import subprocess
from pathlib import Path

from totmapsfs.harness import PY, as_user

ROOT = Path(__file__).resolve().parents[2]


def run_cli(*args: str, user: int | None = None, env: dict[str, str] | None = None) -> subprocess.CompletedProcess:
    argv = [PY, "-m", "totmapsfs", *args]
    if user is not None:
        argv = as_user(user, argv)
    return subprocess.run(argv, capture_output=True, text=True, timeout=60, env={**os.environ, **(env or {})}, cwd=ROOT)


def assert_one_line_error(r: subprocess.CompletedProcess, needle: str, code: int = 1) -> None:
    assert r.returncode == code, r
    assert "Traceback" not in r.stderr, r.stderr
    last = r.stderr.strip().splitlines()[-1]
    assert last.startswith("totmapsfs: error:") and needle in last, r.stderr
