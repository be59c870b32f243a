"""The smaps parser, both implementations: hand-written, live and truncated input, the seed corpus, the formatter."""

import array
import bisect
import os
import random
import re
from collections.abc import Callable
from pathlib import Path

import pytest

from support.parsers import (
    HANDWRITTEN,
    HANDWRITTEN_SUMS,
    SEED_CORPUS,
    U64_MAX,
    GuardedBuffer,
    Impl,
    _names,
    assert_agree,
    oracle_line,
    outcome,
)
from totmapsfs.parser import SmapsParseError, format_totmaps


def test_handwritten_multi_mapping(impl: Impl) -> None:
    assert list(impl.parse(HANDWRITTEN).items()) == HANDWRITTEN_SUMS
    assert list(impl.parse(HANDWRITTEN + b"\n").items()) == HANDWRITTEN_SUMS
    assert_agree(impl, HANDWRITTEN)


@pytest.mark.parametrize(
    "line, expected",
    [
        (b"Rss: 1 kB", {"Rss": 1}),
        (b"Rss:                 0005 kB", {"Rss": 5}),
        (b"a_Z9: 7 kB", {"a_Z9": 7}),
        (b"_: 7 kB", {"_": 7}),
        (b"X" * 64 + b": 1 kB", {"X" * 64: 1}),
        (b"X" * 65 + b": 1 kB", {}),
        (b"Rss: 18446744073709551615 kB", {"Rss": U64_MAX}),
        (b"Rss: " + b"0" * 100 + b"18446744073709551615 kB", {"Rss": U64_MAX}),
        (b"Rss: " + b"0" * 5000 + b" kB", {"Rss": 0}),
        (b"Size: 99999999999999999999999 kB", {}),
        (b"MMUPageSize: 4 kB", {}),
        (b"KernelPageSize: 4 kB", {}),
        (b"Rss:1 kB", {"Rss": 1}),  # no space: "%-16s%8lu" with a 16-char name and 8+ digits
        (b"Rss:\t1 kB", {}),
        (b"Rss: \t1 kB", {}),
        (b"Rss: 1\tkB", {}),
        (b"Rss: 1  kB", {}),
        (b"Rss: 1kB", {}),
        (b"Rss: 1 KB", {}),
        (b"Rss: 1 kb", {}),
        (b"Rss: 1 kB\r", {}),
        (b"Rss: 1 kB ", {}),
        (b"Rss: 1 kB\x00", {}),
        (b"Rss\x00: 1 kB", {}),
        (b"\x00Rss: 1 kB", {}),
        (b"\rRss: 1 kB", {}),
        (b"Rss:\r1 kB", {}),
        (b"Rss: 1\x00 kB", {}),
        (b"Rss: 1 k\rB", {}),
        (b"Rss: 1 kB\n\r", {"Rss": 1}),  # the CR is a line of its own
        (b"Rss: 1 kB\rPss: 2 kB", {}),  # a lone CR does not end a line
        (b"Rss: 1", {}),
        (b"Rss:  kB", {}),
        (b"Rss: -1 kB", {}),
        (b"Rss: +1 kB", {}),
        (b"Rss: 1.5 kB", {}),
        (b" Rss: 1 kB", {}),
        (b"Rss : 1 kB", {}),
        (b"R-s: 1 kB", {}),
        (b"R\xc3\xa9: 1 kB", {}),
        (b": 1 kB", {}),
        (b"THPeligible:    0", {}),
        (b"VmFlags: rd wr mr mw me ac", {}),
        (b"55a3e3906000-7ffd030bc000 ---p 00000000 00:00 0      [rollup]", {}),
        (b"", {}),
        (b"\n\n\n", {}),
    ],
)
def test_single_lines(impl: Impl, line: bytes, expected: dict[str, int]) -> None:
    assert impl.parse(line) == expected
    assert impl.parse(line + b"\n") == expected
    assert impl.parse(b"junk\n" + line + b"\njunk") == expected


def test_overflow(impl: Impl) -> None:
    with pytest.raises(OverflowError, match=r"^line 2: Rss value exceeds 2\*\*64-1$"):
        impl.parse(b"x\nRss: 18446744073709551616 kB\n")
    with pytest.raises(OverflowError, match=r"^line 1: Pss value exceeds"):
        impl.parse(b"Pss: " + b"9" * (1 << 20) + b" kB")
    half = U64_MAX // 2
    assert impl.parse(b"Rss: %d kB\nRss: %d kB" % (half, half + 1)) == {"Rss": U64_MAX}
    with pytest.raises(OverflowError, match=r"^line 3: sum of Rss exceeds 2\*\*64-1$"):
        impl.parse(b"Rss: %d kB\nPss: 1 kB\nRss: %d kB" % (half + 1, half + 1))
    # Lines that only look like overflowing field lines are not errors.
    assert impl.parse(b"Rss: 99999999999999999999999 kB\r\nRss: 99999999999999999999999") == {}


