"""Independent readings of the views' text: the Prometheus exposition through prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

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
