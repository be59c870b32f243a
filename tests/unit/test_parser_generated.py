"""Generated input (hypothesis): every parser implementation agrees with the oracle and the others.

TOTMAPSFS_EXAMPLES_SCALE (default 1) multiplies every test's example count:
`make valgrind` runs with 0.1, where each example costs ~50x more.
"""

import os

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from support.parsers import HANDWRITTEN, SEED_CORPUS, U64_MAX, Impl, _names, assert_agree
from totmapsfs.parser import NOT_SUMMABLE, format_totmaps
from totmapsfs.parser._format import format_totmaps as _reference_format
from totmapsfs.views._metrics import KNOWN_FIELDS

# --- generated input: every implementation must agree with the oracle and with each other ---

# What the kernel prints in smaps: the summed fields of every kernel we know of
# (the runtime's own list, less the USS it computes), the per-mapping sizes it
# skips, and lines that are no field at all. Pss and its parts first (the
# repeats below).
KNOWN_NAMES = [
    *(name for name in KNOWN_FIELDS if name != "USS"),
    *sorted(NOT_SUMMABLE),
    "THPeligible",
    "ProtectionKey",
    "VmFlags",
]
NAME_ALPHABET = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789_"

valid_names = st.one_of(
    st.sampled_from(KNOWN_NAMES).map(str.encode),
    st.sampled_from(KNOWN_NAMES[:6]).map(str.encode),  # repeats, so sums can overflow
    st.text(NAME_ALPHABET, min_size=1, max_size=64).map(str.encode),
)
names = st.one_of(valid_names, st.text(NAME_ALPHABET, min_size=60, max_size=70).map(str.encode), st.binary(max_size=8))
values = st.one_of(
    st.integers(0, 10**6),
    st.integers(0, U64_MAX),
    st.integers(U64_MAX - 3, U64_MAX + 3),
    st.integers(2**63 - 2, 2**63 + 2),
    st.integers(0, 10**40),
)
digits = st.builds(lambda zeros, value: b"0" * zeros + b"%d" % value, st.sampled_from([0, 0, 0, 1, 30]), values)
well_formed_lines = st.builds(
    lambda name, pad, digits: b"%s:%s%s kB" % (name, b" " * pad, digits),
    valid_names,
    st.integers(1, 20),
    digits,
)
mangled_lines = st.builds(
    lambda *parts: b"".join(parts),
    names,
    st.sampled_from([b":", b":", b":", b"", b";", b"::"]),
    st.sampled_from([b" ", b" " * 8, b"", b"\t", b" \t", b"\x00"]),
    digits,
    st.sampled_from([b" kB", b" kB", b"kB", b"  kB", b" KB", b" kB\r", b" kB ", b" kB\x00", b"", b" kB\t"]),
)
other_lines = st.sampled_from(
    [
        b"7f4f4d4c5000-7f4f4d4c7000 r--p 00000000 fe:00 1234                    /usr/lib/libc.so.6",
        b"55a3e3906000-7ffd030bc000 ---p 00000000 00:00 0                          [rollup]",
        b"VmFlags: rd wr mr mw me ac sd",
        b"THPeligible:    0",
        b"ProtectionKey:         0",
        b"",
        b"\r",
        b"kB",
        b": 1 kB",
    ]
)
lines = st.one_of(well_formed_lines, well_formed_lines, mangled_lines, other_lines, st.binary(max_size=40))
documents = st.builds(
    lambda parts, sep, tail: sep.join(parts) + tail,
    st.lists(lines, max_size=60),
    st.sampled_from([b"\n", b"\n", b"\n", b"\r\n", b"\r", b"\n\x00"]),
    st.sampled_from([b"", b"\n"]),  # with and without a trailing newline
)

REAL_TEXTS = [p.read_bytes() for p in sorted(SEED_CORPUS.iterdir())] + [HANDWRITTEN]
NOISE = [
    *(b"\r", b"\x00", b"\n", b" ", b":", b"\t", b"kB", b" kB", b"0", b"9", b"\xff", b"_", b"\r\n"),
    *(b"18446744073709551615", b"18446744073709551616", b"0" * 25),
]
EDIT_OPS = ["insert", "replace", "delete", "cut"]
EDITS = st.tuples(st.integers(0, 1 << 20), st.sampled_from(EDIT_OPS), st.sampled_from(NOISE))


