"""Independent renderings and readings of the views' text: the Prometheus exposition by prometheus_client itself."""

from __future__ import annotations

from collections.abc import Iterator, Sequence

from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily, Metric
from prometheus_client.exposition import generate_latest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.registry import Collector, CollectorRegistry

from totmapsfs.views import MetricsOptions, Snapshot, families

COUNTERS = {"totmapsfs_walks", "totmapsfs_walk_seconds", "totmapsfs_held_answers"}
COUNTERS |= {"totmapsfs_file_walks", "totmapsfs_file_walk_seconds", "totmapsfs_file_not_due"}


def metrics(text: str) -> dict[str, list]:
    """Family name -> samples, through prometheus_client's own parser (which rejects malformed text)."""
    out = {}
    for family in text_string_to_metric_families(text):
        # Counters are the engine's running totals, named *_total (the walks); the rest are gauges.
        assert family.type == ("counter" if family.name in COUNTERS else "gauge") and family.documentation, family.name
        out[family.name] = family.samples
    return out


class SnapshotCollector(Collector):
    """The daemon's metric families (views.families) as prometheus_client objects."""

    def __init__(self, snapshot: Snapshot, options: MetricsOptions, known: Sequence[str] = ()) -> None:
        self.snapshot = snapshot
        self.options = options
        self.known = known

    def collect(self) -> Iterator[Metric]:
        for fam in families(self.snapshot, self.options, self.known):
            metric: GaugeMetricFamily | CounterMetricFamily
            if fam.kind == "counter":
                metric = CounterMetricFamily(fam.name, fam.help, labels=list(fam.labels))
            else:
                metric = GaugeMetricFamily(fam.name, fam.help, labels=list(fam.labels))
            for labels, value in fam.samples:
                metric.add_metric(list(labels), value)
            yield metric


def render_with_client(snapshot: Snapshot, options: MetricsOptions, known: Sequence[str] = ()) -> bytes:
    """views.render done by prometheus_client.generate_latest: the oracle of the daemon's own renderer."""
    registry = CollectorRegistry(auto_describe=False)
    registry.register(SnapshotCollector(snapshot, options, known))
    return generate_latest(registry)
