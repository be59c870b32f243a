"""The per-mapping parser (MOUNT/files): C, reference and a regex-free oracle agree; keys as the rule says."""

import glob
import mmap
import os

import pytest
from hypothesis import given
from hypothesis import strategies as st

from support.mappings import U64_MAX, assert_agree, c_mappings, outcome
from support.parsers import HANDWRITTEN
from totmapsfs.parser import SmapsParseError, _mappings, parse_smaps
from unit.test_parser_generated import documents, examples, mutated_real_smaps

pytestmark = pytest.mark.unit

TEXT = b"""\
Rss:                 999 kB
00400000-00452000 r-xp 00000000 08:02 173521                             /usr/bin/dbus-daemon
Size:                328 kB
Rss:                 296 kB
Pss:                 148 kB
VmFlags: rd ex mr mw me dw
00651000-00652000 rw-p 00051000 08:02 173521                             /usr/bin/dbus-daemon
Rss:                   4 kB
Pss:                   2 kB
Private_Dirty:         4 kB
01000000-01021000 rw-p 00000000 00:00 0                                  [heap]
Rss:                  12 kB
7f0000000000-7f0000001000 rw-p 00000000 00:00 0\x20
Rss:                   8 kB
7f0000001000-7f0000002000 rw-p 00000000 00:00 0
Rss:                   4 kB
7f0000002000-7f0000003000 rw-s 00000000 00:01 2050                       /dev/zero (deleted)
Rss:                   4 kB
7f0000003000-7f0000004000 rw-s 00000000 00:01 2051                       /memfd:wayland-shm (deleted)
Rss:                   4 kB
7f0000004000-7f0000005000 rw-s 00000000 00:01 2052                       /memfd:wayland-shm (deleted)
Rss:                   4 kB
7f0000005000-7f0000006000 r--p 00000000 08:02 99                         /usr/lib/libold.so (deleted)
Rss:                   4 kB
7f0000006000-7f0000007000 r--p 00000000 08:02 100                        /usr/lib/libold.so (deleted)
Rss:                   4 kB
7f0000007000-7f0000008000 rw-s 00000000 00:01 32768                      /SYSV0000abcd (deleted)
Rss:                   4 kB
7f0000008000-7f0000009000 rw-p 00000000 00:00 0                          [anon:jemalloc pages]
Rss:                   4 kB
7f0000009000-7f000000a000 rw-s 00000000 00:1a 5                          /dev/shm/pool
Rss:                   4 kB
7f000000a000-7f000000b000 r--p 00000000 00:00 0                          [vvar]
7f000000b000-7f000000c000 r-xp 00000000 00:00 0                          [vdso]
Rss:                   4 kB
"""

EXPECTED = [
    ("/usr/bin/dbus-daemon", [("Rss", 300), ("Pss", 150), ("Private_Dirty", 4)]),
    ("[heap]", [("Rss", 12)]),
    ("[anon]", [("Rss", 12)]),
    ("[anon_shmem]", [("Rss", 4)]),
    ("memfd:wayland-shm", [("Rss", 8)]),
    ("/usr/lib/libold.so (deleted 08:02:99)", [("Rss", 4)]),
    ("/usr/lib/libold.so (deleted 08:02:100)", [("Rss", 4)]),
    ("/SYSV0000abcd", [("Rss", 4)]),
    ("[anon:jemalloc pages]", [("Rss", 4)]),
    ("/dev/shm/pool", [("Rss", 4)]),
    ("[vvar]", []),
    ("[vdso]", [("Rss", 4)]),
]


def test_handwritten_keys_and_sums() -> None:
    """Every kind of name, each key as the rule says; the field before the first header is not counted."""
    assert assert_agree(TEXT) == EXPECTED


