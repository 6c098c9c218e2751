"""Calibration studies: how many frames, and at which levels, does int8 calibration need?

Size study: one large representative set is recorded once; for each size, several random
subsets of whole invokes calibrate an int8 model each, and each model's SDR on held-out
clips is compared with the float model's (same clips). The spread over seeds shows how
much the choice of calibration frames matters at that size.

Level study: representative sets of one size whose segments are replayed at different
sets of gains calibrate an int8 model each; held-out clips are played back at several
levels and each int8 model is compared with the float model at the same level.
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
    """Rows ``{"frames", "seed", "sources": {source: {"sdr", "drop_db", ...}}}`` and a
    per-size summary (mean and spread of the SDR drop, float - int8, over seeds)."""
    from calibration.representative import build_representative_set
    from convert.quality import float_records, quantized_records, record_sources, sdr_delta
    from convert.quantize import quantize_stream
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
        for source in record_sources(reference):
            deltas = [c["sources"][source]["drop_db"] for c in cells
                      if c["sources"][source]["drop_db"] is not None]
            entry[source] = {"drop_db_mean": float(np.mean(deltas)) if deltas else None,
                             "drop_db_std": float(np.std(deltas)) if deltas else None}
        summary.append(entry)
    return {"sizes": sizes, "seeds": list(seeds), "frames_per_invoke": frames_per_invoke,
            "eval_clips": len(eval_clips), "sources": record_sources(reference), "rows": rows,
            "summary": summary, "coverage": full.coverage}


def plot_study(study: dict, path: str | Path) -> Path:
    """SDR drop (float - int8) against calibration frames, mean and spread per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinysep.data.clip import SOURCES

    path = Path(path)
    fig, ax = plt.subplots(figsize=(6, 4))
    for source in study.get("sources", SOURCES):
        xs = [s["frames"] for s in study["summary"] if s[source]["drop_db_mean"] is not None]
        ys = [s[source]["drop_db_mean"] for s in study["summary"]
              if s[source]["drop_db_mean"] is not None]
        err = [s[source]["drop_db_std"] for s in study["summary"]
               if s[source]["drop_db_mean"] is not None]
        ax.errorbar(xs, ys, yerr=err, marker="o", capsize=3, label=source)
    ax.axhline(0.0, color="k", linewidth=0.8)
    ax.set_xscale("log", base=2)
    ax.set_xlabel("calibration frames")
    ax.set_ylabel("SDR drop, float - int8 (dB)")
    ax.set_title(f"calibration size study ({len(study['seeds'])} seeds)")
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


DEFAULT_STUDY_GAIN_SETS = ((0.0,), (0.0, -30.0), (0.0, -20.0, -40.0))
DEFAULT_PLAYBACK_DB = (0.0, -30.0)


def attenuated(clip, gain_db: float):
    """``clip`` played back ``gain_db`` dB louder (negative: quieter): mixture and every
    reference (stems included) scaled alike, so SDR against the references stays
    meaningful."""
    import dataclasses

    from tinysep.data.clip import SOURCES

    if gain_db == 0:
        return clip
    scale = np.float32(10.0 ** (float(gain_db) / 20.0))
    scaled = {name: np.asarray(getattr(clip, name), np.float32) * scale
              for name in ("mixture", *SOURCES)}
    scaled["stems"] = {name: np.asarray(stem, np.float32) * scale
                       for name, stem in clip.stems.items()}
    return dataclasses.replace(clip, **scaled)


def _gains_label(gains: Sequence[float]) -> str:
    return ",".join(f"{g:g}" for g in gains)


