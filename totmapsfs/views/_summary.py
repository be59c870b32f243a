"""MOUNT/summary: one line per process, largest Pss first, padded for people and split by awk into 9 fields."""

from __future__ import annotations

from collections.abc import Sequence

from ._snapshot import Row, by_pss, user_of

# AGE: seconds since the walk behind the row began (the walk duty, engine._cache: an answer can be
# older than --max-age for a process walked too recently, or under the views'
# walk budget). Before COMMAND, which stays last: the one free-text column.
SUMMARY_COLUMNS = ("PID", "USER", "Rss", "Pss", "USS", "Swap", "SwapPss", "AGE", "COMMAND")


def one_word(text: str) -> str:
    """``text`` with no whitespace or control character inside, so that awk sees one column.

    Each such character becomes backslash-octal escapes of its UTF-8 bytes, as
    /proc/<pid>/mountinfo writes a space (``\\040``). The kernel already writes
    a backslash in a process name as ``\\\\``, so the result decodes without
    ambiguity. An empty name becomes ``-``, keeping the column count.
    """
    if not text:
        return "-"
    if text.isascii() and text.isprintable() and " " not in text:
        return text  # the common case, decided in C
    return "".join(
        "".join(f"\\{b:03o}" for b in c.encode("utf-8", "surrogateescape")) if c.isspace() or not c.isprintable() else c
        for c in text
    )


def format_summary(rows: Sequence[Row]) -> bytes:
    """The summary table: a header, then one line per process, largest Pss first.

    Columns are padded to the widest cell so they line up for people, and no
    cell holds whitespace (``one_word``) so that ``awk '{print $4}'`` is Pss;
    COMMAND comes last all the same, the one free-text column.
    """
    table: list[tuple[str, ...]] = [SUMMARY_COLUMNS]
    for r in by_pss(rows):
        f = r.fields
        table.append(
            (
                str(r.pid),
                one_word(user_of(rows, r.uid)),
                str(f.get("Rss", 0)),
                str(r.pss),
                str(r.uss),
                str(f.get("Swap", 0)),
                str(f.get("SwapPss", 0)),
                f"{r.age:.1f}",
                one_word(r.comm),
            )
        )
    widths = [max(map(len, column)) for column in list(zip(*table, strict=True))[:-1]]
    line = "%{}s %-{}s %{}s %{}s %{}s %{}s %{}s %{}s %s\n".format(*widths)
    return "".join([line % cells for cells in table]).encode("utf-8", "surrogateescape")
