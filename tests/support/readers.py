"""Other programs' readers of totmaps, restated by their parsing rules: what they would take from the mount's files.

Chromium's ProcessMetrics::GetWorkingSetKBytesTotmaps
(base/process/process_metrics_linux.cc, 2013-2017) splits the whole file at
whitespace and takes tokens by position: 3*line+1, with a DCHECK that token
3*line is the field's name. ChromeOS's later reader (platform2
metrics/process_meter.cc) takes Pss, Pss_Anon, Pss_File, Pss_Shmem and Swap
matched by name, in that order, from lines of three tokens (name:, value, kB);
its source is not in the references the suite was written from: these are its
rules as the design states them.
"""

from __future__ import annotations

CHROMIUM_LINES = {"Pss": 1, "Private_Clean": 4, "Private_Dirty": 5, "Swap": 9}
PROCESS_METER_FIELDS = ("Pss", "Pss_Anon", "Pss_File", "Pss_Shmem", "Swap")


class ReaderError(Exception):
    """The reader would have refused the file (a failed DCHECK, a missing field)."""


def chromium_totmaps(text: str, dcheck: bool = True) -> dict[str, int]:
    """Pss, Private_Clean, Private_Dirty and Swap as Chromium's positional reader takes them.

    ``dcheck``: as a debug build, which checks each name; a release build takes the numbers whatever they are.
    """
    tokens = text.split()  # SplitStringAlongWhitespace
    out = {}
    for name, line in CHROMIUM_LINES.items():
        index = line * 3 + 1
        if index >= len(tokens):
            raise ReaderError(f"only {len(tokens)} tokens")
        if dcheck and tokens[index - 1] != name + ":":  # DCHECK_EQ("Pss:", totmaps_fields[kPssIndex - 1]) ...
            raise ReaderError(f"token {index - 1} is {tokens[index - 1]!r}, not {name}:")
        out[name] = int(tokens[index])  # StringToInt
    return out


def process_meter(text: str) -> dict[str, int]:
    """The five fields as ChromeOS's process meter takes them: by name, in order, from three-token lines."""
    out: dict[str, int] = {}
    wanted = iter(PROCESS_METER_FIELDS)
    name = next(wanted)
    for line in text.splitlines():
        tokens = line.split()
        if len(tokens) != 3 or tokens[0] != name + ":":
            continue
        if tokens[2] != "kB":
            raise ReaderError(f"line {line!r}: no kB")
        out[name] = int(tokens[1])
        name = next(wanted, "")
        if not name:
            return out
    raise ReaderError(f"{name} not found after {list(out)}")
