"""The node_exporter textfile writer: its unit and timer statically, and its script run on this host.

The unit may have a mount namespace (it mounts nothing) and is sandboxed as
far as a reader of one file and writer of one directory can be; it keeps
CAP_SYS_PTRACE, without which totmapsfs would leave other users' and
non-dumpable processes out. The script replaces totmapsfs.prom only with a
complete copy, so a reader sees the old file or the new one, never a part.
The boot test (test_boot.py) runs all of it under a real systemd.
"""

from __future__ import annotations

import shutil
import threading
from pathlib import Path

import pytest

from support.units import (
    DEFAULTS,
    TEXTFILE_DIR,
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

NAME = "totmapsfs.prom"


def settings_of(unit: Path) -> dict[tuple[str, str], list[str]]:
    out: dict[tuple[str, str], list[str]] = {}
    for section, key, value in unit_settings(unit.read_text()):
        out.setdefault((section, key), []).append(value)
    return out


# ---------------------------------------------------------------------------
# The unit and the timer, statically


def test_textfile_units_verify(tmp_path):
    # verify wants ExecStart's program and the units named by Requires= (the daemon's).
    texts = {unit.name: unit.read_text() for unit in (UNIT, TEXTFILE_UNIT, TEXTFILE_TIMER)}
    assert verify_at(texts, stub_commands(tmp_path / "bin"), tmp_path) == dict.fromkeys(texts, "")


def test_textfile_unit_settings():
    s = settings_of(TEXTFILE_UNIT)
    one = {k: v[-1] for k, v in s.items()}
    assert one["Service", "Type"] == "oneshot"
    assert "totmapsfs.service" in one["Unit", "Requires"].split()
    assert "totmapsfs.service" in one["Unit", "After"].split()
    assert one["Service", "ExecStart"] == "totmapsfs-textfile"  # systemd's search path, as the daemon's unit
    # Same file and same mountpoint default as the daemon's unit.
    assert (
        one["Service", "EnvironmentFile"]
        == "-/etc/default/totmapsfs"
        == settings_of(UNIT)["Service", "EnvironmentFile"][0]
    )
    assert "TOTMAPSFS_MOUNTPOINT=/run/totmaps" in settings_of(UNIT)["Service", "Environment"]
    assert "TOTMAPSFS_MOUNTPOINT=/run/totmaps" in s["Service", "Environment"]
    assert f"TOTMAPSFS_TEXTFILE_DIR={TEXTFILE_DIR}" in s["Service", "Environment"]
    # Reads the mount as root with CAP_SYS_PTRACE alone; writes the one directory.
    assert one["Service", "CapabilityBoundingSet"] == "CAP_SYS_PTRACE"
    assert one["Service", "AmbientCapabilities"] == ""
    assert "User" not in {k for _, k in s}, "the textfile directory is root's"
    assert one["Service", "ProtectSystem"] == "strict"
    assert s["Service", "ReadWritePaths"] == [f"-{TEXTFILE_DIR}"]
    for key in ("NoNewPrivileges", "PrivateNetwork", "PrivateTmp", "PrivateDevices", "ProtectHome"):
        assert one["Service", key] == "yes", key
    # A user namespace would make its CAP_SYS_PTRACE count for nothing with
    # totmapsfs (which honours the capability in its own namespace only).
    assert not {"PrivateUsers", "DynamicUser"} & {k for _, k in s}
    # Started by the timer only: enabling the service itself is meaningless.
    assert not any(section == "Install" for section, _ in s)


def test_timer_settings():
    one = {k: v[-1] for k, v in settings_of(TEXTFILE_TIMER).items()}
    assert one["Timer", "OnUnitActiveSec"] == "15s"
    assert one["Timer", "OnBootSec"] == "0"
    # Without it systemd may postpone a run by up to the default minute.
    assert one["Timer", "AccuracySec"] == "1s"
    assert ("Timer", "Unit") not in one  # totmapsfs-textfile.service, by name
    assert one["Install", "WantedBy"] == "timers.target"


def test_textfile_directory_defaults_agree():
    # One directory everywhere: the unit, its sandbox, the script, the example
    # /etc/default file, and Debian's node_exporter itself.
    script = TEXTFILE_SCRIPT.read_text()
    assert f"dir=${{TOTMAPSFS_TEXTFILE_DIR:-{TEXTFILE_DIR}}}" in script
    assert f"#TOTMAPSFS_TEXTFILE_DIR={TEXTFILE_DIR}\n" in DEFAULTS.read_text()
    exporter = shutil.which("prometheus-node-exporter")
    if exporter is None:
        pytest.skip("prometheus-node-exporter missing (make deps installs it)")
    res = run([exporter, "--help"], timeout=60)
    assert f'--collector.textfile.directory="{TEXTFILE_DIR}"' in res.stdout + res.stderr


def test_textfile_exposure():
    figure = exposure(TEXTFILE_UNIT)
    print(f"systemd-analyze security exposure of totmapsfs-textfile.service: {figure}")
    # 1.0 measured (systemd 252): root (0.4), CAP_SYS_PTRACE (0.3) and no
    # PrivateUsers= (0.2) are what reading every process costs.
    assert figure <= 1.2


# ---------------------------------------------------------------------------
# The script, run here as root (and once as nobody)


def write_once(mount: Path, target: Path, *prefix: str) -> tuple[int, str]:
    """One run of the script as the unit runs it: its two variables only, umask 0077 (UMask=)."""
    env = {"PATH": "/usr/bin:/bin", "TOTMAPSFS_MOUNTPOINT": str(mount), "TOTMAPSFS_TEXTFILE_DIR": str(target)}
    cmd = [*prefix, "/bin/sh", "-c", 'umask 0077 && exec /bin/sh "$0"', str(TEXTFILE_SCRIPT)]
    res = run(cmd, timeout=60, env=env)
    return res.returncode, res.stderr


def dirs(tmp_path: Path) -> tuple[Path, Path]:
    mount, target = tmp_path / "mount", tmp_path / "textfile"
    mount.mkdir()
    target.mkdir()
    return mount, target


def leftovers(target: Path) -> list[str]:
    return sorted(p.name for p in target.iterdir() if p.name != NAME)


def test_script_writes_a_readable_copy(tmp_path):
    mount, target = dirs(tmp_path)
    (mount / "metrics").write_text("# TYPE totmapsfs_processes gauge\ntotmapsfs_processes 3.0\n")
    assert write_once(mount, target) == (0, "")
    out = target / NAME
    assert out.read_text() == (mount / "metrics").read_text()
    assert out.stat().st_mode & 0o777 == 0o644  # node_exporter reads it as user prometheus
    assert leftovers(target) == []


@pytest.mark.parametrize("broken", ["missing", "empty"])
def test_script_failure_keeps_the_previous_copy(tmp_path, broken):
    mount, target = dirs(tmp_path)
    (target / NAME).write_text("previous\n")
    if broken == "empty":
        (mount / "metrics").write_text("")
    code, err = write_once(mount, target)
    assert code == 1 and "left as it was" in err, err
    assert (target / NAME).read_text() == "previous\n"
    assert leftovers(target) == []


def test_script_names_the_fix_for_a_directory_it_may_not_write(workdir):
    # workdir: traversable by nobody, unlike tmp_path.
    mount, target = dirs(workdir)
    (mount / "metrics").write_text("totmapsfs_processes 1.0\n")
    code, err = write_once(mount, target, "setpriv", "--reuid=65534", "--regid=65534", "--clear-groups")
    assert code == 1 and f"ReadWritePaths={target}" in err, err
    code, err = write_once(mount, workdir / "nowhere")
    assert code == 1 and "no such directory" in err, err


def test_script_readers_never_see_a_partial_file(tmp_path):
    # Two different large answers written in turn while a reader rereads the
    # file: every read is one of them whole (a truncate-and-write would show
    # a prefix). Bounded: 40 writes.
    mount, target = dirs(tmp_path)
    answers = [("a" * 99 + "\n") * 40_000, ("b" * 49 + "\n") * 60_000]
    (target / NAME).write_text(answers[1])
    seen: set[int] = set()
    bad: list[int] = []
    done = threading.Event()

    def reader() -> None:
        while not done.is_set():
            text = (target / NAME).read_text()
            if text in answers:
                seen.add(answers.index(text))
            else:
                bad.append(len(text))

    thread = threading.Thread(target=reader)
    thread.start()
    try:
        for i in range(40):
            (mount / "metrics").write_text(answers[i % 2])
            assert write_once(mount, target)[0] == 0
    finally:
        done.set()
        thread.join(timeout=30)
    assert not bad, f"partial reads of {bad[:5]} bytes"
    assert seen == {0, 1}
    assert leftovers(target) == []
