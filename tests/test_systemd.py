"""The systemd deployment: systemd/totmapsfs.service, `make install`/`uninstall`, and a real boot.

The unit must verify cleanly, keep its hardening away from anything that
would give the service a private mount namespace (the FUSE mount would then be
invisible outside it), and install with DESTDIR into another root. Then the
real test: `make install DESTDIR=<stage>`, and systemd-nspawn boots this
machine's own /usr with a fresh tmpfs root (--volatile=yes, about a second)
with the staged /opt/totmapsfs and unit bound in, straight into
systemd/ci/citest.service, which runs systemd/ci/boot-test.sh: boot to ready,
reads as root and as another user, SIGHUP, SIGUSR1, kill -9 and automatic
restart, stop with reads in flight, a stale mount, /etc/default options, the
minimal capability set, enable. Each of that script's checks is one test here.

Skipped only where nspawn cannot boot anything: not root, no /dev/fuse, no
systemd-nspawn or systemd (`make deps` installs systemd-container).
"""

from __future__ import annotations

import os
import re
import shutil
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
SYSTEMD = REPO / "systemd"
UNIT = SYSTEMD / "totmapsfs.service"
DEFAULTS = SYSTEMD / "totmapsfs.default"
CI = SYSTEMD / "ci"
PREFIX = "/opt/totmapsfs"

# Every setting that makes systemd unshare the service's mount namespace
# (systemd.exec(5); exec_needs_mount_namespace() in src/core/execute.c), plus
# PrivateUsers=/DynamicUser= (a user namespace: CAP_SYS_ADMIN there mounts
# nothing the host sees, CAP_SYS_PTRACE there reads no host process).
MOUNT_NAMESPACE_SETTINGS = {
    "ProtectSystem", "ProtectHome", "PrivateTmp", "PrivateDevices", "PrivateMounts",
    "PrivateNetwork", "PrivateIPC", "PrivateUsers", "DynamicUser", "ProtectKernelTunables",
    "ProtectKernelModules", "ProtectKernelLogs", "ProtectControlGroups", "ProtectHostname",
    "ProtectProc", "ProcSubset", "ReadWritePaths", "ReadOnlyPaths", "InaccessiblePaths",
    "ExecPaths", "NoExecPaths", "BindPaths", "BindReadOnlyPaths", "TemporaryFileSystem",
    "RootDirectory", "RootImage", "MountImages", "ExtensionImages", "ExtensionDirectories",
    "MountFlags", "MountAPIVFS", "LogNamespace", "NetworkNamespacePath", "IPCNamespacePath",
    "JoinsNamespaceOf", "RuntimeDirectory", "StateDirectory", "CacheDirectory", "LogsDirectory",
    "ConfigurationDirectory",
}

# The checks boot-test.sh reports, in its order: each must print "PASS <name>".
BOOT_CHECKS = [
    "boot-active-and-answering",
    "same-mount-namespace",
    "hardening-applied",
    "dropped-after-mount",
    "oom-score-adjust",
    "read-self",
    "read-pid1-as-root",
    "read-other-user-as-root",
    "nobody-reads-own",
    "nobody-denied-pid1",
    "journal-serving",
    "sighup-ignored",
    "sigusr1-stack-dump",
    "restart-after-kill9",
    "restart-left-one-mount",
    "stop-exit-0",
    "stop-unmounted",
    "stop-logged",
    "stale-mount-cleared",
    "env-file-options",
    "env-file-stop-unmounted",
    "cap-needs-SYS_ADMIN",
    "cap-needs-SYS_PTRACE",
    "cap-shipped-set-suffices",
    "cap-no-mount-left",
    "enable",
]

# Upper bounds (ms) on the measured timings; generous for a loaded CI box.
TIME_LIMITS = {"boot-to-ready": 30_000, "start-to-ready": 20_000, "restart-after-kill9": 10_000, "stop": 15_000}

BOOT_TIMEOUT = 150  # seconds for the whole container run; it takes ~15 s
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


def run(cmd: list[str], timeout: float, **kw) -> subprocess.CompletedProcess:
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL, **kw)


def unit_settings(text: str) -> list[tuple[str, str, str]]:
    """(section, key, value) for every assignment, in order (keys may repeat)."""
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


def need_analyze() -> str:
    path = shutil.which("systemd-analyze")
    if path is None:
        pytest.skip("systemd-analyze missing (make deps installs systemd)")
    return path


def exposure(unit: Path) -> float:
    need_analyze()
    res = run(["systemd-analyze", "security", "--offline=true", "--no-pager", str(unit)], timeout=60)
    m = re.search(r"Overall exposure level for \S+: (\d+\.\d+)", res.stdout + res.stderr)
    assert m, f"no exposure level in:\n{res.stdout}\n{res.stderr}"
    return float(m[1])


