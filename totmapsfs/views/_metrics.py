"""MOUNT/metrics: a snapshot as Prometheus gauges in bytes, per cgroup, top processes, programs, users; the walking."""

from __future__ import annotations

import math
import re
from collections.abc import Sequence
from dataclasses import dataclass, field

from ..proc import ancestors
from ._names import entry_name, sums_by
from ._snapshot import Row, Snapshot, WalkStats, by_pss, total, user_of

# What each smaps field means (proc(5), Documentation/filesystems/proc.rst),
# for the HELP lines; a field a newer kernel adds gets a generic line.
FIELD_HELP: dict[str, str] = {
    "Rss": "Resident set size: mapped memory present in RAM",
    "Pss": "Proportional set size: resident memory, each shared page divided by the number of processes "
    "mapping it; additive across processes",
    "Pss_Dirty": "Proportional share of dirty pages",
    "Pss_Anon": "Proportional share of anonymous pages",
    "Pss_File": "Proportional share of file-backed pages",
    "Pss_Shmem": "Proportional share of shared memory (shmem/tmpfs) pages",
    "Shared_Clean": "Clean pages also mapped by other processes",
    "Shared_Dirty": "Dirty pages also mapped by other processes",
    "Private_Clean": "Clean pages mapped by this process only",
    "Private_Dirty": "Dirty pages mapped by this process only",
    "Referenced": "Pages currently marked referenced or accessed",
    "Anonymous": "Pages that belong to no file",
    "KSM": "Pages merged by kernel same-page merging",
    "LazyFree": "Pages marked MADV_FREE, reclaimable without writeback",
    "AnonHugePages": "Anonymous memory backed by transparent huge pages",
    "ShmemPmdMapped": "Shared memory mapped with huge pages",
    "FilePmdMapped": "File memory mapped with huge pages",
    "Shared_Hugetlb": "hugetlbfs pages also mapped by other processes",
    "Private_Hugetlb": "hugetlbfs pages mapped by this process only",
    "Swap": "Anonymous memory swapped out",
    "SwapPss": "Proportional share of swapped-out memory; additive across processes",
    "Locked": "Memory locked in RAM (mlock)",
    "USS": "Unique set size: Private_Clean + Private_Dirty + Private_Hugetlb, what exiting would free",
}
# The field names --metrics-fields accepts: those of every kernel we know of, and USS.
KNOWN_FIELDS: tuple[str, ...] = tuple(FIELD_HELP)
DEFAULT_TOP = 50
DEFAULT_GROUPS = 20


def snake(field: str) -> str:
    """A kernel field name as a metric name part: Pss_Anon -> pss_anon, AnonHugePages -> anon_huge_pages."""
    return re.sub(r"(?<=[a-z0-9])(?=[A-Z])", "_", field).replace("__", "_").lower()


def parse_fields(text: str) -> tuple[str, ...] | None:
    """A comma-separated list of field names (any case, kernel or metric spelling); "all" is None."""
    if text.strip().lower() == "all":
        return None
    by_key = {snake(name): name for name in KNOWN_FIELDS}
    out = []
    for word in filter(None, (w.strip() for w in text.split(","))):
        name = by_key.get(snake(word))
        if name is None:
            raise ValueError(f"unknown field {word!r}; known: all, {', '.join(KNOWN_FIELDS)}")
        out.append(name)
    if not out:
        raise ValueError("no field named")
    return tuple(dict.fromkeys(out))


@dataclass(frozen=True, slots=True)
class MetricsOptions:
    """How much of a snapshot becomes series: the cardinality bounds."""

    top: int = DEFAULT_TOP  # per-process series for this many processes, largest Pss first; 0: none
    cgroup_depth: int | None = None  # deepest cgroup level with series ("/" is 0); None: all levels
    fields: tuple[str, ...] | None = None  # the fields exported; None: all the kernel reports, and USS
    files_top: int = 0  # per-file series for this many mapping keys, largest Pss first; 0: none (no smaps walk)
    groups: int = DEFAULT_GROUPS  # per-program and per-user series for this many of each, largest Pss first

    def __post_init__(self) -> None:
        if min(self.top, self.files_top, self.groups) < 0 or (self.cgroup_depth is not None and self.cgroup_depth < 0):
            raise ValueError("the series bounds (top, files_top, groups, cgroup_depth) must be >= 0")


def _fields_of(rows: Sequence[Row], options: MetricsOptions, known: Sequence[str]) -> list[str]:
    names = list(total(rows[:1], known))  # kernel order; every process reports the same fields
    names.insert(names.index("Private_Hugetlb") + 1 if "Private_Hugetlb" in names else len(names), "USS")
    if options.fields is not None:
        names = [n for n in names if n in options.fields]
    return names


def _bytes(row: Row, name: str) -> float:
    return float((row.uss if name == "USS" else row.fields.get(name, 0)) * 1024)


