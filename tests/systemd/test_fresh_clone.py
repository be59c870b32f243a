"""`make check` from a fresh clone as an unprivileged user: no root, no apt-get, its tools from pip.

(`make install` from a fresh clone is conftest's ``stage``, checked by
test_unit.py; `make deb` from one is conftest's ``debs``.)
"""

from __future__ import annotations

import os
import pwd
import shutil
import tempfile
from pathlib import Path

import pytest

from support.units import REPO, run

NOBODY = "nobody"


@pytest.mark.skipif(os.geteuid() != 0, reason="root is needed to become another user")
def test_check_unprivileged_from_a_fresh_clone():
    if shutil.which("runuser") is None:
        pytest.skip("runuser missing (util-linux)")
    # Not under pytest's tmp_path, whose parent is root's 0700 directory.
    home = Path(tempfile.mkdtemp(prefix="totmapsfs-fresh-clone-"))
    try:
        check_as_nobody(home)
    finally:
        shutil.rmtree(home, ignore_errors=True)


def check_as_nobody(home: Path) -> None:
    user = pwd.getpwnam(NOBODY)
    clone = home / "totmapsfs"
    res = run(["git", "clone", "--quiet", "--no-hardlinks", str(REPO), str(clone)], timeout=300)
    assert res.returncode == 0, res.stderr
    for path in [home, *home.rglob("*")]:
        os.lchown(path, user.pw_uid, user.pw_gid)
    # A fresh login's PATH (Debian's python3, not this suite's venv) and a HOME nobody may write (pip's cache).
    env = ["env", "-i", f"HOME={home}", "PATH=/usr/local/bin:/usr/bin:/bin", "LC_ALL=C.UTF-8"]
    res = run(["runuser", "-u", NOBODY, "--", *env, "make", "-C", str(clone), "check"], timeout=1500)
    print(res.stdout[-3000:])
    assert res.returncode == 0, f"{res.stdout[-6000:]}\n{res.stderr[-6000:]}"
    assert "installing Debian packages" not in res.stdout
    for tool in ("ruff", "mypy", "lint-imports"):
        assert (clone / ".venv/bin" / tool).exists(), tool
    assert "Contracts: 2 kept, 0 broken." in res.stdout
