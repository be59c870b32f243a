"""Process churn and pid reuse: tests/churn.py run in a private pid namespace, its JSON result asserted.

Each test runs ``unshare --pid --fork --mount-proc --kill-child python tests/churn.py``:
the daemon, the mount, hundreds of short-lived processes a second and the readers
all live in that namespace and die with it (a timeout kills it: a hang fails the
test instead of hanging CI). In CI each churns for a few seconds (then on until
enough reads of reused pids were verified, within a bound); for a longer run set
TOTMAPSFS_STRESS_SECONDS, e.g.

    TOTMAPSFS_STRESS_SECONDS=120 .venv/bin/python -m pytest -q -s tests/stress/test_churn.py

(-s prints each run's figures). The driver also runs alone, see its docstring.
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import tempfile
from collections.abc import Iterator
from pathlib import Path

import psutil
import pytest

from support import PROGRAMS
from totmapsfs.harness import PY
from totmapsfs.service import mount_at

STRESS_SECONDS = float(os.environ.get("TOTMAPSFS_STRESS_SECONDS", "0"))


@pytest.fixture
def churn_dir() -> Iterator[Path]:
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-churn-"))
    yield d
    shutil.rmtree(d, ignore_errors=True)


def run_churn(workdir: Path, seconds: float, *args: str) -> dict:
    """Run the driver in a new pid and mount namespace; its result, after checking nothing was left behind."""
    if shutil.which("unshare") is None:
        pytest.skip("needs unshare (util-linux)")
    host_pid_max = Path("/proc/sys/kernel/pid_max").read_text()
    argv = [
        "unshare",
        "--pid",
        "--fork",
        "--mount-proc",
        "--kill-child",
        PY,
        str(PROGRAMS / "churn.py"),
        "--seconds",
        str(seconds),
        "--workdir",
        str(workdir),
        *args,
    ]
    # Bounds for hang detection only: churn stops by 4x + 30 s, the rest takes seconds.
    r = subprocess.run(argv, capture_output=True, text=True, timeout=4 * seconds + 150)
    lines = r.stdout.strip().splitlines()
    assert lines, f"no output (exit {r.returncode}): {r.stderr[-3000:]}"
    result = json.loads(lines[-1])
    print(json.dumps(result, indent=1))
    # The namespace is gone, and took everything with it: nothing of it is on the host.
    assert Path("/proc/sys/kernel/pid_max").read_text() == host_pid_max
    assert mount_at(str(workdir / "mnt")) is None
    left = [p.pid for p in psutil.process_iter(["cmdline"]) if str(workdir) in " ".join(p.info["cmdline"] or [])]
    assert left == []
    assert r.returncode == 0 and result["ok"], f"{result}\n{r.stderr[-3000:]}"
    return result


def assert_sound(result: dict, min_reused: int) -> None:
    """What every run must show: no crash, no error but ENOENT for processes that left, no wrong answer."""
    assert result["daemon_alive_after_churn"] and result["daemon_exit"] == 0
    assert result["daemon_log_errors"] == 0
    assert result["wrong"] == 0, result["samples"]
    assert result["other_errors"] == 0, result["samples"]
    assert result["enoent_live"] == 0  # ENOENT only for processes that had left
    assert result["readers_hung"] == 0 and result["child_failures"] == 0
    assert result["leftover_processes"] == [] and not result["mounted_after_stop"]
    # The run did what it is for: churn, reads racing exits, reuse of pids whose answer was cached.
    assert result["spawned"] >= 300 and result["killed"] == result["spawned"]
    assert result["verified"] >= 300 and result["enoent"] + result["empty"] > 0
    assert result["reused"] >= min_reused
    assert result["listings"] > 0 and result["views"] > 0 and result["view_errors"] == 0
    assert result["targeted"] > 0 and result["targeted_hits"] > 0
    # No leak across thousands of processes: descriptors back where they were, memory bounded.
    start, end = result["daemon_start"], result["daemon_end"]
    assert end["fds"] <= start["fds"] + 2
    assert end["rss_kb"] < start["rss_kb"] + 64 * 1024


def assert_same_tick_sound(tick: dict, min_collisions: int) -> None:
    if "skipped" in tick:
        pytest.skip(f"same-tick phase: {tick['skipped']}")
    assert tick["errors"] == 0, tick["notes"]
    assert tick["rounds"] >= 0.9 * (tick["rounds"] + tick["missed_pid"])  # the pid was really reused
    # The hard case happened: successor with the predecessor's (pid, start time) and generation...
    assert tick["same_start_and_generation"] >= min_collisions
    # ... and each read still gave the process's own figure.
    assert tick["stale"] == 0, tick["notes"]


def test_churn_and_pid_reuse_with_a_long_max_age(churn_dir: Path) -> None:
    """--max-age 3600: a cache serving a previous owner's numbers would have every chance to show."""
    result = run_churn(
        churn_dir, STRESS_SECONDS or 6, "--max-age", "3600", "--min-reused", "300", "--same-tick-min", "5"
    )
    assert_sound(result, min_reused=300)
    assert_same_tick_sound(result["same_tick_reuse"], 5)


def test_churn_with_the_default_max_age_and_the_smaps_source(churn_dir: Path) -> None:
    """The other source (smaps: a zombie reads empty rather than failing) and the default max-age."""
    result = run_churn(
        churn_dir,
        STRESS_SECONDS or 3,
        "--max-age",
        "1",
        "--source",
        "smaps",
        "--min-reused",
        "100",
        "--same-tick-rounds",
        "50",
        "--same-tick-min",
        "1",
    )
    assert_sound(result, min_reused=100)
    assert_same_tick_sound(result["same_tick_reuse"], 1)


def test_the_driver_refuses_to_run_outside_a_new_pid_namespace() -> None:
    """Run directly it would write pid_max and ns_last_pid of the host: it must not start."""
    r = subprocess.run([PY, str(PROGRAMS / "churn.py"), "--seconds", "1"], capture_output=True, text=True, timeout=60)
    assert r.returncode == 2 and "unshare --pid" in r.stderr