def calibration_level_study(
    model,
    calibration_clips: Sequence,
    eval_clips: Sequence,
    gain_sets: Sequence[Sequence[float]] = DEFAULT_STUDY_GAIN_SETS,
    playback_db: Sequence[float] = DEFAULT_PLAYBACK_DB,
    frames: int | None = None,
    seeds: Sequence[int] = (0,),
    frames_per_invoke: int = 1,
    progress: bool = False,
) -> dict:
    """Which calibration levels give the best int8 model across playback levels?

    For each set of calibration gains (``build_representative_set(gains_db=...)``, always
    ``frames`` frames in all, by default the representative set's default) and each seed,
    one int8 model is calibrated; it and the float model separate the held-out clips played
    back at each level of ``playback_db``, and the SDR drop (float - int8, same clips at
    the same level) is recorded per source. Rows
    ``{"gains_db", "seed", "playback_db", "coverage", "sources"}`` and a summary per
    (gains, playback): mean and spread over seeds.
    """
    from calibration.representative import (
        DEFAULT_FRAMES,
        build_representative_set,
        check_gains,
    )
    from convert.quality import float_records, quantized_records, record_sources, sdr_delta
    from convert.quantize import quantize_stream
    from tinysep.models import make_streaming_model

    gain_sets = [check_gains(g) for g in gain_sets]
    if not gain_sets:
        raise ValueError("the level study needs at least one set of calibration gains")
    levels = [float(p) for p in playback_db]
    if not levels or len(set(levels)) != len(levels):
        raise ValueError(f"playback levels must be distinct dB values, got {list(playback_db)}")
    if not eval_clips:
        raise ValueError("the level study needs held-out clips to score")
    frames = DEFAULT_FRAMES if frames is None else int(frames)
    stream = make_streaming_model(model, frames_per_invoke)
    played = {p: [attenuated(c, p) for c in eval_clips] for p in levels}
    reference = {p: float_records(model, played[p], progress) for p in levels}
    rows = []
    for gains in gain_sets:
        for seed in seeds:
            rep = build_representative_set(stream, list(calibration_clips), frames,
                                           gains_db=gains, seed=seed, progress=progress)
            quantized = quantize_stream(stream, "int8", rep)
            for p in levels:
                delta = sdr_delta(reference[p],
                                  quantized_records(quantized, stream, played[p], progress))
                rows.append({"gains_db": list(gains), "seed": seed, "playback_db": p,
                             "frames": rep.frames, "coverage": dict(rep.coverage["frames"]),
                             "sources": delta})
    summary = []
    for gains in gain_sets:
        for p in levels:
            cells = [r for r in rows if r["gains_db"] == list(gains) and r["playback_db"] == p]
            entry = {"gains_db": list(gains), "playback_db": p,
                     "coverage": {level: round(float(np.mean([c["coverage"][level]
                                                              for c in cells])))
                                  for level in cells[0]["coverage"]}}
            for source in record_sources(reference[levels[0]]):
                got = [c["sources"][source] for c in cells
                       if c["sources"][source]["drop_db"] is not None]
                deltas = [g["drop_db"] for g in got]
                entry[source] = {
                    "sdr_float": got[0]["sdr_reference"] if got else None,
                    "sdr_int8": float(np.mean([g["sdr"] for g in got])) if got else None,
                    "drop_db_mean": float(np.mean(deltas)) if deltas else None,
                    "drop_db_std": float(np.std(deltas)) if deltas else None,
                }
            summary.append(entry)
    return {"gain_sets": [list(g) for g in gain_sets], "playback_db": levels, "frames": frames,
            "seeds": list(seeds), "frames_per_invoke": frames_per_invoke,
            "eval_clips": len(eval_clips), "eval_clip_names": [c.name for c in eval_clips],
            "sources": record_sources(reference[levels[0]]), "rows": rows, "summary": summary}


def format_level_table(study: dict) -> str:
    """Markdown table of the level study: SDR float / int8 / drop per source, per
    calibration gains and playback level (mean over seeds, +- spread when several)."""
    from tinysep.data.clip import SOURCES

    several = len(study["seeds"]) > 1
    sources = study.get("sources", SOURCES)
    head = ["calibration gains (dB)", "playback (dB)", "frames loud / quiet / silent"]
    for source in sources:
        head += [f"{source} float", f"{source} int8", f"{source} drop"]
    lines = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    for entry in study["summary"]:
        cov = entry["coverage"]
        cells = [_gains_label(entry["gains_db"]), f"{entry['playback_db']:g}",
                 f"{cov['loud']} / {cov['quiet']} / {cov['silent']}"]
        for source in sources:
            row = entry[source]
            if row["drop_db_mean"] is None:
                cells += ["-", "-", "-"]
                continue
            delta = f"{row['drop_db_mean']:+.3f}"
            if several:
                delta += f" +- {row['drop_db_std']:.3f}"
            cells += [f"{row['sdr_float']:.2f}", f"{row['sdr_int8']:.2f}", delta]
        lines.append("| " + " | ".join(cells) + " |")
    seeds = (f"{len(study['seeds'])} calibration seeds (mean +- std; frame counts are "
             "means)" if several else "1 calibration seed")
    lines.append("")
    lines.append(f"SDR in dB, mean over {study['eval_clips']} held-out clips; drop = float - "
                 f"int8 on the same clips at the same playback level; {study['frames']} "
                 f"calibration frames, {seeds}.")
    return "\n".join(lines) + "\n"


def plot_level_study(study: dict, path: str | Path) -> Path:
    """SDR drop (float - int8) per playback level, one bar per set of calibration gains,
    one panel per source."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from tinysep.data.clip import SOURCES

    path = Path(path)
    levels = study["playback_db"]
    sets = study["gain_sets"]
    width = 0.8 / max(1, len(sets))
    sources = study.get("sources", SOURCES)
    fig, axes = plt.subplots(1, len(sources), figsize=(5 * len(sources), 4), sharey=True)
    for ax, source in zip(np.atleast_1d(axes), sources, strict=True):
        for i, gains in enumerate(sets):
            entries = [next(e for e in study["summary"]
                            if e["gains_db"] == gains and e["playback_db"] == p) for p in levels]
            ys = [np.nan if e[source]["drop_db_mean"] is None else e[source]["drop_db_mean"]
                  for e in entries]
            err = [0.0 if e[source]["drop_db_std"] is None else e[source]["drop_db_std"]
                   for e in entries]
            xs = np.arange(len(levels)) + (i - (len(sets) - 1) / 2) * width
            ax.bar(xs, ys, width, yerr=err, capsize=3, label=f"gains {_gains_label(gains)} dB")
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_xticks(np.arange(len(levels)), [f"{p:g} dB" for p in levels])
        ax.set_xlabel("playback level")
        ax.set_title(source)
    np.atleast_1d(axes)[0].set_ylabel("SDR drop, float - int8 (dB)")
    np.atleast_1d(axes)[0].legend(fontsize=8)
    fig.suptitle(f"calibration level study ({study['frames']} frames, "
                 f"{len(study['seeds'])} seed(s))")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path