@dataclass(slots=True)
class Family:
    """One metric family of a snapshot: what both renderings show (text here, prometheus_client objects in tests)."""

    name: str  # without the "_total" a counter's samples get
    help: str
    kind: str  # "gauge" or "counter"
    labels: tuple[str, ...]
    samples: list[tuple[tuple[str, ...], float]] = field(default_factory=list)


def _cgroup_sums(rows: Sequence[Row], depth: int | None) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
    """Sums and process counts per cgroup, each process counted in its cgroup and every ancestor."""
    sums: dict[str, dict[str, int]] = {}
    counts: dict[str, int] = {}
    for row in rows:
        path = row.cgroup
        if path is None or path.startswith("/.."):
            continue  # in no cgroup we mirror (Cgroup2.relative), or outside the caller's namespace root
        uss = row.uss
        for group in ancestors(path)[: None if depth is None else depth + 1]:
            acc = sums.setdefault(group, {})
            for name, value in row.fields.items():
                acc[name] = acc.get(name, 0) + value
            acc["USS"] = acc.get("USS", 0) + uss
            counts[group] = counts.get(group, 0) + 1
    return sums, counts


def families(snapshot: Snapshot, options: MetricsOptions, known: Sequence[str] = ()) -> list[Family]:
    """The series of one snapshot, family by family: the one place that decides them.

    ``known`` are the kernel's fields, so that the families exist even with no process.
    """
    rows = snapshot
    names = _fields_of(rows, options, known)
    top = by_pss(rows)[: options.top]
    sums, counts = _cgroup_sums(rows, options.cgroup_depth)
    groups = sorted(sums)
    out = [
        Family(
            "totmapsfs_processes",
            "Processes whose memory the caller may read and that have an address space",
            "gauge",
            (),
            [((), float(len(rows)))],
        ),
        Family(
            "totmapsfs_processes_left_out",
            "Processes left out of this snapshot's sums: the kernel failed to read them, or another read "
            "of theirs has waited over a second (mmap lock held); the daemon's log names them",
            "gauge",
            (),
            [((), float(snapshot.left_out))],
        ),
        Family(
            "totmapsfs_oldest_answer_seconds",
            "Age of the oldest answer in this snapshot: seconds since its smaps walk began. Above --max-age "
            "only for a process walked too recently for its walk duty, or while the walk budget is spent",
            "gauge",
            (),
            [((), max((r.age for r in rows), default=0.0))],
        ),
        *_walk_families(snapshot.stats),
        Family(
            "totmapsfs_cgroup_processes",
            "Readable processes in the cgroup and its descendants",
            "gauge",
            ("cgroup",),
            [((g,), float(counts[g])) for g in groups],
        ),
    ]
    cgroup_labels = [(g,) for g in groups]
    process_labels = [(str(r.pid), r.comm, user_of(snapshot, r.uid), r.cgroup or "") for r in top]
    if top:
        timings = (
            ("age", "Seconds since the smaps walk behind this process's figures began", [r.age for r in top]),
            ("walk", "Seconds that walk took, its process's mmap lock held meanwhile", [r.walk for r in top]),
        )
        for name, help_text, values in timings:
            out.append(
                Family(
                    f"totmapsfs_process_{name}_seconds",
                    f"{help_text} (the {options.top} processes with the largest Pss)",
                    "gauge",
                    ("pid", "comm", "user", "cgroup"),
                    list(zip(process_labels, values, strict=True)),
                )
            )
    for name in names:
        help_text = FIELD_HELP.get(name, f"smaps field {name}")
        unit = snake(name)
        out.append(
            Family(
                f"totmapsfs_cgroup_{unit}_bytes",
                f"{help_text}; summed over the readable processes of the cgroup and its descendants, in bytes",
                "gauge",
                ("cgroup",),
                [(labels, float(sums[g].get(name, 0) * 1024)) for labels, g in zip(cgroup_labels, groups, strict=True)],
            )
        )
        if top:
            out.append(
                Family(
                    f"totmapsfs_process_{unit}_bytes",
                    f"{help_text}; summed over the process's mappings, in bytes "
                    f"(the {options.top} processes with the largest Pss)",
                    "gauge",
                    ("pid", "comm", "user", "cgroup"),
                    [(labels, _bytes(r, name)) for labels, r in zip(process_labels, top, strict=True)],
                )
            )
    out.extend(_group_families(snapshot, options, names))
    out.extend(snapshot.extra)
    return out


