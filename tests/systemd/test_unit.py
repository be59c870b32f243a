"""The daemon's systemd unit statically (verify, hardening, exposure) and `make install` / `uninstall` with DESTDIR.

The unit must verify cleanly, keep its hardening away from anything that
would give the service a private mount namespace (the FUSE mount would then be
invisible outside it), and install with DESTDIR into another root, from a
fresh clone (conftest's ``stage``).
"""

from __future__ import annotations

import re
import shutil
from pathlib import Path

from support.units import (
    BINDIR,
    COMMANDS,
    DEFAULTS,
    PREFIX,
    REPO,
    RULES,
    TEXTFILE_SCRIPT,
    TEXTFILE_TIMER,
    TEXTFILE_UNIT,
    UNIT,
    exposure,
    run,
    stub_commands,
    unit_settings,
    verify_at,
)

# Every setting that makes systemd unshare the service's mount namespace
# (systemd.exec(5); exec_needs_mount_namespace() in src/core/execute.c), plus
# PrivateUsers=/DynamicUser= (a user namespace: CAP_SYS_ADMIN there mounts
# nothing the host sees, CAP_SYS_PTRACE there reads no host process).
MOUNT_NAMESPACE_SETTINGS = {
    "ProtectSystem",
    "ProtectHome",
    "PrivateTmp",
    "PrivateDevices",
    "PrivateMounts",
    "PrivateNetwork",
    "PrivateIPC",
    "PrivateUsers",
    "DynamicUser",
    "ProtectKernelTunables",
    "ProtectKernelModules",
    "ProtectKernelLogs",
    "ProtectControlGroups",
    "ProtectHostname",
    "ProtectProc",
    "ProcSubset",
    "ReadWritePaths",
    "ReadOnlyPaths",
    "InaccessiblePaths",
    "ExecPaths",
    "NoExecPaths",
    "BindPaths",
    "BindReadOnlyPaths",
    "TemporaryFileSystem",
    "RootDirectory",
    "RootImage",
    "MountImages",
    "ExtensionImages",
    "ExtensionDirectories",
    "MountFlags",
    "MountAPIVFS",
    "LogNamespace",
    "NetworkNamespacePath",
    "IPCNamespacePath",
    "JoinsNamespaceOf",
    "RuntimeDirectory",
    "StateDirectory",
    "CacheDirectory",
    "LogsDirectory",
    "ConfigurationDirectory",
}


# ---------------------------------------------------------------------------
# The unit file, statically


def test_unit_verifies(tmp_path):
    # verify insists that ExecStart's binary exists: point it at a stand-in.
    assert verify_at({UNIT.name: UNIT.read_text()}, stub_commands(tmp_path / "bin"), tmp_path) == {UNIT.name: ""}


def test_unit_has_no_mount_namespace_settings():
    used = {key for _, key, _ in unit_settings(UNIT.read_text())}
    assert not used & MOUNT_NAMESPACE_SETTINGS, "these make the mount invisible outside the service"


def test_unit_settings():
    settings = unit_settings(UNIT.read_text())
    one = {(s, k): v for s, k, v in settings}
    many = lambda sec, key: [v for s, k, v in settings if (s, k) == (sec, key)]  # noqa: E731
    assert one["Service", "Type"] == "notify"
    assert one["Service", "NotifyAccess"] == "main"
    assert one["Service", "Restart"] == "on-failure"
    assert "local-fs.target" in one["Unit", "After"].split()
    assert "umount.target" in one["Unit", "Conflicts"].split()
    # No directory: the package's /usr/bin or make install's /usr/local/bin, from systemd's search path.
    assert one["Service", "ExecStart"].split()[0] == "totmapsfs"
    assert one["Unit", "Documentation"].split()[0] == "man:totmapsfs(8)"
    assert one["Service", "ExecStart"].split()[-1] == "${TOTMAPSFS_MOUNTPOINT}"
    assert "TOTMAPSFS_MOUNTPOINT=/run/totmaps" in many("Service", "Environment")
    assert one["Service", "EnvironmentFile"] == "-/etc/default/totmapsfs"
    for key in ("ExecStartPre", "ExecStopPost"):
        assert re.fullmatch(r"-fusermount3 -uzq? \$\{TOTMAPSFS_MOUNTPOINT\}", one["Service", key]), key
    assert set(one["Service", "CapabilityBoundingSet"].split()) == {"CAP_SYS_ADMIN", "CAP_SYS_PTRACE"}
    assert one["Service", "NoNewPrivileges"] == "yes"
    assert one["Service", "DevicePolicy"] == "closed"
    assert one["Service", "DeviceAllow"] == "/dev/fuse rw"
    assert one["Service", "RestrictAddressFamilies"] == "AF_UNIX"
    assert int(one["Service", "OOMScoreAdjust"]) < 0
    assert one["Install", "WantedBy"] == "multi-user.target"


