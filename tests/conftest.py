"""The suite's tiers, its guards (a timeout on every test, no unexpected warning), and the fixtures every tier shares.

Tiers are folders, each a marker (``pytest -m unit``; --strict-markers):

    unit/     no root, no mount: the parser, the cache, the engine on our own processes, formats (seconds)
    system/   root, no mount: the engine, tree and views against other users' processes and real cgroups
    mount/    root: real FUSE mounts read by real processes as root and as other users
    stress/   churn and pid reuse, load, faults, fuzzing (TOTMAPSFS_STRESS_SECONDS scales them)
    systemd/  the units and rules statically, `make install` with DESTDIR, the .deb (`make deb` in a fresh
              clone) checked and installed under a real systemd booted in systemd-nspawn

A test that logs a warning (in this process, or in a daemon's log) fails
unless it is marked ``expect_warnings`` (the s3ql rule: a warning nobody
expected is a bug nobody looked at).
"""

from __future__ import annotations

import logging
import os
import shutil
import tempfile
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest

from support.cgroups import Cgroup, cgroup2_mount
from support.mounts import daemon_problems, module_mount
from support.pace import DAEMON_START, TIMEOUT_SCALE
from support.parsers import impl  # noqa: F401 (the parser tests' fixture: each implementation in turn)
from totmapsfs.harness import Mount, Workload
from totmapsfs.proc import FALLBACK_ENV
from totmapsfs.service import lazy_unmount, mount_at

TIERS = ("unit", "system", "mount", "stress", "systemd")
# Seconds before pytest-timeout fails a test with every thread's traceback: far
# above what each takes on a loaded 2-core box, far below a CI job's patience.
STRESS_SECONDS = float(os.environ.get("TOTMAPSFS_STRESS_SECONDS", "0"))
TIMEOUTS = {"unit": 120, "system": 300, "mount": 300, "stress": 600 + 6 * STRESS_SECONDS, "systemd": 1800}
ROOT_TIERS = {"system", "mount", "stress", "systemd"}
HERE = Path(__file__).resolve().parent
PROGRAMS = HERE / "programs"


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        tier = Path(str(item.path)).relative_to(HERE).parts[0]
        if tier not in TIERS:
            raise pytest.UsageError(f"{item.nodeid}: every test lives in a tier folder ({', '.join(TIERS)})")
        item.add_marker(getattr(pytest.mark, tier))
        if item.get_closest_marker("timeout") is None:
            item.add_marker(pytest.mark.timeout(TIMEOUTS[tier] * TIMEOUT_SCALE))
        if tier in ROOT_TIERS and os.geteuid() != 0:
            item.add_marker(pytest.mark.skip(reason=f"the {tier} tier needs root (make test runs as root)"))


@pytest.fixture(autouse=True)
def no_unexpected_warnings(request: pytest.FixtureRequest, caplog: pytest.LogCaptureFixture) -> Iterator[None]:
    """Fail a test that logged a warning or worse through "totmapsfs" unless it says it expects one."""
    caplog.set_level(logging.INFO, logger="totmapsfs")
    yield
    if request.node.get_closest_marker("expect_warnings") is None:
        bad = [r for r in caplog.get_records("call") if r.levelno >= logging.WARNING and r.name.startswith("totmapsfs")]
        if bad:
            pytest.fail("unexpected warning: " + "; ".join(r.getMessage() for r in bad), pytrace=False)


@pytest.fixture
def workdir() -> Iterator[Path]:
    """A directory every user can traverse (pytest's tmp_path is 0700, closed to nobody)."""
    d = Path(tempfile.mkdtemp(prefix="totmapsfs-test-"))
    d.chmod(0o755)
    yield d
    for sub in d.iterdir():
        if sub.is_dir() and mount_at(str(sub)) is not None:
            lazy_unmount(str(sub))
    shutil.rmtree(d, ignore_errors=True)


@pytest.fixture
def mount_factory(workdir: Path, request: pytest.FixtureRequest) -> Iterator[Callable[..., Mount]]:
    """Daemons started as users start them; stopped at the end, their logs checked for warnings."""
    mounts: list[Mount] = []

    def make(*args: str, name: str = "mnt", **kw: object) -> Mount:
        kw.setdefault("timeout", DAEMON_START)
        m = Mount(workdir / name, *args, **kw)  # type: ignore[arg-type]
        mounts.append(m)
        return m

    yield make
    for m in mounts:
        m.stop()
    if request.node.get_closest_marker("expect_warnings") is None:
        problems = [line for m in mounts for line in daemon_problems(m)]
        if problems:
            pytest.fail("the daemon logged: " + "\n".join(problems[:10]), pytrace=False)


@pytest.fixture
def workloads() -> Iterator[Callable[..., Workload]]:
    made: list[Workload] = []

    def make(*args: str, **kw: object) -> Workload:
        w = Workload(*args, **kw)  # type: ignore[arg-type]
        made.append(w)
        return w

    yield make
    for w in made:
        w.close()


@pytest.fixture(scope="module")
def exact_mount(request: pytest.FixtureRequest) -> Iterator[Mount]:
    """One rollup mount with the cache off (no max-age, no duty: every read walks), shared by exactness tests.

    Parametrized indirectly with "fallback", the daemon translates pids as on
    a kernel without the nsfs ioctls (proc.FALLBACK_ENV).
    """
    env = {FALLBACK_ENV: "1"} if getattr(request, "param", None) == "fallback" else {}
    yield from module_mount("--max-age", "0", "--duty", "1", env=env)


_cgroup_names = iter(range(1 << 30))


@pytest.fixture
def cgroup() -> Iterator[Cgroup]:
    """A fresh cgroup v2 directory under the cgroup2 root, removed at the end."""
    mount = cgroup2_mount()
    path = mount / f"totmapsfs-test-{os.getpid()}-{next(_cgroup_names)}"
    # No skip here: where cgroup2 is mounted, a test that cannot make a cgroup must fail.
    path.mkdir()
    group = Cgroup(path, mount)
    try:
        yield group
    finally:
        group.remove()
