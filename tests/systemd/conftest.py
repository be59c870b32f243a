"""The systemd tier's shared fixtures: a fresh clone of HEAD, `make install DESTDIR=` from it, the two .debs."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

from support.units import REPO, run


@pytest.fixture(scope="session")
def clone(tmp_path_factory) -> Path:
    """`git clone` of this repository's committed HEAD, as a new user gets it.

    None of the working tree's .venv, build/ or built .so files are in it:
    what is tested is what a clone installs (uncommitted changes are not).
    """
    root = tmp_path_factory.mktemp("clone") / "totmapsfs"
    res = run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(root)], timeout=300)
    assert res.returncode == 0, res.stderr
    return root


@pytest.fixture(scope="session")
def stage(clone, tmp_path_factory) -> Path:
    """`make install DESTDIR=<stage>` in the fresh clone: the venv, the units, the links, the example defaults."""
    root = tmp_path_factory.mktemp("stage")
    res = run(["make", "-C", str(clone), "--no-print-directory", "install", f"DESTDIR={root}"], timeout=900)
    assert res.returncode == 0, f"make install failed:\n{res.stdout}\n{res.stderr}"
    assert "skipped systemctl daemon-reload" in res.stdout
    return root


def clone_version(clone: Path) -> str:
    m = re.search(r'^__version__ = "(.+)"$', (clone / "totmapsfs/__init__.py").read_text(), re.M)
    assert m, "no __version__ in totmapsfs/__init__.py"
    return m[1]


@pytest.fixture(scope="session")
def debs(clone, tmp_path_factory) -> Path:
    """`make deb` in the fresh clone, twice: the version, and a lower one to upgrade from.

    The directory also holds ``versions`` (DEB_LOW=, DEB_NEW=), which the boot
    test's script sources. "~" sorts before anything in Debian versions, so
    VERSION~boottest1 is lower than VERSION.
    """
    out = tmp_path_factory.mktemp("debs")
    new = clone_version(clone)
    low = f"{new}~boottest1"
    for version in (low, new):
        res = run(
            ["make", "-C", str(clone), "--no-print-directory", "deb", f"DEB_VERSION={version}", f"DEB_DIR={out}"],
            timeout=900,
        )
        assert res.returncode == 0, f"make deb DEB_VERSION={version}:\n{res.stdout[-6000:]}\n{res.stderr[-4000:]}"
    (out / "versions").write_text(f"DEB_LOW={low}\nDEB_NEW={new}\n")
    return out