def test_example_defaults_file_sets_nothing():
    # Shipped all-commented: installing it changes no behaviour; its examples
    # name the variables the two units read.
    lines = [ln for ln in DEFAULTS.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines == []
    text = DEFAULTS.read_text()
    assert "#TOTMAPSFS_MOUNTPOINT=" in text and "#TOTMAPSFS_OPTIONS=" in text
    assert "#TOTMAPSFS_TEXTFILE_DIR=" in text


def test_security_exposure(tmp_path):
    bare = tmp_path / "totmapsfs.service"
    bare.write_text("[Service]\nExecStart=/usr/bin/totmapsfs /run/totmaps\n")
    before, after = exposure(bare), exposure(UNIT)
    print(f"systemd-analyze security exposure: bare unit {before}, shipped unit {after}")
    assert before > 9.0
    assert after <= 4.0


# ---------------------------------------------------------------------------
# make install / uninstall with DESTDIR


def test_install_layout(stage):
    venv = stage / PREFIX.lstrip("/")
    script = venv / "bin/totmapsfs"
    assert script.read_text().splitlines()[0] == f"#!{PREFIX}/bin/python"
    for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            assert str(stage) not in path.read_text(errors="replace"), f"{path} still names the staging dir"
    # The commands on systemd's search path, where the units look for them.
    for name in COMMANDS:
        assert (stage / BINDIR.lstrip("/") / name).readlink() == Path(PREFIX) / "bin" / name, name
    assert (stage / "etc/systemd/system/totmapsfs.service").read_text() == UNIT.read_text()
    assert (stage / "etc/default/totmapsfs").read_text() == DEFAULTS.read_text()
    # The Prometheus rules, beside the package (for the users' Prometheus server).
    assert (venv / "share/prometheus/totmapsfs.rules.yml").read_bytes() == RULES.read_bytes()
    # The textfile writer, installed but not enabled (no timers.target.wants link).
    for shipped in (TEXTFILE_UNIT, TEXTFILE_TIMER):
        installed = stage / "etc/systemd/system" / shipped.name
        assert installed.read_text() == shipped.read_text()
        assert installed.stat().st_mode & 0o777 == 0o644
    assert not (stage / "etc/systemd/system/timers.target.wants").exists()
    script = venv / "bin/totmapsfs-textfile"
    assert script.read_bytes() == TEXTFILE_SCRIPT.read_bytes()
    assert script.stat().st_mode & 0o777 == 0o755
    # The venv works where it was built too (a venv finds its prefix from its own path).
    res = run(
        [str(venv / "bin/python"), "-c", "import totmapsfs.parser._speedups, totmapsfs.service, pyfuse3, trio"],
        timeout=60,
    )
    assert res.returncode == 0, res.stderr
    # Run time only: pyfuse3, trio and theirs; nothing of the tests', the benchmark's or the check's.
    res = run([str(venv / "bin/python"), "-m", "pip", "list", "--format=freeze"], timeout=120)
    names = {line.split("==")[0].lower() for line in res.stdout.split()}
    assert {"pyfuse3", "trio", "totmapsfs"} <= names, names
    assert not names & {"psutil", "prometheus-client", "pytest", "hypothesis", "mypy", "ruff"}, names
    # Every installed module is one of this tree's (nothing left over from an earlier build)...
    purelib = run([str(venv / "bin/python"), "-c", "import sysconfig; print(sysconfig.get_path('purelib'))"], 60)
    installed = Path(purelib.stdout.strip())
    ours = {p.relative_to(installed) for p in (installed / "totmapsfs").rglob("*.py")}
    assert ours and all((REPO / p).is_file() for p in ours), sorted(str(p) for p in ours if not (REPO / p).is_file())
    # ...and the daemon's venv holds the daemon only: no benchmark, no test harness.
    for extra in ("totmapsfs.bench", "totmapsfs.harness"):
        res = run([str(venv / "bin/python"), "-c", f"import {extra}"], timeout=60, cwd="/")  # not this tree's
        assert res.returncode != 0 and "ModuleNotFoundError" in res.stderr, extra


def test_installed_unit_verifies(stage, tmp_path):
    # The real installed commands, at their staged paths.
    names = ("totmapsfs.service", "totmapsfs-textfile.service", "totmapsfs-textfile.timer")
    texts = {name: (stage / "etc/systemd/system" / name).read_text() for name in names}
    assert verify_at(texts, f"{stage}{PREFIX}/bin", tmp_path) == dict.fromkeys(names, "")


def test_uninstall(stage, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(stage, root, symlinks=True)
    edited = root / "etc/default/totmapsfs"
    edited.write_text(edited.read_text() + "TOTMAPSFS_OPTIONS=--debug\n")
    uninstall = ["make", "-C", str(REPO), "--no-print-directory", "uninstall", f"DESTDIR={root}"]
    res = run(uninstall, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (root / PREFIX.lstrip("/")).exists()
    for name in ("totmapsfs.service", "totmapsfs-textfile.service", "totmapsfs-textfile.timer"):
        assert not (root / "etc/systemd/system" / name).exists(), name
    for name in COMMANDS:
        assert not (root / BINDIR.lstrip("/") / name).is_symlink(), name
    assert edited.exists(), "an edited /etc/default/totmapsfs is the admin's: kept"
    # An unedited one goes; and uninstalling twice is fine.
    shutil.copy(DEFAULTS, edited)
    res = run(uninstall, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not edited.exists()
