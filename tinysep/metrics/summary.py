"""Aggregate per-clip scores: mean / median per metric and source, GNSDR, skip counts.

Only defined, finite values enter a mean; every skipped or undefined value is
counted instead, so a summary never holds NaN or inf (an empty set gives None).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence

import numpy as np

from tinysep.data.clip import SOURCES
from tinysep.metrics.framewise import FRAMEWISE_KEYS
from tinysep.metrics.scores import NOT_ESTIMATED, SILENT_ESTIMATE, SILENT_REFERENCE, VALUE_KEYS


def _stats(values: list[float]) -> dict:
    finite = [v for v in values if v is not None and np.isfinite(v)]
    if not finite:
        return {"mean": None, "median": None, "n": 0}
    return {"mean": float(np.mean(finite)), "median": float(np.median(finite)), "n": len(finite)}


def summarize(records: Iterable[Mapping], sources: Sequence[str] | None = None) -> dict:
    """Summary of clip records ``{"samples": int, "sources": {source: scores}}``.

    Returns ``{"clips", "silent_clips", "samples", "sources": {source: {metric: {"mean",
    "median", "n"}, "gnsdr", "skipped": {"silent_reference", "silent_estimate"}}}}``
    (``sources``, by default those of the records in their order, or vocals and
    accompaniment when there is no record; ``skipped`` also counts ``not_estimated`` when a
    method left sources out). GNSDR is the clip-length-weighted mean of NSDR (the MIR-1K
    convention). Records scored framewise add the v4 keys: their ``median`` over clips of
    each clip's median over windows is the MUSDB18 figure.
    """
    records = list(records)
    summary: dict = {
        "clips": len(records),
        "silent_clips": 0,
        "samples": int(sum(int(r["samples"]) for r in records)),
        "sources": {},
    }
    if sources is None:
        sources = list(dict.fromkeys(s for r in records for s in r["sources"])) or SOURCES
    for record in records:
        if all(record["sources"][s].get("skipped") == SILENT_REFERENCE
               for s in record["sources"]):
            summary["silent_clips"] += 1
    for source in sources:
        scores = [(int(r["samples"]), r["sources"].get(source, {})) for r in records]
        framewise = [k for k in FRAMEWISE_KEYS if any(k in s for _, s in scores)]
        block: dict = {key: _stats([s.get(key) for _, s in scores])
                       for key in (*VALUE_KEYS, *framewise)}
        weighted = [
            (n, s["nsdr"])
            for n, s in scores
            if s.get("nsdr") is not None and np.isfinite(s["nsdr"])
        ]
        total = sum(n for n, _ in weighted)
        block["gnsdr"] = float(sum(n * v for n, v in weighted) / total) if total > 0 else None
        block["skipped"] = {
            "silent_reference": sum(1 for _, s in scores if s.get("skipped") == SILENT_REFERENCE),
            "silent_estimate": sum(1 for _, s in scores if s.get("skipped") == SILENT_ESTIMATE),
        }
        not_estimated = sum(1 for _, s in scores if s.get("skipped") == NOT_ESTIMATED)
        if not_estimated:
            block["skipped"]["not_estimated"] = not_estimated
        summary["sources"][source] = block
    return summary


def summarize_methods(records: Sequence[dict], methods: Sequence[str]) -> dict[str, dict]:
    """Per-method summary over the clip records that finished (see ``metrics.summarize``)."""
    out = {}
    # A method that failed on every clip still gets a row per source the clips hold.
    sources = list(dict.fromkeys(s for r in records for s in r.get("mixture", {}))) or None
    for method in methods:
        scored, failed = [], 0
        separate_s = score_s = audio_s = 0.0
        for record in records:
            entry = record.get("methods", {}).get(method)
            if entry is None or "error" in entry:
                failed += 1
                continue
            scored.append({"samples": record["samples"], "sources": entry["sources"]})
            separate_s += entry["separate_seconds"]
            score_s += entry["score_seconds"]
            audio_s += record["seconds"]
        summary = summarize(scored, sources)
        summary["failed"] = failed
        busy = separate_s + score_s
        summary["timing"] = {
            "separate_seconds": separate_s,
            "score_seconds": score_s,
            "clip_seconds_per_worker_second": audio_s / busy if busy > 0 else None,
        }
        out[method] = summary
    return out
