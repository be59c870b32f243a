"""The command line without mounting: --help, usage errors and the errors a user meets before any mount."""

from __future__ import annotations

import os

import pytest

from support.cli import assert_one_line_error, run_cli
from totmapsfs.service import parser


def test_help_documents_every_option() -> None:
    r = run_cli("--help")
    assert r.returncode == 0
    options = [opt for action in parser()._actions for opt in action.option_strings if opt.startswith("--")]
    assert len(options) >= 12  # --help and the eleven of today, at least
    for option in [*options, "MOUNTPOINT", "auto,rollup,smaps"]:
        assert option in r.stdout, option


@pytest.mark.parametrize(
    "args, needle",
    [
        (("--max-age", "soon", "/tmp/x"), "not a number"),
        (("--max-age", "-1", "/tmp/x"), ">= 0"),
        (("--source", "kernel", "/tmp/x"), "invalid choice"),
        (("--threads", "0", "/tmp/x"), "between 1 and"),
        (("--metrics-top", "-1", "/tmp/x"), ">= 0"),
        (("--duty", "0", "/tmp/x"), "above 0 and at most 1"),
        (("--duty", "150%", "/tmp/x"), "above 0 and at most 1"),
        (("--duty", "often", "/tmp/x"), "not a share"),
        (("--walk-budget", "-1", "/tmp/x"), "above 0, or off"),
        ((), "MOUNTPOINT"),
    ],
)
def test_usage_errors(args, needle: str) -> None:
    r = run_cli(*args)
    assert r.returncode == 2 and "Traceback" not in r.stderr and needle in r.stderr


def test_walk_options() -> None:
    args = parser().parse_args(["--duty", "5%", "--walk-budget", "off", "/mnt"])
    assert (args.duty, args.walk_budget) == (0.05, None)
    args = parser().parse_args(["/mnt"])
    assert (args.duty, args.walk_budget) == (0.05, 0.25)
    assert parser().parse_args(["--duty", "1", "/mnt"]).duty == 1.0


def test_not_root() -> None:
    if os.geteuid() == 0:
        r = run_cli("/tmp/never", user=65534)
    else:
        r = run_cli("/tmp/never")
    assert_one_line_error(r, "root")
