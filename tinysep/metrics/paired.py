"""How sure a difference between two methods is: the mean of their per-clip differences on
the clips both scored, and a 95 % interval from resampling songs.

Clips cut from one song share its voice, band and production, so they do not vary
independently: the interval resamples whole songs (with replacement), not clips, and is
as wide as the songs make it. A clip record names its song (``tinysep eval`` and ``tinysep
hil`` write it); a record without one counts as a song of its own.
"""

from __future__ import annotations

import math
from collections.abc import Mapping, Sequence

import numpy as np

from tinysep.data.clip import SOURCES

RESAMPLES = 2000  # song resamplings behind each interval
INTERVAL = 0.95  # the share of resampled means an interval holds
INTERVAL_SEED = 0  # intervals are reproducible: the same report gives the same bounds


def clip_value(clip: Mapping, method: str, source: str, metric: str = "sdr") -> float | None:
    """``method``'s ``metric`` for ``source`` on one clip record of a report (None when the
    method failed there or the value was not scored, e.g. a silent reference)."""
    entry = clip.get("methods", {}).get(method) or {}
    value = entry.get("sources", {}).get(source, {}).get(metric)
    if not isinstance(value, (int, float)) or isinstance(value, bool) or not math.isfinite(value):
        return None
    return float(value)


def clip_song(clip: Mapping) -> str:
    """The song a clip record belongs to (its own name when the record names none)."""
    return clip.get("song") or clip["name"]


def paired_difference(clips: Sequence[Mapping], a: str, b: str, source: str,
                      metric: str = "sdr", resamples: int = RESAMPLES,
                      seed: int = INTERVAL_SEED) -> dict | None:
    """``a`` minus ``b`` on ``source`` over the clips both scored: ``{"mean", "low", "high",
    "clips", "songs"}`` (:func:`mean_interval` over the records' songs); None when no clip
    holds both."""
    differences = []
    for clip in clips:
        first, second = clip_value(clip, a, source, metric), clip_value(clip, b, source, metric)
        if first is not None and second is not None:
            differences.append((clip_song(clip), first - second))
    return mean_interval(differences, resamples, seed)


def mean_interval(values: Sequence[tuple[str, float]], resamples: int = RESAMPLES,
                  seed: int = INTERVAL_SEED) -> dict | None:
    """The mean of per-clip ``(song, value)`` pairs and a :data:`INTERVAL` interval from
    ``resamples`` draws of whole songs: ``{"mean", "low", "high", "clips", "songs"}``, the
    bounds None with fewer than two songs; None without a value."""
    totals: dict[str, list[float]] = {}
    for song, value in values:
        totals.setdefault(song, []).append(float(value))
    if not totals:
        return None
    sums = np.array([sum(d) for d in totals.values()])
    counts = np.array([len(d) for d in totals.values()])
    result = {"mean": float(sums.sum() / counts.sum()), "low": None, "high": None,
              "clips": int(counts.sum()), "songs": len(totals)}
    if len(totals) < 2:
        return result
    rng = np.random.default_rng(seed)
    picks = rng.integers(0, len(totals), size=(resamples, len(totals)))
    means = sums[picks].sum(axis=1) / counts[picks].sum(axis=1)
    tail = (1.0 - INTERVAL) / 2
    result["low"], result["high"] = (float(q) for q in np.quantile(means, [tail, 1.0 - tail]))
    return result


def paired_rows(report: Mapping, reference: str, sources: Sequence[str] = SOURCES,
                metric: str = "sdr") -> list[dict]:
    """``reference`` against every other method of ``report``: one row per method with, per
    source, :func:`paired_difference` (``reference`` minus that method)."""
    clips = [c for c in report["clips"] if "error" not in c]
    rows = []
    for method in report["methods"]:
        if method == reference:
            continue
        rows.append({"method": method, "sources": {
            source: paired_difference(clips, reference, method, source, metric)
            for source in sources}})
    return rows


def format_bounds(interval: Mapping | None, digits: int = 2) -> str:
    """``[+0.05, +0.20]``: an interval's bounds ("" without them: no value, or one song)."""
    if not interval or interval.get("low") is None:
        return ""
    return f"[{interval['low']:+.{digits}f}, {interval['high']:+.{digits}f}]"


def format_interval(difference: Mapping | None) -> str:
    """``+0.12 [+0.05, +0.20]``: a mean difference and its interval ("n/a" without one)."""
    if difference is None:
        return "n/a"
    return f"{difference['mean']:+.2f} {format_bounds(difference) or '[one song]'}"


def format_paired_table(rows: Sequence[Mapping], reference: str,
                        sources: Sequence[str] = SOURCES) -> str:
    """The rows of :func:`paired_rows` as a fixed-width table."""
    width = max([12, *(len(row["method"]) for row in rows)]) + 2
    percent = f"{INTERVAL * 100:g} %"
    lines = [f"paired: {reference} minus each method, SDR mean over the clips both scored "
             f"[{percent} interval over songs]",
             f"{'method':<{width}}" + "".join(f"{source:<28}" for source in sources)
             + "clips / songs"]
    for row in rows:
        cells = [row["sources"].get(source) for source in sources]
        counted = next((c for c in cells if c is not None), None)
        lines.append(f"{row['method']:<{width}}"
                     + "".join(f"{format_interval(c):<28}" for c in cells)
                     + ("" if counted is None else f"{counted['clips']} / {counted['songs']}"))
    return "\n".join(line.rstrip() for line in lines)
