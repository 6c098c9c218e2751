"""BSS-eval SDR / SIR / SAR (via fast_bss_eval) and SI-SDR for one clip's sources.

Variant: BSS-eval v3 ``bss_eval_sources`` over the **whole clip**: one SDR/SIR/SAR per
source per clip, 512-tap distortion filters, estimate ``i`` scored against reference
``i`` (no permutation search: vocals and accompaniment have fixed roles). This is what
``mir_eval.separation.bss_eval_sources`` computes and what the MIR-1K literature,
paper 1's Tables 3-4 included, reports. ``mir_eval.separation`` is deprecated since
mir_eval 0.8 and leaves in 0.9, so the numbers come from ``fast_bss_eval``, a maintained
and much faster implementation of the same projection-based definition. museval's
BSS-eval v4 is the MUSDB18/SiSEC convention (``bss_eval_images``, metrics on 1 s
windows, median over windows); it is not used because the tables we reproduce are
whole-clip ``bss_eval_sources`` numbers.

Values are limited to +-``METRIC_LIMIT_DB``: a ratio whose denominator is exactly zero
(e.g. the SAR of the mixture used as an estimate, which has no artifacts at all) reads
as the limit instead of infinity, so means never become inf.
"""

from __future__ import annotations

import numpy as np
from fast_bss_eval.numpy.metrics import square_cosine_metrics

FILTER_LENGTH = 512
METRIC_LIMIT_DB = 100.0
# Below this many samples the 2 x 512 filter taps can fit nearly anything: not scored.
MIN_SAMPLES = 4 * FILTER_LENGTH


def _as_matrix(signals: np.ndarray, what: str) -> np.ndarray:
    x = np.asarray(signals, dtype=np.float64)
    if x.ndim == 1:
        x = x[None, :]
    if x.ndim != 2:
        raise ValueError(f"{what} must have shape (sources, samples), got {x.shape}")
    if not np.all(np.isfinite(x)):
        raise ValueError(f"{what} contain NaN or infinite samples")
    return x


def _coherence_to_db(coherence: np.ndarray) -> np.ndarray:
    """Map a squared cosine ``c`` in [0, 1] to ``10 log10(c / (1 - c))``, limited."""
    e = 10.0 ** (-METRIC_LIMIT_DB / 10.0)
    eps = e / (1.0 + e)
    c = np.clip(coherence, eps, 1.0 - eps)
    return 10.0 * np.log10(c / (1.0 - c))


def bss_eval(
    references: np.ndarray, estimates: np.ndarray
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """SDR, SIR, SAR in dB, each of shape ``(sources,)``; inputs ``(sources, samples)``.

    Row ``i`` of ``estimates`` is scored against row ``i`` of ``references``; every row
    of ``references`` must be non-silent (see :mod:`tinysep.metrics.silence`).

    fast_bss_eval 0.1.4's ``compute_permutation=False`` path hands ``np.linalg.solve`` a
    stack of vectors, which numpy 2 rejects; so this asks its pairwise
    ``square_cosine_metrics`` for every (reference, estimate) pair and reads the matched
    pairs (the diagonal) -- the quantities that path would compute -- then converts the
    squared cosines to dB the way ``bss_eval_sources`` does.
    """
    refs = _as_matrix(references, "references")
    ests = _as_matrix(estimates, "estimates")
    if refs.shape != ests.shape:
        raise ValueError(
            f"references {refs.shape} and estimates {ests.shape} must have the same shape"
        )
    if refs.shape[1] < MIN_SAMPLES:
        raise ValueError(
            f"signals of {refs.shape[1]} samples are too short for BSS-eval: its "
            f"{FILTER_LENGTH}-tap distortion filters need at least {MIN_SAMPLES} samples"
        )
    try:
        coh_sdr, coh_sar = square_cosine_metrics(
            refs, ests, filter_length=FILTER_LENGTH, pairwise=True
        )
    except np.linalg.LinAlgError as error:
        raise ValueError(
            "the references are linearly dependent (e.g. two identical stems, or one a "
            f"filtered copy of another), so BSS-eval is undefined for them ({error})"
        ) from None
    idx = np.arange(refs.shape[0])
    coh_sdr = coh_sdr[idx, idx]  # (ref i, estimate i): the target projection
    coh_sar = coh_sar[idx, idx]  # estimate i on the span of all references
    sdr = _coherence_to_db(coh_sdr)
    sir = _coherence_to_db(coh_sdr / coh_sar)
    sar = _coherence_to_db(coh_sar)
    return sdr, sir, sar


def si_sdr(reference: np.ndarray, estimate: np.ndarray) -> float:
    """Scale-invariant SDR in dB (both signals zero-mean), limited to +-METRIC_LIMIT_DB.

    The reference is scaled by the least-squares gain onto the estimate; SI-SDR is the
    ratio of that target energy to the energy of what is left.
    """
    ref = np.asarray(reference, dtype=np.float64)
    est = np.asarray(estimate, dtype=np.float64)
    if ref.shape != est.shape or ref.ndim != 1:
        raise ValueError(f"si_sdr needs two mono signals of equal length, got {ref.shape}, "
                         f"{est.shape}")
    ref = ref - ref.mean()
    est = est - est.mean()
    ref_energy = float(ref @ ref)
    if ref_energy <= 0.0:
        raise ValueError("si_sdr: the reference is all zeros")
    target = (float(est @ ref) / ref_energy) * ref
    residual = est - target
    return limited_db(float(target @ target), float(residual @ residual))


def limited_db(num: float, den: float) -> float:
    """``10 log10(num / den)`` limited to +-METRIC_LIMIT_DB (a zero denominator: the limit)."""
    limit = 10.0 ** (METRIC_LIMIT_DB / 10.0)
    if den * limit <= num:
        return METRIC_LIMIT_DB
    if num * limit <= den:
        return -METRIC_LIMIT_DB
    return 10.0 * float(np.log10(num / den))
