"""How much a converted model loses against its float original, in dB of BSS-eval SDR.

The float model separates whole clips in Keras (identical to its float stream); a
converted model streams on the host interpreter exactly as a bundle runs on a board
(:class:`convert.runtime.BundleRunner`). Both are scored on the same clips with the
project's metrics; the drop is the mean over clips of the per-clip SDR difference, float
minus quantized (positive: quantization loses SDR), per source, so clip difficulty cancels
out.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence

import numpy as np

from tinysep.data.clip import SOURCES, Clip


def runner_for(quantized, stream):
    """A :class:`convert.runtime.BundleRunner` over an in-memory converted model."""
    from convert.manifest import build_manifest
    from convert.runtime import BundleRunner
    from tinysep.models import model_config
    from tinysep.models.streaming import streaming_spec

    manifest = build_manifest(
        quantized.content, streaming_spec(stream), model_config(stream), quantized.mode,
        params=0, macs_per_hop=0, arena={"bytes": 0}, micro_ops=[],
    )
    return BundleRunner.from_content(quantized.content, manifest)


def score_separator(separate: Callable[[np.ndarray], dict], clips: Sequence[Clip],
                    label: str = "", progress: bool = False,
                    sources: Sequence[str] | None = None) -> list[dict]:
    """Per-clip records ``{"name", "samples", "sources": scores}`` for ``separate``, scored
    on ``sources`` (default: every source the separator returns, in its order; the clips
    must hold those stems)."""
    from tinysep.metrics import score_estimates, score_mixture
    from tinysep.progress import Progress

    records = []
    bar = Progress(len(clips), label or "scoring", unit="clip", enabled=progress)
    for clip in clips:
        estimates = separate(clip.mixture)
        names = list(sources) if sources is not None else list(estimates)
        references = {s: clip.source(s) for s in names}
        mixture_scores = score_mixture(references, clip.mixture)
        estimates = {s: estimates[s] for s in names}
        records.append({"name": clip.name, "samples": int(len(clip.mixture)),
                        "sources": score_estimates(references, estimates, mixture_scores)})
        bar.update(1)
    bar.close()
    return records


def record_sources(records: Sequence[dict]) -> list[str]:
    """The sources per-clip records were scored on, in order (the default two when empty)."""
    return list(records[0]["sources"]) if records else list(SOURCES)


def sdr_delta(reference: list[dict], other: list[dict]) -> dict:
    """Per source: mean SDR of both and the drop, the mean per-clip difference
    reference - other (float - quantized: positive when quantization loses SDR); the sources
    are those the records were scored on (vocals, accompaniment when there are none)."""
    out = {}
    for source in record_sources(reference):
        pairs = [
            (a["sources"][source]["sdr"], b["sources"][source]["sdr"])
            for a, b in zip(reference, other, strict=True)
            if a["sources"][source]["sdr"] is not None and b["sources"][source]["sdr"] is not None
        ]
        if not pairs:
            out[source] = {"sdr_reference": None, "sdr": None, "drop_db": None, "clips": 0}
            continue
        ref, got = np.array(pairs).T
        out[source] = {"sdr_reference": float(ref.mean()), "sdr": float(got.mean()),
                       "drop_db": float(np.mean(ref - got)), "clips": len(pairs)}
    return out


def float_records(model, clips: Sequence[Clip], progress: bool = False) -> list[dict]:
    from tinysep.models import separate

    return score_separator(lambda mix: separate(model, mix), clips, "float", progress)


def quantized_records(quantized, stream, clips: Sequence[Clip],
                      progress: bool = False) -> list[dict]:
    runner = runner_for(quantized, stream)
    return score_separator(runner.separate, clips, quantized.mode, progress)
