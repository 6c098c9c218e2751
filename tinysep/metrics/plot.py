"""Bar chart of SDR / SIR / SAR means per method and source, saved as PNG (Agg backend)."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from tinysep.metrics.bss import METRIC_LIMIT_DB
from tinysep.metrics.table import short_labels, table_sources

PLOT_METRICS = ("sdr", "sir", "sar")


def plot_summary(summaries: Mapping[str, Mapping], path: str | Path, title: str = "") -> Path:
    """One panel per source, grouped bars (SDR, SIR, SAR mean) per method; returns the path."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    import numpy as np

    methods = list(summaries)
    labels = short_labels(methods)  # model:/long/path/run -> model:run
    sources = table_sources(summaries)
    fig, axes = plt.subplots(1, len(sources), figsize=(5 + 1.2 * len(methods), 4.2),
                             sharey=True, squeeze=False)
    x = np.arange(len(methods))
    width = 0.8 / len(PLOT_METRICS)
    values = {
        (source, metric, m): summaries[m]["sources"].get(source, {}).get(metric, {}).get("mean")
        for source in sources for metric in PLOT_METRICS for m in methods
    }
    # Values at the metric limit (e.g. the SAR of the mixture, infinite in theory) would
    # flatten every other bar: the axis stops above the largest ordinary value instead.
    ordinary = [v for v in values.values() if v is not None and abs(v) < METRIC_LIMIT_DB - 1e-3]
    top = max(ordinary + [0.0]) + 3.0
    bottom = min(ordinary + [0.0]) - 1.0
    for ax, source in zip(axes[0], sources, strict=True):
        for k, metric in enumerate(PLOT_METRICS):
            heights = [values[source, metric, m] for m in methods]
            offsets = x + (k - 1) * width
            ax.bar(offsets, [np.nan if v is None else v for v in heights], width,
                   label=metric.upper(), color=f"C{k}")
            for xpos, v in zip(offsets, heights, strict=True):
                if v is not None and v >= METRIC_LIMIT_DB - 1e-3:
                    ax.text(xpos, top, "limit", rotation=90, ha="center", va="top",
                            fontsize="x-small")
        ax.set_ylim(bottom, top)
        ax.axhline(0.0, color="black", linewidth=0.6)
        ax.set_xticks(x, [labels[m] for m in methods], rotation=30, ha="right")
        ax.set_title(source)
        ax.grid(axis="y", alpha=0.3)
    axes[0][0].set_ylabel("mean over clips (dB)")
    handles, labels = axes[0][0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="upper right", ncol=len(PLOT_METRICS), fontsize="small")
    if title:
        fig.suptitle(title, x=0.02, ha="left")
    fig.tight_layout(rect=(0, 0, 1, 0.93))
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