@pytest.mark.parametrize(
    ("line", "key"),
    [
        (b"0040-0045 r-xp 0000 08:02 1 /x", "/x"),  # short hex, one space: still a header
        (b"0040-0045 r-xp 0000 08:02 1", "[anon]"),
        (b"0040-0045 r-xp 0000 08:02 1 ", "[anon]"),
        (b"0040-0045 r-xp 0000 08:02 1     ", "[anon]"),
        (b"0040-0045 r-xp 0000 08:02 1  x (deleted) ", "x (deleted) "),
    ],
)
def test_headers(line: bytes, key: str) -> None:
    assert assert_agree(line + b"\nRss: 1 kB") == [(key, [("Rss", 1)])]


@pytest.mark.parametrize(
    "line",
    [
        b"0040-0045 r-xp 0000 08:02 1x /x",  # inode not decimal
        b"0040-0045 r-xp 0000 08:02 1\t/x",
        b"0040-0045 rxp 0000 08:02 1 /x",  # three permission bytes
        b"0040-0045 r xp 0000 08:02 1 /x",
        b"0040-0045  r-xp 0000 08:02 1 /x",
        b"0040-0045 r-xp 0000 0802 1 /x",  # no device colon
        b"0040-0045 r-xp 0000 08:02: 1 /x",
        b"0040-0045 r-xp 0000 :02 1 /x",
        b"0040-0045 r-xp 0000 08: 1 /x",
        b"0040-0045 r-xp 0000 08:02  1 /x",
        b"0040-0045 r-xp 0000 08:02 /x",
        b"0040-0045 r-xp 0000 08:02",
        b"0040 0045 r-xp 0000 08:02 1 /x",
        b"0040-0045 r-xp 000g 08:02 1 /x",
        b"0040-0045 r-xp 0000 08:0G 1 /x",
        b"0040-0045r-xp 0000 08:02 1 /x",
        b"-0045 r-xp 0000 08:02 1 /x",
        b"0040- r-xp 0000 08:02 1 /x",
        b"0040-0045 r-xp 0000 08:02 \xd9\xa1 /x",  # a non-ASCII digit
    ],
)
def test_not_headers(line: bytes) -> None:
    """A line not exactly a header does not start a mapping: its fields stay with none."""
    assert assert_agree(line + b"\nRss: 1 kB") == []


def test_undecodable_path_round_trips() -> None:
    data = b"0040-0045 r-xp 0000 08:02 1    /tmp/\xff\xfe name\nRss: 4 kB\n"
    (key, fields), *_ = assert_agree(data)  # type: ignore[misc]
    assert os.fsencode(key) == b"/tmp/\xff\xfe name" and fields == [("Rss", 4)]


def test_errors() -> None:
    head = b"0040-0045 r-xp 0000 08:02 1 /a\n"
    other = b"0045-0046 r-xp 0000 08:02 2 /b\n"
    big = b"Rss: %d kB\n" % U64_MAX
    assert assert_agree(head + b"Rss: %d kB\n" % (U64_MAX + 1)) == (OverflowError, "line 2: Rss value exceeds 2**64-1")
    assert assert_agree(head + big + b"Rss: 1 kB\n") == (OverflowError, "line 3: sum of Rss exceeds 2**64-1")
    # Sums are per key: the same field in two keys does not add up.
    assert assert_agree(head + big + other + big) == [("/a", [("Rss", U64_MAX)]), ("/b", [("Rss", U64_MAX)])]
    # Fields before any header are ignored, errors included.
    assert assert_agree(b"Rss: %d kB\n" % (U64_MAX + 1) + head) == [("/a", [])]
    many = head + b"".join(b"F%d: 1 kB\n" % i for i in range(257))
    assert assert_agree(many) == (SmapsParseError, "too many distinct fields (> 256)")
    spread = b"".join(b"%x-%x r-xp 0 00:00 %d /k%d\nF%d: 1 kB\n" % (i, i + 1, i, i, i) for i in range(256))
    assert len(assert_agree(spread)) == 256  # type: ignore[arg-type]
    assert assert_agree(spread + b"Fnew: 1 kB\n") == (SmapsParseError, "too many distinct fields (> 256)")


