"""A real boot: systemd-nspawn boots this machine's /usr, which installs, upgrades, removes and purges the .deb.

`make deb` twice in a fresh clone (conftest's ``debs``: the version and a
lower one), then systemd-nspawn boots this machine's own /usr under a
throwaway overlay (so dpkg may write it) with a fresh tmpfs root
(--volatile=yes, about a second) and a copy of this machine's dpkg database
(so apt-get sees the .deb's Depends installed: python3-pyfuse3, python3-trio,
fuse3, which `make deps` installs here; the container has no network),
straight into systemd/ci/citest.service, which runs systemd/ci/boot-test.sh:
`apt-get install ./totmapsfs_<low>.deb` (enabled, started, answering), an
edit of /etc/default/totmapsfs, the upgrade (edit kept, daemon restarted);
reads as root and as another user, SIGHUP, SIGUSR1, kill -9 and automatic
restart, stop with reads in flight, a stale mount, /etc/default options, the
minimal capability set, enabled; the fleet path (systemd/ci/fleet-test.sh):
Debian's node_exporter and Prometheus as units, the textfile timer, PromQL
against the mount, the end-to-end delay, each alert going pending; then
`apt-get remove` (stopped, no mount, settings kept) and `purge` (settings
gone). Each of that script's checks is one test here.

Skipped only where nspawn cannot boot anything: not root, no /dev/fuse, no
systemd-nspawn or systemd, no dpkg (`make deps` installs systemd-container,
and prometheus, prometheus-node-exporter and dbus for the fleet path).
"""

from __future__ import annotations

import fcntl
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from support.units import CI, DEFAULTS

# The checks boot-test.sh reports, in its order: each must print "PASS <name>".
BOOT_CHECKS = [
    # The package (section 0)
    "deb-install",
    "deb-files",
    "deb-textfile-not-enabled",
    "deb-upgrade",
    "deb-upgrade-kept-conffile",
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
    # The fleet path (fleet-test.sh)
    "fleet-exporters-up",
    "fleet-rules-loaded",
    "textfile-timer-starts-daemon",
    "textfile-written",
    "textfile-counts-pid1",
    "fleet-pss-matches",
    "fleet-recording-rule",
    "fleet-scrape-error-0",
    "fleet-left-out-zero",
    "fleet-systemd-collector",
    "fleet-change-to-promql",
    "textfile-refreshed",
    "fleet-series-counts",
    "fleet-daemon-quiet",
    "alert-stale-pending",
    "alert-unreadable-pending",
    "alert-daemon-failed-pending",
    "textfile-other-dir-refused",
    "textfile-other-dir-drop-in",
    "textfile-hardening-applied",
    # apt-get remove and purge (section 19)
    "deb-remove",
    "deb-remove-no-mount",
    "deb-remove-kept-conffile",
    "deb-purge",
]

# Upper bounds (ms) on the measured timings; generous for a loaded CI box.
TIME_LIMITS = {
    # apt-get install of the lower version: unpack, byte-compile, start the service.
    "apt-install": 60_000,
    "start-to-ready": 20_000,
    "restart-after-kill9": 10_000,
    "stop": 15_000,
    # The textfile timer's 15 s, the write, a 1 s scrape.
    "fleet-change-to-promql": 20_000,
    "textfile-interval": 20_000,
    # The 20 s threshold of the test's copy of the rules, a scrape, an evaluation.
    "alert-stale-pending": 30_000,
}

BOOT_TIMEOUT = 330  # seconds for the whole container run; it takes ~80 s, 45 of them the fleet path
DPKG = Path("/var/lib/dpkg")
ANSI = re.compile(r"\x1b\[[0-9;]*[A-Za-z]")


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
    if not (DPKG / "status").exists():
        return "no dpkg database: the container installs the .deb against this host's Debian packages"
    return None


