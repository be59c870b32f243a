"""The systemd deployment's files and the commands that check them, for tests/systemd."""

from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "totmapsfs.service"
DEFAULTS = SYSTEMD / "totmapsfs.default"
RULES = SYSTEMD / "prometheus/totmapsfs.rules.yml"
CI = SYSTEMD / "ci"
PREFIX = "/opt/totmapsfs"


def run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def need_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze missing (make deps installs systemd)")
    return path


def verify(unit: Path) -> str:
    """`systemd-analyze verify` output (it exits 0 on unknown keys: the output is the verdict)."""
    need_analyze()
    res = run(["systemd-analyze", "verify", "--no-pager", str(unit)], timeout=60)
    return (res.stdout + res.stderr).strip() + (f"\n(exit status {res.returncode})" if res.returncode else "")


def need_promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool missing (make deps installs prometheus)")
    return path
