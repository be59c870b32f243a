"""MOUNT/files and MOUNT/<pid>/files: memory per mapped file (or kind of anonymous memory), largest Pss first."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field

from ..engine import FILE_SUMS, Checked, FileWalks
from ..proc import Caller
from ._metrics import Family
from ._snapshot import Row, Snapshot
from ._summary import one_word
from ._views import PATIENCE, Plan, Views

FILES_COLUMNS = ("PROCS", "Rss", "Pss", "USS", "Swap", "SwapPss", "AGE", "PATH")


@dataclass(slots=True)
class FileLine:
    """One mapping key summed over the processes that map it (kB); ``age``: its oldest part's."""

    key: str
    processes: int = 0
    sums: dict[str, int] = field(default_factory=lambda: dict.fromkeys(FILE_SUMS, 0))
    age: float = 0.0


def by_key(rows: Iterable[Row]) -> list[FileLine]:
    """Every key of the rows' mappings, summed across processes, largest Pss first (key breaks ties)."""
    lines: dict[str, FileLine] = {}
    for row in rows:
        for key, values in (row.mappings or {}).items():
            line = lines.get(key)
            if line is None:
                line = lines[key] = FileLine(key)
            line.processes += 1
            line.age = max(line.age, row.age)
            sums = line.sums
            for name, value in zip(FILE_SUMS, values, strict=True):
                sums[name] += value
    return sorted(lines.values(), key=lambda line: (-line.sums["Pss"], line.key))


def format_files(rows: Snapshot) -> bytes:
    """The files table, padded like summary's: PATH last, escaped as summary escapes COMMAND (``one_word``).

    A last line beginning with ``#`` says how many processes are missing from
    the sums, and why, when any are (awk: ``!/^#/``).
    """
    table: list[tuple[str, ...]] = [FILES_COLUMNS]
    for line in by_key(rows):
        s = line.sums
        cells = (str(line.processes), str(s["Rss"]), str(s["Pss"]), str(s["USS"]), str(s["Swap"]), str(s["SwapPss"]))
        table.append((*cells, f"{line.age:.1f}", one_word(line.key)))
    widths = [max(map(len, column)) for column in list(zip(*table, strict=True))[:-1]]
    template = " ".join(f"%{w}s" for w in widths) + " %s\n"
    text = "".join(template % cells for cells in table)
    if rows.not_due or rows.left_out:
        text += (
            f"# not counted: {rows.not_due} processes walked too recently for their walk duty, "
            f"{rows.left_out} left out (unreadable or busy)\n"
        )
    return text.encode("utf-8", "surrogateescape")


class FileViews:
    """The files views over a Views: one more kind of walk (FileWalks), the same pass, access rule and budget."""

    def __init__(self, views: Views) -> None:
        self.views = views
        self.walks = FileWalks(views.engine)

    def files(self, caller: Caller | None) -> Plan[Snapshot, bytes]:
        """MOUNT/files: every process the caller may read, by mapping key."""
        self.walks.cache.forget_dead(self.views.engine.reader.pids())  # the pid directories' listing does the same
        return self.views.plan(caller, format_files, resolve=functools.partial(self.walks.resolve, strict=True))

    def pid_files(self, checked: Checked) -> Plan[bytes, bytes]:
        """MOUNT/<pid>/files of a process checked (access included) for the caller."""
        return Plan([functools.partial(self._one, checked)], _first)

    def _one(self, checked: Checked) -> bytes:
        with checked.proc:
            mapped = self.walks.resolve(checked, patience=PATIENCE)
            age = max(0.0, self.views.engine.clock() - mapped.at)
        status = checked.status
        row = Row(checked.proc.pid, status.uids[1], status.name, None, mapped.fields, age, mapped.walk, mapped.by_key)
        return format_files(Snapshot([row]))


def files_families(rows: Iterable[Row], top: int) -> list[Family]:
    """Series for the ``top`` mapping keys of largest Pss: 4 families of ``top`` series each (label ``path``)."""
    lines = by_key(rows)[:top]
    labels: list[tuple[str, ...]] = [(line.key,) for line in lines]
    out = []
    for name, what, values in (
        ("pss_bytes", "Pss", [line.sums["Pss"] * 1024 for line in lines]),
        ("rss_bytes", "Rss", [line.sums["Rss"] * 1024 for line in lines]),
        ("uss_bytes", "USS (Private_*)", [line.sums["USS"] * 1024 for line in lines]),
        ("processes", "Processes mapping it", [line.processes for line in lines]),
    ):
        help_text = f"{what} of a mapped file or kind of anonymous memory over the readable processes (the {top} "
        help_text += "largest by Pss, as MOUNTPOINT/files)"
        samples = [(label, float(value)) for label, value in zip(labels, values, strict=True)]
        out.append(Family(f"totmapsfs_file_{name}", help_text, "gauge", ("path",), samples))
    return out


def walk_families(walks: FileWalks, rows: Snapshot) -> list[Family]:
    """FileWalks' counters, as the engine's are shown (only to readers in our namespaces: ``rows.stats``)."""
    if rows.stats is None:
        return []
    c = walks.cache.counters
    return [
        Family(
            "totmapsfs_file_walks",
            "smaps walks per mapping (files) since the daemon started",
            "counter",
            (),
            [((), float(c.walks))],
        ),
        Family(
            "totmapsfs_file_walk_seconds",
            "Seconds spent in those walks, each holding its process's mmap lock (from the views' walk budget)",
            "counter",
            (),
            [((), c.walk_seconds)],
        ),
        Family(
            "totmapsfs_file_not_due",
            "Processes left out of a files read: walked too recently for their walk duty, no files answer yet",
            "counter",
            (),
            [((), float(walks.not_due))],
        ),
    ]


def _first(parts: Sequence[bytes]) -> bytes:
    return parts[0]


def files_of(rows: Iterable[Row]) -> Mapping[str, FileLine]:
    """The lines by key (for the Python API and the tests)."""
    return {line.key: line for line in by_key(rows)}
