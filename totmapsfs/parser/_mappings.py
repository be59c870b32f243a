"""The pure-Python per-mapping smaps parser: the reference (and spec) of _speedups.parse_smaps_mappings."""

import os
import re
from typing import Final

from ._reference import _NOT_SUMMABLE_BYTES, _U64_DIGITS, MAX_FIELDS, U64_MAX, SmapsParseError, _as_bytes, _long_value

__all__ = ["ANON", "mapping_key", "parse_smaps_mappings"]

ANON: Final = "[anon]"  # plain anonymous memory: a mapping with no name

# A mapping header, as show_vma_header_prefix() (fs/proc/task_mmu.c) prints it:
# "%08lx-%08lx %c%c%c%c %08llx %02x:%02x %lu ", then, when the mapping has a
# name, seq_pad() spaces and the name (seq_file_path escapes "\n" in it).
_HEADER: Final = re.compile(
    rb"^[0-9a-f]+-[0-9a-f]+ [^ \n]{4} [0-9a-f]+ ([0-9a-f]+:[0-9a-f]+) ([0-9]+)(?: ([^\n]*))?$", re.MULTILINE
)
_FIELD: Final = re.compile(rb"^([A-Za-z0-9_]{1,64}): *([0-9]+) kB$", re.MULTILINE)
_DELETED: Final = b" (deleted)"


def mapping_key(device: bytes, inode: bytes, name: bytes) -> bytes:
    """What a mapping is counted under (``files``): its path, or its kind, or where a deleted file was.

    * no name: ``[anon]``; a name in brackets (``[heap]``, ``[stack]``,
      ``[anon:NAME]``, ``[vdso]``...) and a path are kept as they are;
    * a name ending in `` (deleted)`` (d_path's suffix for an unlinked file):
      ``/dev/zero`` is MAP_SHARED|MAP_ANONYMOUS memory (shmem_zero_setup,
      mm/shmem.c), counted as ``[anon_shmem]``; ``/memfd:NAME`` is
      memfd_create's file, counted as ``memfd:NAME``; ``/SYSV...`` a System V
      segment, by its name; any other file by where it was and what it was:
      ``PATH (deleted DEVICE:INODE)``, so that two unlinked versions of one
      path (a library replaced by an upgrade) stay apart.
    """
    name = name.lstrip(b" ")
    if not name:
        return ANON.encode()
    if not name.endswith(_DELETED):
        return name
    base = name[: -len(_DELETED)]
    if base == b"/dev/zero":
        return b"[anon_shmem]"
    if base.startswith(b"/memfd:"):
        return base[1:]
    if base.startswith(b"/SYSV"):
        return base
    return base + b" (deleted " + device + b":" + inode + b")"


def parse_smaps_mappings(data: bytes | bytearray | memoryview) -> dict[str, dict[str, int]]:
    """Sum the fields of smaps text per mapping key (``mapping_key``); return {key: {name: total kB}}.

    The rule, which the C parser (_speedups.parse_smaps_mappings) follows exactly:

    * Lines and field lines are those of ``_reference.parse_smaps`` (same
      NOT_SUMMABLE names skipped, same value and sum bounds).
    * A *header line* is exactly: lowercase hex, ``-``, lowercase hex, one
      space, four bytes other than space and newline, one space, lowercase
      hex, one space, lowercase hex ``:`` lowercase hex (the device), one
      space, decimal digits (the inode), then either the end of the line or
      one space and the rest of the line (leading spaces stripped: the name).
    * Each field line adds to the key of the last header line before it;
      field lines before the first header are ignored. Keys are the bytes of
      ``mapping_key`` decoded as os.fsdecode does (UTF-8, surrogateescape).
    * The result has the keys in order of first appearance, each mapping its
      field names to sums in order of their first appearance under that key.
      A key whose mappings had no field line maps to {}.
    * Errors, first offending line first: OverflowError
      "line N: NAME value exceeds 2**64-1"; SmapsParseError
      "too many distinct fields (> 256)" when the field names across the whole
      input exceed MAX_FIELDS; OverflowError "line N: sum of NAME exceeds
      2**64-1" when one key's sum of a field would exceed 2**64-1.
    """
    text = _as_bytes(data)
    out: dict[bytes, dict[bytes, int]] = {}
    names: set[bytes] = set()
    current: dict[bytes, int] | None = None
    pos = 0
    line = 1
    for start in _line_starts(text):
        line += text.count(b"\n", pos, start)
        pos = start
        header = _HEADER.match(text, start)
        if header is not None:
            device, inode, name = header.group(1), header.group(2), header.group(3) or b""
            current = out.setdefault(mapping_key(device, inode, name), {})
            continue
        if current is None:
            continue
        field = _FIELD.match(text, start)
        if field is None or field.group(1) in _NOT_SUMMABLE_BYTES:
            continue
        fname, digits = field.groups()
        value = int(digits) if len(digits) <= _U64_DIGITS else _long_value(digits)
        if value > U64_MAX:
            raise OverflowError(f"line {line}: {fname.decode()} value exceeds 2**64-1")
        if fname not in names:
            if len(names) >= MAX_FIELDS:
                raise SmapsParseError(f"too many distinct fields (> {MAX_FIELDS})")
            names.add(fname)
        total = current.get(fname, 0) + value
        if total > U64_MAX:
            raise OverflowError(f"line {line}: sum of {fname.decode()} exceeds 2**64-1")
        current[fname] = total
    return {os.fsdecode(k): {n.decode("ascii"): v for n, v in f.items()} for k, f in out.items()}


def _line_starts(text: bytes) -> list[int]:
    """Offsets where each line begins (a final empty line after a trailing newline included)."""
    starts = [0]
    at = text.find(b"\n")
    while at >= 0:
        starts.append(at + 1)
        at = text.find(b"\n", at + 1)
    return starts
