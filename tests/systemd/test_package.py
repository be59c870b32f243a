"""The Debian package built by `make deb` from a fresh clone, statically: its files, its metadata, lintian.

Installing, upgrading, removing and purging it under a real systemd is the
boot test's job (test_boot.py).
"""

from __future__ import annotations

import os
import re
import sys

import pytest

from support.units import DEFAULTS, RULES, TEXTFILE_SCRIPT, TEXTFILE_TIMER, TEXTFILE_UNIT, UNIT, run

pytestmark = pytest.mark.skipif(os.geteuid() != 0, reason="make deb installs its build tools with apt-get")


def package(debs, which="DEB_NEW"):
    versions = dict(line.split("=", 1) for line in (debs / "versions").read_text().split())
    (deb,) = debs.glob(f"totmapsfs_{versions[which]}_*.deb")
    return deb, versions[which]


def test_deb_name_and_metadata(debs):
    deb, version = package(debs)
    arch = run(["dpkg", "--print-architecture"], timeout=30).stdout.strip()
    assert deb.name == f"totmapsfs_{version}_{arch}.deb"
    fields = run(["dpkg-deb", "-f", str(deb)], timeout=60).stdout
    print(fields)
    assert re.search(rf"^Version: {re.escape(version)}$", fields, re.M)
    depends = {d.strip().split()[0] for d in re.search(r"^Depends: (.*)$", fields, re.M)[1].split(",")}
    # What the daemon needs at run time, from Debian; nothing of the tests or the benchmark.
    assert {"fuse3", "python3-pyfuse3", "python3-trio", "python3-outcome", "libc6"} <= depends, depends
    assert not {d for d in depends if "psutil" in d or "prometheus" in d}, depends


def test_deb_files(debs, tmp_path):
    deb, _ = package(debs)
    listing = run(["dpkg-deb", "-c", str(deb)], timeout=60).stdout
    files = {line.split()[5].removeprefix(".") for line in listing.splitlines()}
    for path in (
        "/usr/bin/totmapsfs",
        "/usr/bin/totmapsfs-textfile",
        "/lib/systemd/system/totmapsfs.service",
        "/lib/systemd/system/totmapsfs-textfile.service",
        "/lib/systemd/system/totmapsfs-textfile.timer",
        "/etc/default/totmapsfs",
        "/usr/share/totmapsfs/prometheus/totmapsfs.rules.yml",
        "/usr/share/man/man8/totmapsfs.8.gz",
        "/usr/share/doc/totmapsfs/copyright",
    ):
        assert path in files, path
    assert any(re.fullmatch(r"/usr/lib/python3/dist-packages/totmapsfs/parser/_speedups\..*\.so", f) for f in files)
    # The daemon only: no benchmark, no test harness, no C sources.
    assert not [f for f in files if "/bench/" in f or "/harness/" in f or f.endswith((".c", ".h"))]
    # The shipped files are this tree's, byte for byte.
    res = run(["dpkg-deb", "-x", str(deb), str(tmp_path)], timeout=60)
    assert res.returncode == 0, res.stderr
    for installed, shipped in (
        ("lib/systemd/system/totmapsfs.service", UNIT),
        ("lib/systemd/system/totmapsfs-textfile.service", TEXTFILE_UNIT),
        ("lib/systemd/system/totmapsfs-textfile.timer", TEXTFILE_TIMER),
        ("usr/bin/totmapsfs-textfile", TEXTFILE_SCRIPT),
        ("etc/default/totmapsfs", DEFAULTS),
        ("usr/share/totmapsfs/prometheus/totmapsfs.rules.yml", RULES),
    ):
        assert (tmp_path / installed).read_bytes() == shipped.read_bytes(), installed
    # /etc/default/totmapsfs is a conffile: kept when edited, removed on purge.
    ctrl = tmp_path / "DEBIAN"
    run(["dpkg-deb", "-e", str(deb), str(ctrl)], timeout=60)
    assert (ctrl / "conffiles").read_text().split() == ["/etc/default/totmapsfs"]
    # The daemon's unit enabled and started; the textfile timer enabled only
    # where it was before (an upgrade), never started; both stopped on remove, the timer first.
    postinst = (ctrl / "postinst").read_text()
    assert "deb-systemd-helper enable 'totmapsfs.service'" in postinst
    assert "deb-systemd-invoke $_dh_action 'totmapsfs.service'" in postinst
    assert not re.search(r"deb-systemd-invoke .*textfile", postinst)
    prerm = (ctrl / "prerm").read_text()
    assert prerm.index("stop totmapsfs-textfile.timer") < prerm.index("stop 'totmapsfs.service'")


def test_man_page(debs, tmp_path):
    deb, version = package(debs)
    run(["dpkg-deb", "-x", str(deb), str(tmp_path)], timeout=60)
    res = run(["man", "-l", str(tmp_path / "usr/share/man/man8/totmapsfs.8.gz")], timeout=60, env={"MANWIDTH": "200"})
    assert res.returncode == 0, res.stderr
    page = res.stdout
    print(page)
    for section in ("NAME", "DESCRIPTION", "SIGNALS", "EXIT STATUS", "FILES", "SEE ALSO"):
        assert re.search(rf"^{section}$", page, re.M), section
    # Generated from the parser: every option of --help is in it, and --version's text.
    help_text = run([sys.executable, "-m", "totmapsfs", "--help"], timeout=60).stdout
    options = sorted(set(re.findall(r"(--[a-z][a-z-]+)", help_text)))
    assert len(options) > 10, help_text
    for option in options:
        assert option in page, option
    assert f"totmapsfs {version}" in page
    assert "Traceback" not in page
    # The units' Documentation= name it.
    assert "man:totmapsfs(8)" in UNIT.read_text()
    assert (tmp_path / "usr/share/man/man8/totmapsfs-textfile.8.gz").is_symlink()


def test_lintian(debs):
    deb, _ = package(debs)
    if run(["sh", "-c", "command -v lintian"], timeout=30).returncode != 0:
        pytest.skip("lintian missing (make deb installs it)")
    res = run(["lintian", "--fail-on", "error", "--display-level", ">=warning", str(deb)], timeout=600)
    print(res.stdout)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not [line for line in res.stdout.splitlines() if line.startswith("E: ")], res.stdout