def test_distinct_field_limit(impl: Impl) -> None:
    at_limit = b"".join(b"%s: 1 kB\n" % name for name in _names(256))
    # Skipped names and repeats do not count towards the limit.
    at_limit += b"Size: 4 kB\nMMUPageSize: 4 kB\nKernelPageSize: 4 kB\nField0: 1 kB\n"
    result = impl.parse(at_limit)
    assert len(result) == 256 and result["Field0"] == 2 and list(result)[-1] == "Field255"
    with pytest.raises(SmapsParseError, match=r"^too many distinct fields \(> 256\)$") as info:
        impl.parse(at_limit + b"Another: 0 kB")
    assert type(info.value) is SmapsParseError and isinstance(info.value, ValueError)


def test_first_offending_line_wins(impl: Impl) -> None:
    many = b"".join(b"%s: 1 kB\n" % name for name in _names(257))
    overflow = b"Rss: 18446744073709551616 kB\n"
    big = b"Rss: 18446744073709551615 kB\n"
    with pytest.raises(OverflowError, match=r"^line 1: Rss value"):
        impl.parse(overflow + many)
    with pytest.raises(SmapsParseError):
        impl.parse(many + overflow)
    with pytest.raises(OverflowError, match=r"^line 2: sum of Rss"):
        impl.parse(big + big + many)
    with pytest.raises(SmapsParseError):
        impl.parse(many + big + big)
    # Within one line the value is checked before the limit.
    with pytest.raises(OverflowError, match=r"^line 257: Field256 value"):
        impl.parse(many.replace(b"Field256: 1 kB", b"Field256: 99999999999999999999 kB"))