@st.composite
def mutated_real_smaps(draw: st.DrawFn) -> bytes:
    """A real smaps or rollup (tests/corpus/parser), lines swapped, bytes inserted,
    overwritten or deleted, maybe cut short: CR and NUL anywhere, fields out of order."""
    lines = draw(st.sampled_from(REAL_TEXTS)).split(b"\n")
    for i, j in draw(st.lists(st.tuples(st.integers(0, 1 << 20), st.integers(0, 1 << 20)), max_size=8)):
        i, j = i % len(lines), j % len(lines)
        lines[i], lines[j] = lines[j], lines[i]
    data = bytearray(b"\n".join(lines))
    for at, op, piece in draw(st.lists(EDITS, max_size=12)):
        at %= len(data) + 1
        if op == "insert":
            data[at:at] = piece
        elif op == "replace":
            data[at : at + len(piece)] = piece
        elif op == "delete":
            del data[at : at + len(piece)]
        else:
            del data[at:]
    return bytes(data)


EXAMPLES_SCALE = float(os.environ.get("TOTMAPSFS_EXAMPLES_SCALE", "1"))


def examples(count: int) -> settings:
    return settings(
        max_examples=max(1, round(count * EXAMPLES_SCALE)),
        deadline=None,
        suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large],
    )


@examples(1000)
@given(data=documents)
def test_generated_smaps_like(impl: Impl, data: bytes) -> None:
    assert_agree(impl, data)


@examples(300)
@given(data=mutated_real_smaps())
def test_mutated_real_smaps(impl: Impl, data: bytes) -> None:
    assert_agree(impl, data)


@examples(400)
@given(data=st.binary(max_size=2000))
def test_random_binary(impl: Impl, data: bytes) -> None:
    assert_agree(impl, data)


@examples(100)
@given(
    count=st.integers(250, 262),
    insert=st.lists(st.tuples(st.integers(0, 262), st.sampled_from([b"Rss", b"Field3"]), values), max_size=3),
)
def test_generated_limit_and_overflow_order(impl: Impl, count: int, insert: list[tuple[int, bytes, int]]) -> None:
    body = [b"%s: 1 kB" % name for name in _names(count)]
    for index, name, value in insert:
        body.insert(index, b"%s: %d kB" % (name, value))
    assert_agree(impl, b"\n".join(body))


@examples(25)
@given(
    prefix=st.sampled_from([b"", b"Rss:", b"Rss: ", b"Rss: 1", b"Swap"]),
    piece=st.sampled_from([b"0", b"9", b" ", b"a", b"\xff", b" kB", b"\x00", b"\r"]),
    size=st.integers(1 << 20, (1 << 20) + 3),
    suffix=st.sampled_from([b"", b" kB", b": 1 kB", b"1 kB", b"\nPss: 2 kB"]),
)
def test_generated_long_lines(impl: Impl, prefix: bytes, piece: bytes, size: int, suffix: bytes) -> None:
    assert_agree(impl, b"Rss: 3 kB\n" + prefix + piece * (size // len(piece)) + suffix)


# --- format_totmaps ---


@examples(200)
@given(
    fields=st.dictionaries(st.text(NAME_ALPHABET, min_size=1, max_size=30), st.integers(0, U64_MAX)),
    bad=st.one_of(
        st.none(),
        st.tuples(
            st.text(max_size=3),
            st.one_of(st.integers(-5, -1), st.integers(U64_MAX + 1, U64_MAX * 2), st.floats(), st.text(max_size=2)),
        ),
    ),
)
def test_format_refuses_alike(impl: Impl, fields: dict[str, int], bad: tuple[str, object] | None) -> None:
    """Both formatters give the same text, or raise the same class, whatever the mapping holds."""
    if bad is not None:
        fields = {**fields, bad[0]: bad[1]}  # type: ignore[dict-item]
    outcomes = []
    for fmt in (impl.format, _reference_format):
        try:
            outcomes.append(fmt(fields))
        except (TypeError, ValueError) as exc:
            outcomes.append(type(exc))
    assert outcomes[0] == outcomes[1]


@examples(100)
@given(fields=st.dictionaries(st.text(NAME_ALPHABET, min_size=1, max_size=30), st.integers(0, U64_MAX)))
def test_format_matches_printf_reference(impl: Impl, fields: dict[str, int]) -> None:
    reference = b"".join(b"%-16s%8lu kB\n" % (name.encode() + b":", value) for name, value in fields.items())
    assert impl.format(fields) == format_totmaps(fields) == reference
    # It parses back, also where a long name leaves no space after the colon
    # ("Private_Hugetlb:12345678 kB", as the kernel prints it too).
    fit = {k: v for k, v in fields.items() if len(k) <= 64 and k not in NOT_SUMMABLE}
    assert impl.parse(format_totmaps(fit)) == fit
