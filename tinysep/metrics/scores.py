"""Score one clip: BSS-eval, SI-SDR and NSDR per source, with silent references skipped.

The sources are the keys of the references (vocals and accompaniment, or the four
stems). A source whose reference is (near-)silent cannot be scored (every BSS-eval ratio
is 0/0), so it gets ``skipped="silent reference"`` and no values; the others are then
scored without it (alone, a source has no SIR: there is no interfering reference). An
(almost) all-zero estimate is likewise skipped with ``skipped="silent estimate"``, and a
method that estimates only some sources (``partial``) leaves the rest ``"not
estimated"``. Skipped sources are counted by :func:`tinysep.metrics.summary.summarize`,
never averaged. Where a source's reference is silent and others sound, its estimate is
all leak: ``leak`` is that estimate's power against the sounding references' sum, in dB
(-100 for a silent estimate), so a band alone tells how much of it passes as vocals.
``framewise`` adds the MUSDB18 convention beside the whole-clip values:
BSS-eval v4 on 1 s windows, the median over the clip's windows
(:mod:`tinysep.metrics.framewise`).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from tinysep.dsp import SAMPLE_RATE
from tinysep.metrics.bss import METRIC_LIMIT_DB, bss_eval, limited_db, si_sdr
from tinysep.metrics.framewise import FRAMEWISE_KEYS, bss_eval_v4, track_value
from tinysep.metrics.silence import SILENT_ESTIMATE_DBFS, SILENT_REFERENCE_DBFS, is_silent

SILENT_REFERENCE = "silent reference"
SILENT_ESTIMATE = "silent estimate"
NOT_ESTIMATED = "not estimated"
# Per-source values a score holds (all in dB); NSDR only when the mixture scores are given,
# leak only for a source whose reference is silent while another sounds.
VALUE_KEYS = ("sdr", "sir", "sar", "si_sdr", "nsdr", "leak")
# A mixture within this many dB of the metric limit as a source's estimate is that source
# alone (the other sources silent): its NSDR would only restate the limit, so none is given.
MIXTURE_IS_SOURCE_DB = 0.01


def _checked(signals: Mapping[str, np.ndarray], what: str, length: int,
             names: tuple[str, ...]) -> dict[str, np.ndarray]:
    out = {}
    for name in names:
        if name not in signals:
            raise ValueError(f"{what} lack source {name!r}; expected keys {names}")
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
    *,
    partial: bool = False,
    framewise: bool = False,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, dict]:
    """Per-source scores ``{source: {"sdr", "sir", "sar", "si_sdr", "nsdr", "skipped"}}``.

    ``references`` map each source name to a mono signal, ``estimates`` the same names
    (with ``partial``, a subset: the others are skipped as not estimated) to signals of
    the same length. ``mixture_scores`` (from :func:`score_mixture` on the same clip)
    turns SDR into NSDR = SDR(estimate) - SDR(mixture as estimate). ``framewise`` adds
    ``sdr_v4``, ``isr_v4``, ``sir_v4``, ``sar_v4`` (median over 1 s windows) per source.
    Values are floats in dB or None when undefined; ``skipped`` is None or the reason
    the source was not scored.
    """
    names = tuple(references)
    first = np.asarray(references[names[0]]) if names else None
    if first is None or first.ndim != 1:
        raise ValueError("references must map source names to mono signals")
    refs = _checked(references, "references", len(first), names)
    given = tuple(n for n in names if n in estimates) if partial else names
    ests = _checked(estimates, "estimates", len(first), given)

    extra = FRAMEWISE_KEYS if framewise else ()
    scores: dict[str, dict] = {
        name: {key: None for key in (*VALUE_KEYS, *extra)} | {"skipped": None}
        for name in names
    }
    active = [name for name in names if not is_silent(refs[name], silence_dbfs)]
    for name in names:
        if name not in active:
            scores[name]["skipped"] = SILENT_REFERENCE
    if not active:
        return scores
    leaking = [name for name in names if name not in active and name in ests]
    if leaking:  # only a clip with a silent source pays for the sum of the others
        sounding = np.sum([refs[name] for name in active], axis=0)
        for name in leaking:
            scores[name]["leak"] = limited_db(float(ests[name] @ ests[name]),
                                              float(sounding @ sounding))

    # A silent or missing estimate is swapped for its own reference so the call stays
    # well posed; each estimate is projected independently, so the stand-in does not
    # touch the others.
    missing = {name: name not in ests for name in active}
    silent_est = {name: not missing[name] and is_silent(ests[name], SILENT_ESTIMATE_DBFS)
                  for name in active}
    ref_rows = np.stack([refs[name] for name in active])
    est_rows = np.stack([refs[n] if silent_est[n] or missing[n] else ests[n] for n in active])
    sdr, sir, sar = bss_eval(ref_rows, est_rows)
    windows = bss_eval_v4(ref_rows, est_rows, sample_rate) if framewise else {}

    for i, name in enumerate(active):
        if missing[name]:
            scores[name]["skipped"] = NOT_ESTIMATED
            continue
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
            # a mixture that already is the source (the others left out) has nothing to improve
            if mix_sdr is not None and entry["sdr"] is not None \
                    and mix_sdr < METRIC_LIMIT_DB - MIXTURE_IS_SOURCE_DB:
                entry["nsdr"] = entry["sdr"] - mix_sdr
        for key in extra:  # alone, a source has no interference to measure
            alone = len(active) == 1 and key == "sir_v4"
            entry[key] = None if alone else track_value(windows[key][i])
    return scores


def score_mixture(
    references: Mapping[str, np.ndarray],
    mixture: np.ndarray,
    silence_dbfs: float = SILENT_REFERENCE_DBFS,
    *,
    framewise: bool = False,
    sample_rate: int = SAMPLE_RATE,
) -> dict[str, dict]:
    """Scores of the mixture used as the estimate of every source (the NSDR baseline)."""
    mix = np.asarray(mixture)
    return score_estimates(references, {name: mix for name in references}, None,
                           silence_dbfs, framewise=framewise, sample_rate=sample_rate)
