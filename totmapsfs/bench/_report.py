"""The benchmark's output: tables of medians with min–max over runs, the targets, and the optional plot."""

from __future__ import annotations

import statistics
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass

DASH = "\u2013"


def summary(values: Sequence[float]) -> tuple[float, float, float]:
    """(median, min, max) of one figure over repeated runs."""
    return statistics.median(values), min(values), max(values)


def fmt(values: Sequence[float], scale: float = 1.0, digits: int = 2) -> str:
    """``median [min–max]`` of ``values * scale``; a single run prints as just the value."""
    med, lo, hi = summary([v * scale for v in values])
    if len(values) == 1:
        return f"{med:.{digits}f}"
    return f"{med:.{digits}f} [{lo:.{digits}f}{DASH}{hi:.{digits}f}]"


def table(title: str, header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A plain fixed-width table, first column left-aligned, the rest right-aligned."""
    widths = [max(len(str(r[i])) for r in [header, *rows]) for i in range(len(header))]
    lines = [title]
    for n, row in enumerate([header, *rows]):
        cells = [str(c).ljust(widths[i]) if i == 0 else str(c).rjust(widths[i]) for i, c in enumerate(row)]
        lines.append("  " + "  ".join(cells).rstrip())
        if n == 0:
            lines.append("  " + "  ".join("-" * w for w in widths))
    return "\n".join(lines)


@dataclass
class Target:
    """One goal of the issue: a figure per run, a threshold, and which way is good."""

    name: str
    values: list[float]  # per run
    limit: float
    at_most: bool  # True: value <= limit is MET; False: value >= limit is MET
    unit: str = "x"
    note: str = ""

    @property
    def met(self) -> bool:
        med = statistics.median(self.values)
        return med <= self.limit if self.at_most else med >= self.limit

    def row(self) -> list[str]:
        digits = 3 if self.unit == "" else 2
        goal = f"{'<=' if self.at_most else '>='} {self.limit:g}{self.unit}"
        return [
            self.name,
            goal,
            fmt(self.values, digits=digits) + self.unit,
            "MET" if self.met else "MISSED",
            self.note,
        ]


def targets_table(targets: Sequence[Target]) -> str:
    rows = [t.row() for t in targets]
    met = sum(t.met for t in targets)
    return table(
        f"Targets (2000-mapping process; each figure a ratio measured side by side within a run): "
        f"{met}/{len(targets)} met",
        ["target", "goal", "measured", "verdict", "note"],
        rows,
    )


def ratios(num: Sequence[float], den: Sequence[float]) -> list[float]:
    """Per-run ratios of two figures measured side by side in the same runs."""
    return [a / b for a, b in zip(num, den, strict=True)]


def plot(
    path: str,
    mapping_counts: Sequence[int],
    latency: Mapping[str, Sequence[float]],
    cat: Mapping[str, Sequence[float]],
    readers: Sequence[int],
    tput: Mapping[str, Sequence[float]],
    log: Callable[[str], None],
) -> None:
    """Scaling curves as a PNG, if matplotlib is installed (pip install 'totmapsfs[plot]')."""
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
        from matplotlib.ticker import NullLocator
    except ImportError:
        log("plot: matplotlib not installed, skipped (pip install 'totmapsfs[plot]')")
        return
    fig, axes = plt.subplots(1, 3, figsize=(17, 5.5))
    for ax, data, title, ylabel in (
        (axes[0], latency, "in-process open/read/close", "median latency (ms)"),
        (axes[1], cat, "whole process (cat / awk)", "median time (ms)"),
    ):
        for name, ys in data.items():
            ax.plot(mapping_counts, [y * 1e3 for y in ys], marker="o", label=name)
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.xaxis.set_minor_locator(NullLocator())
        ax.set_xticks(list(mapping_counts))
        ax.set_xticklabels([str(m) for m in mapping_counts])
        ax.set_xlabel("mappings in the target process (4 pages each)")
        ax.set_ylabel(ylabel)
        ax.set_title(title)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=8)
    ax = axes[2]
    for name, ys in tput.items():
        ax.plot(readers, ys, marker="o", label=name)
    ax.set_xscale("log", base=2)
    ax.xaxis.set_minor_locator(NullLocator())
    ax.set_xticks(list(readers))
    ax.set_xticklabels([str(r) for r in readers])
    ax.set_xlabel("concurrent reader threads (each on its own 2000-mapping pid)")
    ax.set_ylabel("reads per second (median)")
    ax.set_yscale("log")
    ax.set_title("concurrent readers")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)
    log(f"plot: wrote {path}")