def test_input_types(impl: Impl) -> None:
    text = b"Rss: 5 kB\nPss: 3 kB\n"
    expected = {"Rss": 5, "Pss": 3}
    buf = bytearray(text)
    assert impl.parse(buf) == expected
    buf.extend(b"Rss: 1 kB")  # resizing fails while a buffer export is leaked
    assert impl.parse(buf) == {"Rss": 6, "Pss": 3}
    view = memoryview(text)
    assert impl.parse(view) == expected
    assert impl.parse(view[4:]) == {"Pss": 3}
    view.release()  # BufferError if an export is leaked
    padded = text + b"\0" * (-len(text) % 4)
    # Any format counts as raw bytes.
    assert impl.parse(array.array("I", padded)) == expected  # type: ignore[arg-type]
    assert impl.parse(memoryview(padded).cast("B", (2, len(padded) // 2))) == expected
    with pytest.raises(BufferError):
        impl.parse(memoryview(text)[::2])
    for not_a_buffer in ("Rss: 5 kB", None, 5, [b"Rss: 5 kB"]):
        with pytest.raises(TypeError):
            impl.parse(not_a_buffer)  # type: ignore[arg-type]


@pytest.mark.parametrize(
    "line",
    [
        b"Rss: " + b"0" * (1 << 20) + b"42 kB",
        b"Rss:" + b" " * (1 << 20) + b"42 kB",
        b"R" * (1 << 20) + b": 42 kB",
        b"Rss: 42 kB" + b" " * (1 << 20),
        b"\xff" * (1 << 20),
        b"7" * (1 << 20),
        b"Rss: " + b"1" * (1 << 20),
    ],
    ids=["zeros", "spaces", "name", "trailing", "binary", "digits", "no-unit"],
)
def test_long_lines(impl: Impl, line: bytes) -> None:
    data = b"Pss: 1 kB\n" + line + b"\nRss: 1 kB"
    got = assert_agree(impl, data)
    assert got in ([("Pss", 1), ("Rss", 43)], [("Pss", 1), ("Rss", 1)])


# --- live data ---


def _read(path: str) -> bytes | None:
    try:
        return Path(path).read_bytes()
    except (FileNotFoundError, ProcessLookupError, PermissionError):
        return None


def _other_pids(count: int) -> list[int]:
    pids = sorted(int(p) for p in os.listdir("/proc") if p.isdigit() and int(p) != os.getpid())
    return pids[:count]


def test_live_smaps_and_rollups(impl: Impl) -> None:
    paths = ["/proc/self/smaps", "/proc/self/smaps_rollup"]
    for pid in _other_pids(8):
        paths += [f"/proc/{pid}/smaps", f"/proc/{pid}/smaps_rollup"]
    seen = 0
    for path in paths:
        data = _read(path)  # processes vanish and may deny: skip those
        if data is not None:
            assert_agree(impl, data)
            seen += 1
    assert seen >= 1


def test_live_rollup_line_by_line(impl: Impl) -> None:
    rollup = _read("/proc/self/smaps_rollup")
    if rollup is None:
        pytest.skip("no smaps_rollup (kernel < 4.14)")
    header, *lines = rollup.decode().splitlines()
    assert header.endswith("[rollup]")
    expected = {}
    for line in lines:
        name, value, unit = line.split()
        assert name.endswith(":") and unit == "kB"
        expected[name[:-1]] = int(value)
    assert list(impl.parse(rollup).items()) == list(expected.items())


def test_live_rss_equals_naive_sum(impl: Impl) -> None:
    smaps = Path("/proc/self/smaps").read_bytes()
    rss = 0
    for line in smaps.splitlines():
        if line.startswith(b"Rss:"):
            rss += int(line.split()[1])
    assert rss > 0
    assert impl.parse(smaps)["Rss"] == rss


def _small_smaps(mappings: int = 20) -> bytes:
    smaps = Path("/proc/self/smaps").read_bytes()
    headers = [m.start() for m in re.finditer(rb"^[0-9a-f]+-[0-9a-f]+ ", smaps, re.MULTILINE)]
    assert len(headers) > mappings
    return smaps[: headers[mappings]]


def _prefix_expectations(data: bytes) -> Callable[[int], dict[str, int]]:
    """expected(k): the oracle's sums for data[:k], without re-reading the whole prefix each time."""
    starts = [0]  # starts[i]: offset of line i; one past the end at the end
    complete: list[dict[str, int]] = [{}]  # complete[i]: sums over lines 0..i-1
    running: dict[str, int] = {}
    for line in data.split(b"\n"):
        field = oracle_line(line)
        if field is not None:
            running[field[0]] = running.get(field[0], 0) + field[1]
        complete.append(dict(running))
        starts.append(starts[-1] + len(line) + 1)

    def expected(k: int) -> dict[str, int]:
        i = bisect.bisect_right(starts, k) - 1  # the line that data[:k] cuts
        sums = dict(complete[i])
        field = oracle_line(data[starts[i] : k])  # what is left of it may still be a field line
        if field is not None:
            sums[field[0]] = sums.get(field[0], 0) + field[1]
        return sums

    return expected


def _sampled_offsets(data: bytes, count: int) -> list[int]:
    """Every offset in the first and last three lines, and *count* others spread at random."""
    head = data.index(b"\n", data.index(b"\n", data.index(b"\n") + 1) + 1) + 1
    tail = data.rindex(b"\n", 0, data.rindex(b"\n", 0, data.rindex(b"\n")))
    rng = random.Random(len(data))  # reproducible for a given input
    middle = rng.sample(range(head, tail), min(count, tail - head))
    return [*range(head + 1), *sorted(middle), *range(tail, len(data) + 1)]


@pytest.mark.parametrize("source", ["self-excerpt", "workload"])
def test_truncation_at_every_offset(impl: Impl, source: str, workloads: Callable[..., object]) -> None:
    """data[:k] for every k of a real smaps (the Python parser: a sample of k on the big one).

    The C parser gets each prefix against a guard page, so a read past its end faults."""
    if source == "workload":  # a whole live smaps, ~80 KB: shmem, private, many small mappings
        worker = workloads("--mappings", "16", "--pages", "3", "--shared", "2", "--private", "3")
        data = Path(f"/proc/{worker.pid}/smaps").read_bytes()  # type: ignore[attr-defined]
        assert len(data) > 40_000 and b"/dev/zero (deleted)" in data  # the MAP_SHARED anonymous memory
    else:
        data = _small_smaps()
    expected = _prefix_expectations(data)
    if impl.name == "c" or source == "self-excerpt":
        offsets: list[int] | range = range(len(data) + 1)
    else:
        offsets = _sampled_offsets(data, 1500)
    guard = GuardedBuffer(len(data))
    for k in offsets:
        if impl.name == "c":
            with guard.placed(memoryview(data)[:k]) as view:
                got = impl.parse(view)
        else:
            got = impl.parse(data[:k])
        assert got == expected(k), k
    assert list(expected(len(data)).items()) == outcome(impl.parse, data)
    assert expected(len(data))["Rss"] > 0


def test_seed_corpus(impl: Impl) -> None:
    """The fuzz seeds (tests/corpus/parser) parse alike everywhere; the real ones as the kernel summed them."""
    for path in sorted(SEED_CORPUS.iterdir()):
        assert_agree(impl, path.read_bytes())
    rollup = (SEED_CORPUS / "sleep-smaps_rollup").read_bytes()
    assert format_totmaps(impl.parse(rollup)) == rollup.split(b"\n", 1)[1]


def test_format_handwritten_and_empty(impl: Impl) -> None:
    assert format_totmaps({}) == b""
    assert format_totmaps(impl.parse(HANDWRITTEN)) == (
        b"Rss:                 300 kB\n"
        b"Pss:                 160 kB\n"
        b"Shared_Clean:        296 kB\n"
        b"Private_Dirty:         4 kB\n"
        b"Swap:                 12 kB\n"
        b"Anonymous:            16 kB\n"
        b"Locked:         18446744073709551615 kB\n"
    )
    for bad in ({"Rss": -1}, {"Rss": 2**64}):
        with pytest.raises(ValueError):
            format_totmaps(bad)
    with pytest.raises(TypeError):
        format_totmaps({"Rss": 1.5})  # type: ignore[dict-item]
    with pytest.raises(UnicodeEncodeError):
        format_totmaps({"Rsś": 1})


def test_format_reproduces_live_rollup(impl: Impl) -> None:
    rollup = _read("/proc/self/smaps_rollup")
    if rollup is None:
        pytest.skip("no smaps_rollup (kernel < 4.14)")
    header, body = rollup.split(b"\n", 1)
    assert header.endswith(b"[rollup]")
    assert format_totmaps(impl.parse(rollup)) == body
