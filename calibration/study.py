"""Calibration-size study: how many frames does int8 calibration need?

One large representative set is recorded once; for each size, several random subsets of
whole invokes calibrate an int8 model each, and each model's SDR on held-out clips is
compared with the float model's (same clips). The spread over seeds shows how much the
choice of calibration frames matters at that size.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np


def calibration_size_study(
    model,
    calibration_clips: Sequence,
    eval_clips: Sequence,
    sizes: Sequence[int] = (16, 64, 256, 1024),
    seeds: Sequence[int] = (0, 1, 2),
    frames_per_invoke: int = 1,
    progress: bool = False,
) -> dict:
    """Rows ``{"frames", "seed", "sources": {source: {"sdr", "delta_db", ...}}}`` and a
    per-size summary (mean and spread of the SDR delta over seeds)."""
    from calibration.representative import build_representative_set
    from convert.quality import float_records, quantized_records, sdr_delta
    from convert.quantize import quantize_stream
    from tinysep.data.clip import SOURCES
    from tinysep.models import make_streaming_model

    sizes = sorted({int(s) for s in sizes})
    if not sizes or sizes[0] < 1:
        raise ValueError(f"calibration sizes must be positive frame counts, got {sizes}")
    stream = make_streaming_model(model, frames_per_invoke)
    full = build_representative_set(stream, list(calibration_clips), sizes[-1],
                                    progress=progress)
    reference = float_records(model, eval_clips, progress)
    rows = []
    for frames in sizes:
        for seed in seeds:
            subset = full.subset(frames, seed)
            quantized = quantize_stream(stream, "int8", subset)
            delta = sdr_delta(reference, quantized_records(quantized, stream, eval_clips))
            rows.append({"frames": subset.frames, "requested_frames": frames, "seed": seed,
                         "sources": delta})
    summary = []
    for frames in sizes:
        cells = [r for r in rows if r["requested_frames"] == frames]
        entry = {"frames": frames}
        for source in SOURCES:
            deltas = [c["sources"][source]["delta_db"] for c in cells
                      if c["sources"][source]["delta_db"] is not None]
            entry[source] = {"delta_db_mean": float(np.mean(deltas)) if deltas else None,
                             "delta_db_std": float(np.std(deltas)) if deltas else None}
        summary.append(entry)
    return {"sizes": sizes, "seeds": list(seeds), "frames_per_invoke": frames_per_invoke,
            "eval_clips": len(eval_clips), "rows": rows, "summary": summary,
            "coverage": full.coverage}


def plot_study(study: dict, path: str | Path) -> Path:
    """SDR delta (int8 - float) against calibration frames, mean and spread per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinysep.data.clip import SOURCES

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for source in SOURCES:
        xs = [s["frames"] for s in study["summary"] if s[source]["delta_db_mean"] is not None]
        ys = [s[source]["delta_db_mean"] for s in study["summary"]
              if s[source]["delta_db_mean"] is not None]
        err = [s[source]["delta_db_std"] for s in study["summary"]
               if s[source]["delta_db_mean"] is not None]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=source)
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calibration frames")
    ax.set_ylabel("SDR int8 - float (dB)")
    ax.set_title(f"calibration size study ({len(study['seeds'])} seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
