"""MOUNT/metrics: a snapshot as Prometheus gauges in bytes, per cgroup and for the top processes."""

from __future__ import annotations

import re
from collections.abc import Iterator, Sequence
from dataclasses import dataclass

from prometheus_client.core import GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.registry import Collector, CollectorRegistry

from ..proc import ancestors
from ._snapshot import Row, Snapshot, by_pss, total, user_name

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

    def __post_init__(self) -> None:
        if self.top < 0 or (self.cgroup_depth is not None and self.cgroup_depth < 0):
            raise ValueError("top and cgroup_depth must be >= 0")


def _fields_of(rows: Sequence[Row], options: MetricsOptions, known: Sequence[str]) -> list[str]:
    names = list(total(rows[:1], known))  # kernel order; every process reports the same fields
    names.insert(names.index("Private_Hugetlb") + 1 if "Private_Hugetlb" in names else len(names), "USS")
    if options.fields is not None:
        names = [n for n in names if n in options.fields]
    return names


def _bytes(row: Row, name: str) -> float:
    return float((row.uss if name == "USS" else row.fields.get(name, 0)) * 1024)


class SnapshotCollector(Collector):
    """A prometheus_client collector over one snapshot: each read of the file makes a new one."""

    def __init__(self, snapshot: Snapshot, options: MetricsOptions, names: Sequence[str] = ()) -> None:
        self.rows = snapshot
        self.options = options
        self.names = names  # the kernel's fields, so that families exist even with no process
        self.left_out = snapshot.left_out

    def _cgroups(self) -> tuple[dict[str, dict[str, int]], dict[str, int]]:
        """Sums and process counts per cgroup, each process counted in its cgroup and every ancestor."""
        depth = self.options.cgroup_depth
        sums: dict[str, dict[str, int]] = {}
        counts: dict[str, int] = {}
        for row in self.rows:
            path = row.cgroup
            if path is None:
                continue  # in no cgroup we mirror (Cgroup2.relative)
            uss = row.uss
            for group in ancestors(path)[: None if depth is None else depth + 1]:
                acc = sums.setdefault(group, {})
                for name, value in row.fields.items():
                    acc[name] = acc.get(name, 0) + value
                acc["USS"] = acc.get("USS", 0) + uss
                counts[group] = counts.get(group, 0) + 1
        return sums, counts

    def collect(self) -> Iterator[Metric]:
        rows, options = self.rows, self.options
        names = _fields_of(rows, options, self.names)
        top = by_pss(rows)[: options.top]
        sums, counts = self._cgroups()
        groups = sorted(sums)
        yield GaugeMetricFamily(
            "totmapsfs_processes",
            "Processes whose memory the caller may read and that have an address space",
            value=len(rows),
        )
        yield GaugeMetricFamily(
            "totmapsfs_processes_left_out",
            "Processes left out of this snapshot's sums: the kernel failed to read them, or another read "
            "of theirs has waited over a second (mmap lock held); the daemon's log names them",
            value=self.left_out,
        )
        counted = GaugeMetricFamily(
            "totmapsfs_cgroup_processes", "Readable processes in the cgroup and its descendants", labels=["cgroup"]
        )
        for group in groups:
            counted.add_metric([group], counts[group])
        yield counted
        for name in names:
            help_text = FIELD_HELP.get(name, f"smaps field {name}")
            unit = snake(name)
            fam = GaugeMetricFamily(
                f"totmapsfs_cgroup_{unit}_bytes",
                f"{help_text}; summed over the readable processes of the cgroup and its descendants, in bytes",
                labels=["cgroup"],
            )
            for group in groups:
                fam.add_metric([group], float(sums[group].get(name, 0) * 1024))
            yield fam
            if not top:
                continue
            fam = GaugeMetricFamily(
                f"totmapsfs_process_{unit}_bytes",
                f"{help_text}; summed over the process's mappings, in bytes "
                f"(the {options.top} processes with the largest Pss)",
                labels=["pid", "comm", "user", "cgroup"],
            )
            for row in top:
                fam.add_metric([str(row.pid), row.comm, user_name(row.uid), row.cgroup or ""], _bytes(row, name))
            yield fam


def render(snapshot: Snapshot, options: MetricsOptions, names: Sequence[str] = ()) -> bytes:
    """The Prometheus text exposition (version 0.0.4) of one snapshot."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, options, names))
    return generate_latest(registry)