def _group_families(snapshot: Snapshot, options: MetricsOptions, names: Sequence[str]) -> list[Family]:
    """Per program and per user: the ``options.groups`` largest by Pss of each, labelled by name, never by pid.

    Series: (len(names) + 1) * (min(groups, programs) + min(groups, users)).
    """
    if not options.groups:
        return []
    out = []
    kinds = (
        ("program", "running the program (named by its executable)", lambda r: entry_name(r.program)),
        ("user", "of the user", lambda r: entry_name(user_of(snapshot, r.uid))),
    )
    for kind, whose, key in kinds:
        groups = sums_by(snapshot, key)[: options.groups]
        labels = [(g.name,) for g in groups]
        out.append(
            Family(
                f"totmapsfs_{kind}_processes",
                f"Readable processes {whose} (the {options.groups} {kind}s with the largest Pss)",
                "gauge",
                (kind,),
                [(label, float(g.processes)) for label, g in zip(labels, groups, strict=True)],
            )
        )
        for name in names:
            out.append(
                Family(
                    f"totmapsfs_{kind}_{snake(name)}_bytes",
                    f"{FIELD_HELP.get(name, f'smaps field {name}')}; summed over the readable processes {whose}, "
                    f"in bytes (the {options.groups} {kind}s with the largest Pss)",
                    "gauge",
                    (kind,),
                    [
                        (label, float((g.uss if name == "USS" else g.fields.get(name, 0)) * 1024))
                        for label, g in zip(labels, groups, strict=True)
                    ],
                )
            )
    return out


def _walk_families(stats: WalkStats | None) -> list[Family]:
    """The engine's counters: walks and their time, and the answers served older than the process's state."""
    if stats is None:
        return []
    source = ((stats.source,),)
    return [
        Family(
            "totmapsfs_walks",
            "smaps walks (computations of a process's totmaps) since the daemon started",
            "counter",
            ("source",),
            [(source[0], float(stats.walks))],
        ),
        Family(
            "totmapsfs_walk_seconds",
            "Seconds spent walking smaps since the daemon started, each walk holding its process's mmap lock",
            "counter",
            ("source",),
            [(source[0], stats.walk_seconds)],
        ),
        Family(
            "totmapsfs_held_answers",
            "Answers served from an earlier walk although the process had changed or --max-age had passed: "
            "walked too recently for the walk duty (not_due), another reader's walk of it under way "
            "(walk_in_flight), or the views' walk budget spent (budget)",
            "counter",
            ("reason",),
            [
                (("not_due",), float(stats.held_not_due)),
                (("walk_in_flight",), float(stats.held_walk_in_flight)),
                (("budget",), float(stats.held_budget)),
            ],
        ),
    ]


def _float_text(value: float) -> str:
    """A sample value as Go formats it, which is what prometheus_client writes (its utils.floatToGoString).

    Python's repr, except infinities and NaN, and exponent notation from 1e7
    up where Go switches to it sooner than Python does. tests/unit compare the
    whole exposition with prometheus_client's (tests/support/views.py).
    """
    if math.isinf(value):
        return "+Inf" if value > 0 else "-Inf"
    if math.isnan(value):
        return "NaN"
    text = repr(value)
    dot = text.find(".")
    if value > 0 and dot > 6:
        mantissa = f"{text[0]}.{text[1:dot]}{text[dot + 1 :]}".rstrip("0.")
        return f"{mantissa}e+{dot - 1:02d}"
    return text


def _help(text: str) -> str:
    # The text format's escaping of a HELP line.
    return text.replace("\\", r"\\").replace("\n", r"\n")


def _label_value(value: str) -> str:
    # The text format's escaping of a label value (what prometheus_client writes).
    return value.replace("\\", r"\\").replace("\n", r"\n").replace('"', r"\"")


def render(snapshot: Snapshot, options: MetricsOptions, known: Sequence[str] = ()) -> bytes:
    """The Prometheus text exposition (version 0.0.4) of one snapshot, byte for byte what prometheus_client writes.

    Written here rather than by prometheus_client.generate_latest because that
    took 12 ms for the 1,274 lines of a 419-process host (measured), a third
    of a whole metrics read: it escapes every label of every line, where the
    same process's labels recur in each of ~24 families. tests/unit check
    the two renderings are identical (the other: tests/support/views.py).
    """
    lines: list[str] = []
    # Keyed on the label names and values: one process's labels recur in every
    # family that has the same names, and only there.
    formatted: dict[tuple[tuple[str, ...], tuple[str, ...]], str] = {}
    for fam in families(snapshot, options, known):
        name = fam.name + "_total" if fam.kind == "counter" else fam.name
        lines.append(f"# HELP {name} {_help(fam.help)}\n")
        lines.append(f"# TYPE {name} {fam.kind}\n")
        order = sorted(range(len(fam.labels)), key=fam.labels.__getitem__)  # prometheus_client sorts label names
        for labels, value in fam.samples:
            text = formatted.get((fam.labels, labels))
            if text is None:
                pairs = ",".join(f'{fam.labels[i]}="{_label_value(labels[i])}"' for i in order)
                text = formatted[fam.labels, labels] = "{" + pairs + "}" if pairs else ""
            lines.append(f"{name}{text} {_float_text(value)}\n")
    return "".join(lines).encode("utf-8")
