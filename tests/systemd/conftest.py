"""The systemd tier's shared fixture: one `make install DESTDIR=<stage>` for every test that needs the staged files."""

from __future__ import annotations

from pathlib import Path

import pytest

from support.units import REPO, run


@pytest.fixture(scope="session")
def stage(tmp_path_factory) -> Path:
    """`make install DESTDIR=<stage>`: the package's venv, the unit, the example defaults."""
    root = tmp_path_factory.mktemp("stage")
    res = run(["make", "-C", str(REPO), "--no-print-directory", "install", f"DESTDIR={root}"], timeout=900)
    assert res.returncode == 0, f"make install failed:\n{res.stdout}\n{res.stderr}"
    assert "skipped systemctl daemon-reload" in res.stdout
    return root