def verify(unit: Path) -> str:
    """`systemd-analyze verify` output (it exits 0 on unknown keys: the output is the verdict)."""
    need_analyze()
    res = run(["systemd-analyze", "verify", "--no-pager", str(unit)], timeout=60)
    return (res.stdout + res.stderr).strip() + (f"\n(exit status {res.returncode})" if res.returncode else "")


# ---------------------------------------------------------------------------
# The unit file, statically


def test_unit_verifies(tmp_path):
    # verify insists that ExecStart's binary exists: point it at a stand-in.
    stub = tmp_path / "opt/totmapsfs/bin/totmapsfs"
    stub.parent.mkdir(parents=True)
    stub.write_text("#!/bin/sh\n")
    stub.chmod(0o755)
    copy = tmp_path / "totmapsfs.service"
    copy.write_text(UNIT.read_text().replace(f"{PREFIX}/", f"{tmp_path}/opt/totmapsfs/"))
    assert verify(copy) == ""


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
    assert one["Service", "ExecStart"].split()[0] == f"{PREFIX}/bin/totmapsfs"
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
    # name the two variables the unit reads.
    lines = [ln for ln in DEFAULTS.read_text().splitlines() if ln.strip() and not ln.lstrip().startswith("#")]
    assert lines == []
    text = DEFAULTS.read_text()
    assert "#TOTMAPSFS_MOUNTPOINT=" in text and "#TOTMAPSFS_OPTIONS=" in text


def test_security_exposure(tmp_path):
    bare = tmp_path / "totmapsfs.service"
    bare.write_text(f"[Service]\nExecStart={PREFIX}/bin/totmapsfs /run/totmaps\n")
    before, after = exposure(bare), exposure(UNIT)
    print(f"systemd-analyze security exposure: bare unit {before}, shipped unit {after}")
    assert before > 9.0
    assert after <= 4.0


# ---------------------------------------------------------------------------
# make install / uninstall with DESTDIR


@pytest.fixture(scope="module")
def stage(tmp_path_factory) -> Path:
    """`make install DESTDIR=<stage>`: the package's venv, the unit, the example defaults."""
    root = tmp_path_factory.mktemp("stage")
    res = run(["make", "-C", str(REPO), "--no-print-directory", "install", f"DESTDIR={root}"], timeout=900)
    assert res.returncode == 0, f"make install failed:\n{res.stdout}\n{res.stderr}"
    assert "skipped systemctl daemon-reload" in res.stdout
    return root


def test_install_layout(stage):
    venv = stage / PREFIX.lstrip("/")
    script = venv / "bin/totmapsfs"
    assert script.read_text().splitlines()[0] == f"#!{PREFIX}/bin/python"
    for path in [*(venv / "bin").iterdir(), venv / "pyvenv.cfg"]:
        if path.is_file() and not path.is_symlink():
            assert str(stage) not in path.read_text(errors="replace"), f"{path} still names the staging dir"
    assert (stage / "etc/systemd/system/totmapsfs.service").read_text() == UNIT.read_text()
    assert (stage / "etc/default/totmapsfs").read_text() == DEFAULTS.read_text()
    # The venv works where it was built too (a venv finds its prefix from its own path).
    res = run([str(venv / "bin/python"), "-c", "import totmapsfs._speedups, pyfuse3, trio"], timeout=60)
    assert res.returncode == 0, res.stderr


def test_installed_unit_verifies(stage, tmp_path):
    # The real installed ExecStart, at its staged path.
    copy = tmp_path / "totmapsfs.service"
    text = (stage / "etc/systemd/system/totmapsfs.service").read_text()
    copy.write_text(text.replace(f"{PREFIX}/", f"{stage}{PREFIX}/"))
    assert verify(copy) == ""


