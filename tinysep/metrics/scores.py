"""Score one clip: BSS-eval, SI-SDR and NSDR per source, with silent references skipped.

A source whose reference is (near-)silent cannot be scored (every BSS-eval ratio is
0/0), so it gets ``skipped="silent reference"`` and no values; the other source is
then scored alone, which leaves its SIR undefined (there is no interfering reference)
but its SDR, SAR and SI-SDR meaningful. An (almost) all-zero estimate is likewise
skipped with ``skipped="silent estimate"``. Skipped sources are counted by
:func:`tinysep.metrics.summary.summarize`, never averaged.
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tinysep.data.clip import SOURCES
from tinysep.metrics.bss import bss_eval, si_sdr
from tinysep.metrics.silence import SILENT_ESTIMATE_DBFS, SILENT_REFERENCE_DBFS, is_silent

SILENT_REFERENCE = "silent reference"
SILENT_ESTIMATE = "silent estimate"
# Per-source values a score holds (all in dB); NSDR only when the mixture scores are given.
VALUE_KEYS = ("sdr", "sir", "sar", "si_sdr", "nsdr")


def _checked(signals: Mapping[str, np.ndarray], what: str, length: int) -> dict[str, np.ndarray]:
    out = {}
    for name in SOURCES:
        if name not in signals:
            raise ValueError(f"{what} lack source {name!r}; expected keys {SOURCES}")
        x = np.asarray(signals[name], dtype=np.float64)
        if x.shape != (length,):
            raise ValueError(
                f"{what}[{name!r}] has shape {x.shape}; expected ({length},) like the references"
            )
        if not np.all(np.isfinite(x)):
            raise ValueError(f"{what}[{name!r}] contains NaN or infinite samples")
        out[name] = x
    return out


def _finite_or_none(value: float) -> float | None:
    value = float(value)
    return value if np.isfinite(value) else None


def score_estimates(
    references: Mapping[str, np.ndarray],
    estimates: Mapping[str, np.ndarray],
    mixture_scores: Mapping[str, Mapping] | None = None,
    silence_dbfs: float = SILENT_REFERENCE_DBFS,
) -> dict[str, dict]:
    """Per-source scores ``{source: {"sdr", "sir", "sar", "si_sdr", "nsdr", "skipped"}}``.

    ``references`` and ``estimates`` map each name in ``SOURCES`` to a mono signal of
    one common length. ``mixture_scores`` (from :func:`score_mixture` on the same clip)
    turns SDR into NSDR = SDR(estimate) - SDR(mixture as estimate). Values are floats
    in dB or None when undefined; ``skipped`` is None or the reason the source was not
    scored.
    """
    first = np.asarray(references[SOURCES[0]]) if SOURCES[0] in references else None
    if first is None or first.ndim != 1:
        raise ValueError(f"references must map {SOURCES} to mono signals")
    refs = _checked(references, "references", len(first))
    ests = _checked(estimates, "estimates", len(first))

    scores: dict[str, dict] = {
        name: {key: None for key in VALUE_KEYS} | {"skipped": None} for name in SOURCES
    }
    active = [name for name in SOURCES if not is_silent(refs[name], silence_dbfs)]
    for name in SOURCES:
        if name not in active:
            scores[name]["skipped"] = SILENT_REFERENCE
    if not active:
        return scores

    # A silent estimate is swapped for its own reference so the call stays well posed;
    # each estimate is projected independently, so the stand-in does not touch the others.
    silent_est = {name: is_silent(ests[name], SILENT_ESTIMATE_DBFS) for name in active}
    ref_rows = np.stack([refs[name] for name in active])
    est_rows = np.stack([refs[n] if silent_est[n] else ests[n] for n in active])
    sdr, sir, sar = bss_eval(ref_rows, est_rows)

    for i, name in enumerate(active):
        if silent_est[name]:
            scores[name]["skipped"] = SILENT_ESTIMATE
            continue
        entry = scores[name]
        entry["sdr"] = _finite_or_none(sdr[i])
        entry["sir"] = _finite_or_none(sir[i]) if len(active) > 1 else None
        entry["sar"] = _finite_or_none(sar[i])
        entry["si_sdr"] = _finite_or_none(si_sdr(refs[name], ests[name]))
        if mixture_scores is not None:
            mix_sdr = mixture_scores.get(name, {}).get("sdr")
            if mix_sdr is not None and entry["sdr"] is not None:
                entry["nsdr"] = entry["sdr"] - mix_sdr
    return scores


def score_mixture(
    references: Mapping[str, np.ndarray],
    mixture: np.ndarray,
    silence_dbfs: float = SILENT_REFERENCE_DBFS,
) -> dict[str, dict]:
    """Scores of the mixture used as the estimate of every source (the NSDR baseline)."""
    mix = np.asarray(mixture)
    return score_estimates(references, {name: mix for name in SOURCES}, None, silence_dbfs)
