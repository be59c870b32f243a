"""The bounded CI run of the parser and formatter fuzz target (tests/programs/fuzz_parser.py), and proof it can fail.

TOTMAPSFS_FUZZ_SECONDS (default 45) sets how long test_fuzz_bounded_run fuzzes;
`make fuzz FUZZ_SECONDS=600` is the long run, with a corpus kept in build/fuzz.
The fuzz target needs atheris (the `test` extra): without it these tests skip,
except under TOTMAPSFS_REQUIRE_C=1 (`make test`, CI), where they fail.
"""

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

TESTS = Path(__file__).resolve().parent.parent
TARGET = TESTS / "programs" / "fuzz_parser.py"
SEEDS = TESTS / "corpus" / "parser"
DICTIONARY = TESTS / "corpus" / "parser.dict"
FUZZ_SECONDS = int(os.environ.get("TOTMAPSFS_FUZZ_SECONDS", "45"))
ARTIFACT_PREFIXES = ("crash-", "leak-", "timeout-", "oom-", "slow-unit-")


@pytest.fixture(scope="module", autouse=True)
def _atheris() -> None:
    try:
        import atheris  # noqa: F401
    except ImportError:
        if os.environ.get("TOTMAPSFS_REQUIRE_C") == "1":
            pytest.fail("atheris is not installed (pip install -e '.[test]'); CI must run the fuzz target")
        pytest.skip("atheris is not installed")


def _run(args: list[str], timeout: float, **env: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, str(TARGET), *args],
        env={**os.environ, "TOTMAPSFS_REQUIRE_C": "1", **env},
        capture_output=True,
        text=True,
        timeout=timeout,
    )


def _stat(output: str, name: str) -> int:
    match = re.search(rf"^stat::{name}:\s+(\d+)$", output, re.MULTILINE)
    assert match, f"no stat::{name} in libFuzzer's output:\n{output[-3000:]}"
    return int(match.group(1))


def _artifacts(directory: Path) -> list[Path]:
    return [p for p in directory.iterdir() if p.name.startswith(ARTIFACT_PREFIXES)]


def test_seed_corpus_is_small_real_smaps() -> None:
    seeds = sorted(SEEDS.iterdir())
    assert len(seeds) >= 5 and sum(p.stat().st_size for p in seeds) < 200_000
    # At least one whole smaps and one smaps_rollup captured from a real kernel.
    texts = [p.read_bytes() for p in seeds]
    assert any(re.search(rb"^[0-9a-f]+-[0-9a-f]+ r-xp .*\nSize: ", t, re.MULTILINE) for t in texts)
    assert any(t.split(b"\n", 1)[0].endswith(b"[rollup]") for t in texts)


def test_replay_seed_corpus() -> None:
    result = _run(["--replay", str(SEEDS)], timeout=120)
    assert result.returncode == 0, result.stderr
    assert f"replayed {len(list(SEEDS.iterdir()))} inputs: all agree" in result.stdout


def test_fuzz_bounded_run(tmp_path: Path) -> None:
    """Fuzz for TOTMAPSFS_FUZZ_SECONDS from the seed corpus: no difference, no crash, real work done."""
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    result = _run(
        [
            f"-max_total_time={FUZZ_SECONDS}",
            "-timeout=30",  # one input taking this long is a hang
            "-rss_limit_mb=4096",
            "-print_final_stats=1",
            f"-dict={DICTIONARY}",
            f"-artifact_prefix={tmp_path}/",
            str(corpus),  # new inputs go here, the seeds stay untouched
            str(SEEDS),
        ],
        timeout=FUZZ_SECONDS + 300,
    )
    output = result.stdout + result.stderr
    assert result.returncode == 0, output[-5000:]
    assert _artifacts(tmp_path) == []
    executed = _stat(output, "number_of_executed_units")
    # Thousands of inputs a second on an idle core; 1000 in total only proves it ran at all.
    assert executed >= min(1000, 20 * FUZZ_SECONDS), output[-3000:]
    assert "Instrumenting totmapsfs.parser._reference" in output  # the reference's branches guide it
    print(f"fuzz: {executed} inputs in {FUZZ_SECONDS} s, {_stat(output, 'new_units_added')} new corpus units")


@pytest.mark.parametrize(
    ("sabotage", "mismatch", "error"),
    [
        ("1", "Mismatch: C ('ok'", "OverflowError"),  # a C parser that swallows OverflowError
        ("format", "Mismatch: format_totmaps: C ('ok'", "RuntimeError"),  # a C formatter that swallows RuntimeError
    ],
)
def test_fuzz_target_catches_a_planted_bug(tmp_path: Path, sabotage: str, mismatch: str, error: str) -> None:
    """A planted difference must make the run fail and leave a reproducer.

    The seeds hold an input of each planted kind (edge-u64: an overflow;
    format-mapping-changed: a mapping that changes while it is formatted), so
    this tests the target's failing and its artifact, not the search's luck:
    without that seed, one CI run did 50,789 inputs in 46 s without reaching it.
    """
    corpus = tmp_path / "corpus"
    corpus.mkdir()
    args = [f"-max_total_time={FUZZ_SECONDS}", f"-artifact_prefix={tmp_path}/", str(corpus), str(SEEDS)]
    result = _run(args, timeout=FUZZ_SECONDS + 300, TOTMAPSFS_FUZZ_SABOTAGE=sabotage)
    output = result.stdout + result.stderr
    assert result.returncode != 0, output[-3000:]
    assert mismatch in output and error in output, output[-3000:]
    [crash] = _artifacts(tmp_path)
    # The artifact reproduces the failure, and only with the planted bug.
    assert _run(["--replay", str(crash)], timeout=120, TOTMAPSFS_FUZZ_SABOTAGE=sabotage).returncode == 1
    assert _run(["--replay", str(crash)], timeout=120).returncode == 0