class Boot:
    def __init__(self, returncode: int | None, console: str, out: Path):
        self.returncode = returncode
        self.console = ANSI.sub("", console)
        self.results = (out / "result.log").read_text() if (out / "result.log").exists() else ""
        self.journal = (out / "journal.log").read_text() if (out / "journal.log").exists() else ""
        fleet = out / "fleet-journal.log"
        self.fleet_journal = fleet.read_text() if fleet.exists() else ""
        apt = out / "apt.log"
        self.apt = apt.read_text(errors="replace") if apt.exists() else ""
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
        fleet = "\n".join(self.fleet_journal.splitlines()[-80:]) or "(none)"
        console = "\n".join(self.console.splitlines()[-150:])
        return (
            f"systemd-nspawn exit status: {self.returncode}\n"
            f"--- boot-test.sh results ---\n{self.results or '(none)'}\n"
            f"--- apt-get's output (last 60 lines) ---\n{chr(10).join(self.apt.splitlines()[-60:]) or '(none)'}\n"
            f"--- journal of totmapsfs.service ---\n{self.journal or '(none)'}\n"
            f"--- journals of the fleet path's units (last 80 lines) ---\n{fleet}\n"
            f"--- container console (last 150 lines) ---\n{console}"
        )


def dpkg_copy(dest: Path, patience: float = 300) -> None:
    """A copy of this host's dpkg database, taken while no apt or dpkg runs (their lock, bounded wait).

    The container installs into the copy. Its statoverride is emptied: dpkg
    refuses to start when a user named there (the host's ssl-cert, messagebus
    ...) is unknown, and the container's /etc is a fresh tmpfs with no such users.
    """
    deadline = time.monotonic() + patience
    with open(DPKG / "lock-frontend", "a") as lock:
        while True:
            try:
                fcntl.lockf(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except OSError:
                if time.monotonic() > deadline:
                    pytest.fail(f"apt or dpkg held {DPKG}/lock-frontend for {patience} s")
                time.sleep(1)
        try:
            shutil.copytree(DPKG, dest, symlinks=True)
        finally:
            fcntl.lockf(lock, fcntl.LOCK_UN)
    (dest / "statoverride").write_text("")
    for lockfile in ("lock", "lock-frontend", "triggers/Lock"):
        (dest / lockfile).unlink(missing_ok=True)


@pytest.fixture(scope="module")
def boot(debs, tmp_path_factory) -> Boot:
    reason = boot_unavailable()
    if reason:
        pytest.skip(reason)
    out = tmp_path_factory.mktemp("boot-out")
    dpkg = tmp_path_factory.mktemp("boot-dpkg") / "dpkg"
    dpkg_copy(dpkg)
    cmd = [
        "timeout",
        "--kill-after=10",
        str(BOOT_TIMEOUT),
        "systemd-nspawn",
        "--directory=/",
        "--volatile=yes",
        # /usr writable for dpkg, through an overlay whose upper layer (in
        # /var/tmp) nspawn removes when the container ends.
        "--overlay=/usr::/usr",
        f"--bind={dpkg}:/var/lib/dpkg",
        "--quiet",
        "--boot",
        # Without these two nspawn wants the host's system bus, which is not there.
        "--register=no",
        "--keep-unit",
        f"--machine=totmapsfs-pkg-ci-{os.getpid()}",
        "--private-network",
        "--bind=/dev/fuse",
        f"--bind-ro={debs}:/ci/debs",
        f"--bind-ro={DEFAULTS}:/ci/totmapsfs.default",
        f"--bind-ro={CI}:/ci/bin",
        f"--bind-ro={CI / 'citest.service'}:/etc/systemd/system/citest.service",
        f"--bind={out}:/ci-out",
        "systemd.unit=citest.service",
        "systemd.firstboot=no",
    ]
    try:
        res = subprocess.run(
            cmd,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            errors="replace",
            timeout=BOOT_TIMEOUT + 30,
        )
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
