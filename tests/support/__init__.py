"""What the test tiers share beyond the package's harness: independent readings of the kernel, fakes, cgroups."""

from pathlib import Path

PROGRAMS = Path(__file__).resolve().parent.parent / "programs"  # the helper programs the tests run
