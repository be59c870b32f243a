"""--layout: ChromeOS's two totmaps readers, by their parsing rules, against the real mount.

Chromium's positional reader needs ``--layout chromeos``; the kernel layout
(the default) misleads it, silently in a release build. ChromeOS's later
process meter reads fields by name in order and keeps working under the
default. Both rules live in tests/support/readers.py.
"""

from __future__ import annotations

import pytest

from support.kernel import held, read_rollup
from support.readers import CHROMIUM_LINES, PROCESS_METER_FIELDS, ReaderError, chromium_totmaps, process_meter
from totmapsfs.views import CHROMEOS_FIELDS


def test_chromium_reads_the_chromeos_layout_and_the_process_meter_the_default(mount_factory, workloads) -> None:
    chromeos = mount_factory("--layout", "chromeos", "--max-age", "0", "--duty", "1")
    kernel_layout = mount_factory("--max-age", "0", "--duty", "1", name="default")
    w = workloads("--private", "8", "--shared", "4", "--children", "1")
    pid = w.pid
    with w.stopped():
        rollup, (ours, default) = held(
            lambda: read_rollup(pid), lambda: (chromeos.read(pid).decode(), kernel_layout.read(pid).decode())
        )
        in_layout, by_default = (m.path / str(pid) / "tree" / "totmaps" for m in (chromeos, kernel_layout))
        tree, default_tree = held(in_layout.read_text, by_default.read_text)
    # The eleven lines, in the ChromeOS kernel's order, in the kernel's line format.
    assert [line.split()[0] for line in ours.splitlines()] == [f"{name}:" for name in CHROMEOS_FIELDS]
    assert ours.splitlines()[1] == f"{'Pss:':<16}{rollup['Pss']:>8} kB"
    assert chromium_totmaps(ours) == {name: rollup[name] for name in CHROMIUM_LINES}
    assert process_meter(default) == {name: rollup[name] for name in PROCESS_METER_FIELDS}
    # The kernel layout misleads the positional reader: a debug build's DCHECK fails; a release build
    # takes Pss_File for Private_Clean, and Private_Dirty for Swap.
    with pytest.raises(ReaderError):
        chromium_totmaps(default)
    wrong = chromium_totmaps(default, dcheck=False)
    assert wrong["Private_Clean"] == rollup["Pss_File"] and wrong["Swap"] == rollup["Private_Dirty"]
    # Sums are in the layout too: the tree (the workload and its child) and the whole-system file.
    assert [line.split()[0] for line in tree.splitlines()] == [f"{name}:" for name in CHROMEOS_FIELDS]
    assert chromium_totmaps(tree)["Pss"] == process_meter(default_tree)["Pss"] > rollup["Pss"]
    chromium_totmaps((chromeos.path / "totmaps").read_text())
    assert chromeos.read(2) == b""  # kthreadd: no address space, an empty file in either layout


def test_layout_rejects_an_unknown_name(tmp_path) -> None:
    import subprocess

    from totmapsfs.harness import PY

    r = subprocess.run(
        [PY, "-m", "totmapsfs", "--layout", "android", str(tmp_path / "m")], capture_output=True, text=True, timeout=60
    )
    assert r.returncode == 2 and "invalid choice: 'android'" in r.stderr and "Traceback" not in r.stderr
