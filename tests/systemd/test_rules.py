"""The shipped Prometheus rules: promtool's check and unit tests, the metric names they use, the boot test's copy.

systemd/prometheus/totmapsfs.rules.yml is what users copy to their
Prometheus server: `promtool check rules` must accept it, and the alerts must
fire on the series they are for and not on look-alikes
(totmapsfs.rules.test.yml beside this file, run by `promtool test rules`).
The boot test loads it into a real Prometheus with one threshold lowered by
systemd/ci/fleet-rules.sed; that copy must differ by that one line only.
"""

from __future__ import annotations

import difflib
import re
from pathlib import Path

from support.units import CI, RULES, need_promtool, run
from totmapsfs.views import KNOWN_FIELDS, MetricsOptions, Row, Snapshot, families

HERE = Path(__file__).resolve().parent
RULE_TESTS = HERE / "totmapsfs.rules.test.yml"
SED = CI / "fleet-rules.sed"


def promtool(*args: str) -> str:
    res = run([need_promtool(), *args], timeout=120)
    out = res.stdout + res.stderr
    assert res.returncode == 0, out
    return out


def test_promtool_checks_the_shipped_rules():
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", str(RULES))


def test_promtool_unit_tests():
    # rule_files in the test file is relative to it: it names the shipped file.
    assert "SUCCESS" in promtool("test", "rules", str(RULE_TESTS))


def test_rules_use_metric_names_the_daemon_exports():
    # A typo in a metric name is valid PromQL that matches nothing, forever.
    row = Row(1, 0, "x", "/system.slice/a.service", {f: 1 for f in KNOWN_FIELDS if f != "USS"})
    exported = {fam.name for fam in families(Snapshot([row]), MetricsOptions())}
    used = set(re.findall(r"\b(totmapsfs_[a-z_]+)\b", RULES.read_text()))
    recorded = set(re.findall(r"record: \S*?:(totmapsfs_[a-z_]+)", RULES.read_text()))
    assert used - recorded <= exported, sorted(used - recorded - exported)
    assert {"totmapsfs_cgroup_pss_bytes", "totmapsfs_processes_left_out"} <= used


def test_boot_copy_changes_the_staleness_threshold_only(tmp_path):
    res = run(["sed", "-f", str(SED), str(RULES)], timeout=60)
    assert res.returncode == 0, res.stderr
    diff = [
        line
        for line in difflib.unified_diff(RULES.read_text().splitlines(), res.stdout.splitlines(), lineterm="", n=0)
        if line[:1] in "+-" and not line.startswith(("+++", "---"))
    ]
    assert len(diff) == 2 and diff[0].endswith(" > 60") and diff[1].endswith(" > 20"), diff
    assert "node_textfile_mtime_seconds" in diff[1]
    copy = tmp_path / "totmapsfs.rules.yml"
    copy.write_text(res.stdout)
    assert "SUCCESS: 6 rules found" in promtool("check", "rules", str(copy))
