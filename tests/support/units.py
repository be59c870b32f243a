"""The systemd deployment's files and the commands that check them, for tests/systemd."""

from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "totmapsfs.service"
DEFAULTS = SYSTEMD / "totmapsfs.default"
# The node_exporter textfile writer: the unit, its timer, the script it runs.
TEXTFILE_UNIT = SYSTEMD / "totmapsfs-textfile.service"
TEXTFILE_TIMER = SYSTEMD / "totmapsfs-textfile.timer"
TEXTFILE_SCRIPT = SYSTEMD / "totmapsfs-textfile"
RULES = SYSTEMD / "prometheus/totmapsfs.rules.yml"
CI = SYSTEMD / "ci"
# `make install`'s virtualenv, and where it links the commands.
PREFIX = "/opt/totmapsfs"
BINDIR = "/usr/local/bin"
# The units name their commands without a directory (systemd's search path).
COMMANDS = ("totmapsfs", "totmapsfs-textfile")
# Debian's textfile directory (prometheus-node-exporter's default), the writer's default.
TEXTFILE_DIR = "/var/lib/prometheus/node-exporter"


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
    # --man=no: Documentation= names totmapsfs(8), which the package installs
    # (test_package checks the page).
    res = run(["systemd-analyze", "verify", "--man=no", "--no-pager", str(unit)], timeout=60)
    return (res.stdout + res.stderr).strip() + (f"\n(exit status {res.returncode})" if res.returncode else "")


def at(text: str, bindir: Path | str) -> str:
    """A unit's text with its commands' ExecStart= pointed into ``bindir`` (systemd-analyze verify wants them)."""
    return re.sub(r"^ExecStart=(totmapsfs(?:-textfile)?)(?=\s|$)", rf"ExecStart={bindir}/\1", text, flags=re.M)


def verify_at(units: dict[str, str], bindir: Path | str, into: Path) -> dict[str, str]:
    """Each unit's text (by file name) written into ``into`` with its commands in ``bindir`` (``at``), then verified.

    All are written before any is verified: verify wants the units a unit's
    Requires= names beside it. Returns what verify said of each, by name.
    """
    for name, text in units.items():
        (into / name).write_text(at(text, bindir))
    return {name: verify(into / name) for name in units}


def stub_commands(bindir: Path) -> Path:
    """Stand-ins for the two commands in ``bindir``."""
    bindir.mkdir(parents=True, exist_ok=True)
    for name in COMMANDS:
        stub = bindir / name
        stub.write_text("#!/bin/sh\n")
        stub.chmod(0o755)
    return bindir


def need_promtool() -> str:
    path = shutil.which("promtool")
    if path is None:
        pytest.skip("promtool missing (make deps installs prometheus)")
    return path


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment of a unit file, in order (keys may repeat)."""
    out, section = [], ""
    for line in text.splitlines():
        line = line.strip()
        if not line or line[0] in "#;":
            continue
        if line.startswith("["):
            section = line.strip("[]")
            continue
        key, _, value = line.partition("=")
        out.append((section, key.strip(), value.strip()))
    return out


def exposure(unit: Path) -> float:
    """`systemd-analyze security --offline` overall exposure of a unit file."""
    need_analyze()
    res = run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)], timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, f"no exposure level in:\n{res.stdout}\n{res.stderr}"
    return float(m[1])