def test_input_types() -> None:
    c = c_mappings()
    for parse in (c, _mappings.parse_smaps_mappings):
        assert parse(bytearray(TEXT)) == parse(memoryview(TEXT)) == parse(TEXT)
        assert parse(b"") == {}
        for bad in ("text", 1, None):
            with pytest.raises(TypeError):
                parse(bad)  # type: ignore[arg-type]
        with pytest.raises(BufferError):
            parse(memoryview(TEXT)[::2])
    with mmap.mmap(-1, len(TEXT)) as m:
        m[:] = TEXT
        assert outcome(c, m) == EXPECTED


def _live_smaps() -> list[bytes]:
    texts = []
    for path in sorted(glob.glob("/proc/[0-9]*/smaps")):
        try:
            with open(path, "rb") as f:
                texts.append(f.read())
        except OSError:
            continue  # gone, or not ours to read
    return texts


def test_live_smaps_agree_and_sum_to_parse_smaps() -> None:
    """Every readable process's smaps: C == reference == oracle, and the keys' sums are parse_smaps's totals."""
    texts = _live_smaps()
    assert len(texts) > 3
    for text in texts:
        got = c_mappings()(text)
        assert outcome(c_mappings(), text) == outcome(_mappings.parse_smaps_mappings, text)
        summed: dict[str, int] = {}
        for fields in got.values():
            for name, value in fields.items():
                summed[name] = summed.get(name, 0) + value
        assert summed == parse_smaps(text)


def test_live_smaps_truncated_everywhere() -> None:
    """Our own smaps cut at every offset (a read that stopped anywhere): the three agree each time."""
    with open("/proc/self/smaps", "rb") as f:
        text = f.read()[:6000]
    for end in range(0, len(text), 7):
        assert_agree(text[:end])


def test_handwritten_parse_smaps_input_agrees() -> None:
    assert assert_agree(HANDWRITTEN)


header_lines = st.builds(
    lambda lo, hi, perms, off, major, minor, inode, pad, name: (
        b"%x-%x %s %x %s:%s %d%s%s" % (lo, hi, perms, off, major, minor, inode, pad, name)
    ),
    st.integers(0, 2**48),
    st.integers(0, 2**48),
    st.sampled_from([b"r-xp", b"rw-s", b"---p", b"r\rxp", b"rwx"]),
    st.integers(0, 2**32),
    st.sampled_from([b"08", b"00", b"fe", b"0G", b""]),
    st.sampled_from([b"02", b"1a", b"", b"x"]),
    st.integers(0, 2**40),
    st.sampled_from([b"", b" ", b"   ", b"\t", b"x"]),
    st.sampled_from(
        [
            *(b"", b"/lib/a.so", b"/lib/a.so (deleted)", b"/dev/zero (deleted)", b"/memfd:x (deleted)"),
            *(b"[heap]", b"/SYSV00000001 (deleted)", b" (deleted)", b"/a\xff", b"[anon:a b]"),
        ]
    ),
)
field_lines = st.builds(
    lambda name, value: b"%s: %d kB" % (name, value),
    st.sampled_from([b"Rss", b"Pss", b"Swap", b"Size", b"Private_Dirty"]),
    st.one_of(st.integers(0, 10**6), st.integers(U64_MAX - 2, U64_MAX + 2)),
)
mapping_docs = st.builds(
    lambda parts, tail: b"\n".join(parts) + tail,
    st.lists(st.one_of(header_lines, field_lines, field_lines, st.binary(max_size=30)), max_size=40),
    st.sampled_from([b"", b"\n"]),
)


@examples(300)
@given(mapping_docs)
def test_generated_mappings(data: bytes) -> None:
    assert_agree(data)


@examples(150)
@given(st.one_of(documents, mutated_real_smaps()))
def test_generated_smaps_like(data: bytes) -> None:
    assert_agree(data)