def test_uninstall(stage, tmp_path):
    root = tmp_path / "root"
    shutil.copytree(stage, root, symlinks=True)
    edited = root / "etc/default/totmapsfs"
    edited.write_text(edited.read_text() + "TOTMAPSFS_OPTIONS=--debug\n")
    uninstall = ["make", "-C", str(REPO), "--no-print-directory", "uninstall", f"DESTDIR={root}"]
    res = run(uninstall, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not (root / PREFIX.lstrip("/")).exists()
    assert not (root / "etc/systemd/system/totmapsfs.service").exists()
    assert edited.exists(), "an edited /etc/default/totmapsfs is the admin's: kept"
    # An unedited one goes; and uninstalling twice is fine.
    shutil.copy(DEFAULTS, edited)
    res = run(uninstall, timeout=120)
    assert res.returncode == 0, res.stdout + res.stderr
    assert not edited.exists()


# ---------------------------------------------------------------------------
# A real systemd boot


def boot_unavailable() -> str | None:
    if os.geteuid() != 0:
        return "not root: systemd-nspawn needs root"
    if not os.path.exists("/dev/fuse"):
        return "no /dev/fuse on this host"
    if shutil.which("systemd-nspawn") is None:
        return "systemd-nspawn missing (make deps installs systemd-container)"
    if not os.path.exists("/usr/lib/systemd/systemd"):
        return "systemd missing from /usr (make deps installs it)"
    return None


class Boot:
    def __init__(self, returncode: int | None, console: str, out: Path):
        self.returncode = returncode
        self.console = ANSI.sub("", console)
        self.results = (out / "result.log").read_text() if (out / "result.log").exists() else ""
        self.journal = (out / "journal.log").read_text() if (out / "journal.log").exists() else ""
        self.status = {}
        self.times = {}
        for line in self.results.splitlines():
            m = re.match(r"(PASS|FAIL) (\S+): ", line)
            if m:
                self.status[m[2]] = m[1]
            m = re.match(r"TIME (\S+) (-?\d+)$", line)
            if m:
                self.times[m[1]] = int(m[2])

    def report(self) -> str:
        return (
            f"systemd-nspawn exit status: {self.returncode}\n"
            f"--- boot-test.sh results ---\n{self.results or '(none)'}\n"
            f"--- journal of totmapsfs.service ---\n{self.journal or '(none)'}\n"
            f"--- container console (last 150 lines) ---\n" + "\n".join(self.console.splitlines()[-150:])
        )


def interpreter_binds(venv: Path) -> list[str]:
    """Bind the venv's interpreter into the container when it lives outside /usr (pyenv & co)."""
    python = Path(os.path.realpath(venv / "bin/python"))
    if str(python).startswith("/usr/"):
        return []
    res = run([str(venv / "bin/python"), "-c", "import sys; print(sys.base_prefix)"], timeout=60)
    prefix = res.stdout.strip()
    return [f"--bind-ro={prefix}"] if prefix else []


@pytest.fixture(scope="module")
def boot(stage, tmp_path_factory) -> Boot:
    reason = boot_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("boot-out")
    venv = stage / PREFIX.lstrip("/")
    unit = stage / "etc/systemd/system/totmapsfs.service"
    cmd = [
        "timeout", "--kill-after=10", str(BOOT_TIMEOUT),
        "systemd-nspawn", "--directory=/", "--volatile=yes", "--quiet", "--boot",
        # Without these two nspawn wants the host's system bus, which is not there.
        "--register=no", "--keep-unit",
        f"--machine=totmapsfs-ci-{os.getpid()}",
        "--private-network", "--bind=/dev/fuse",
        f"--bind-ro={venv}:{PREFIX}",
        f"--bind-ro={unit}:/etc/systemd/system/totmapsfs.service",
        f"--bind-ro={stage}:/ci/stage",
        f"--bind-ro={CI}:/ci/bin",
        f"--bind-ro={CI / 'citest.service'}:/etc/systemd/system/citest.service",
        f"--bind={out}:/ci-out",
        *interpreter_binds(venv),
        "systemd.unit=citest.service", "systemd.firstboot=no",
    ]
    try:
        res = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                             text=True, errors="replace", timeout=BOOT_TIMEOUT + 30)
        return Boot(res.returncode, res.stdout, out)
    except subprocess.TimeoutExpired as exc:
        console = exc.stdout.decode(errors="replace") if isinstance(exc.stdout, bytes) else (exc.stdout or "")
        return Boot(None, console, out)


def test_boot_exit_status(boot):
    print(boot.results)
    assert boot.returncode == 0, boot.report()
    assert set(boot.status) == set(BOOT_CHECKS), boot.report()


@pytest.mark.parametrize("check", BOOT_CHECKS)
def test_boot(boot, check):
    # The whole report (results, journal, console) is in test_boot_exit_status's failure.
    lines = [ln for ln in boot.results.splitlines() if re.match(rf"(PASS|FAIL) {re.escape(check)}: ", ln)]
    assert boot.status.get(check) == "PASS", "\n".join(lines) or f"{check}: not run (see test_boot_exit_status)"


def test_boot_timings(boot):
    print("boot timings (ms):", boot.times)
    for name, limit in TIME_LIMITS.items():
        assert name in boot.times, f"no {name} timing\n" + boot.report()
        assert 0 <= boot.times[name] <= limit, f"{name} took {boot.times[name]} ms (limit {limit})\n" + boot.report()
