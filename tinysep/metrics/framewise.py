"""BSS-eval v4 on 1 s windows: the SiSEC 2018 / MUSDB18 convention, computed here.

Definition (images variant, mono here): the distortion filters are fitted once over the
**whole track** and held fixed, then every window is decomposed with them. For estimate
``j``, ``C`` are the ``FILTER_LENGTH``-tap filters that best rebuild it from all
references (least squares over the track) and ``Cj`` those that rebuild it from its own
reference alone. In a window, with the references cut to the window and filtered (the
filter tails included):

- ``s = ref_j`` (zero-padded by the tail), ``e_spat = ref_j * Cj - s``,
  ``e_interf = sum_k ref_k * C_k - s - e_spat``, ``e_artif = est - s - e_spat - e_interf``;
- SDR = ``|s|^2 / |e_spat + e_interf + e_artif|^2`` (= ``|s|^2 / |est - s|^2``: the
  window's plain SNR), ISR = ``|s|^2 / |e_spat|^2``,
  SIR = ``|s + e_spat|^2 / |e_interf|^2``, SAR = ``|s + e_spat + e_interf|^2 / |e_artif|^2``,

all in dB. Windows of ``WINDOW_SECONDS`` with hop ``WINDOW_SECONDS`` (museval's default);
a last partial window is left out; a window in which any reference or any estimate is
all zeros has no values (NaN). A track's value is the median over its windows, a
dataset's the median over tracks (:func:`track_value`, then ``summarize``).
"""

from __future__ import annotations

import numpy as np
from scipy.linalg import toeplitz
from scipy.signal import fftconvolve

from tinysep.metrics.bss import FILTER_LENGTH, limited_db

WINDOW_SECONDS = 1.0
FRAMEWISE_KEYS = ("sdr_v4", "isr_v4", "sir_v4", "sar_v4")
# Diagonal loading of the Gram matrices, relative to their mean diagonal: keeps the solve
# defined for references that are (nearly) linearly dependent, far below any real value.
_LOADING = 1e-10


def _correlations(a: np.ndarray, b: np.ndarray, n_fft: int, taps: int) -> tuple[np.ndarray,
                                                                                   np.ndarray]:
    """``sum_t a(t) b(t + lag)`` for lags 0..taps-1 and for lags 0..-(taps-1)."""
    full = np.fft.irfft(np.conj(np.fft.rfft(a, n_fft)) * np.fft.rfft(b, n_fft), n_fft)
    positive = full[:taps]
    negative = np.concatenate([full[:1], full[::-1][:taps - 1]])
    return positive, negative


def projection_filters(references: np.ndarray, estimates: np.ndarray,
                       taps: int = FILTER_LENGTH) -> tuple[np.ndarray, np.ndarray]:
    """Whole-track least-squares filters ``(C, Cj)``: ``C[j]`` ``(sources, taps)`` rebuilds
    estimate ``j`` from every reference, ``Cj[j]`` ``(taps,)`` from reference ``j`` alone."""
    n_src, n = references.shape
    n_fft = int(2 ** np.ceil(np.log2(n + taps - 1)))
    gram = np.zeros((n_src * taps, n_src * taps))
    for k in range(n_src):
        for m in range(k, n_src):
            pos, neg = _correlations(references[k], references[m], n_fft, taps)
            # <ref_k(t - a), ref_m(t - b)> = corr_km(a - b)
            block = toeplitz(pos, neg)
            gram[k * taps:(k + 1) * taps, m * taps:(m + 1) * taps] = block
            gram[m * taps:(m + 1) * taps, k * taps:(k + 1) * taps] = block.T
    cross = np.zeros((n_src * taps, estimates.shape[0]))
    for j, estimate in enumerate(estimates):
        for k in range(n_src):
            cross[k * taps:(k + 1) * taps, j] = _correlations(references[k], estimate, n_fft,
                                                              taps)[0]
    loading = _LOADING * max(float(np.mean(np.diag(gram))), np.finfo(float).tiny)
    all_filters = np.linalg.solve(gram + loading * np.eye(len(gram)), cross)
    own = np.zeros((estimates.shape[0], taps))
    for j in range(estimates.shape[0]):
        block = gram[j * taps:(j + 1) * taps, j * taps:(j + 1) * taps]
        own[j] = np.linalg.solve(block + loading * np.eye(taps), cross[j * taps:(j + 1) * taps, j])
    return all_filters.T.reshape(estimates.shape[0], n_src, taps), own


def window_count(samples: int, window: int, hop: int) -> int:
    """Whole windows of ``window`` samples every ``hop`` samples in ``samples``."""
    return max(0, (samples - window) // hop + 1)


def bss_eval_v4(references: np.ndarray, estimates: np.ndarray, sample_rate: int,
                window_seconds: float = WINDOW_SECONDS, taps: int = FILTER_LENGTH) -> dict:
    """Framewise ``{"sdr_v4", "isr_v4", "sir_v4", "sar_v4"}``, each ``(sources, windows)``
    in dB (NaN in windows with a silent reference or estimate); inputs ``(sources,
    samples)``, estimate ``j`` scored against reference ``j``."""
    refs = np.asarray(references, np.float64)
    ests = np.asarray(estimates, np.float64)
    if refs.ndim != 2 or refs.shape != ests.shape:
        raise ValueError(f"references {refs.shape} and estimates {ests.shape} must both have "
                         "shape (sources, samples)")
    if not (np.all(np.isfinite(refs)) and np.all(np.isfinite(ests))):
        raise ValueError("references and estimates must be finite")
    window = int(round(window_seconds * sample_rate))
    if window < 1:
        raise ValueError(f"window of {window_seconds} s at {sample_rate} Hz holds no sample")
    n_src, n = refs.shape
    frames = window_count(n, window, window)
    out = {key: np.full((n_src, frames), np.nan) for key in FRAMEWISE_KEYS}
    if frames == 0:
        return out
    all_filters, own = projection_filters(refs, ests, taps)
    for f in range(frames):
        cut = slice(f * window, (f + 1) * window)
        r, e = refs[:, cut], ests[:, cut]
        if np.any(np.all(r == 0, axis=1)) or np.any(np.all(e == 0, axis=1)):
            continue
        for j in range(n_src):
            s = np.concatenate([r[j], np.zeros(taps - 1)])
            est = np.concatenate([e[j], np.zeros(taps - 1)])
            own_part = fftconvolve(r[j], own[j])
            every = sum(fftconvolve(r[k], all_filters[j, k]) for k in range(n_src))
            e_spat = own_part - s
            e_interf = every - own_part
            e_artif = est - every
            out["sdr_v4"][j, f] = limited_db(s @ s, (est - s) @ (est - s))
            out["isr_v4"][j, f] = limited_db(s @ s, e_spat @ e_spat)
            out["sir_v4"][j, f] = limited_db(own_part @ own_part, e_interf @ e_interf)
            out["sar_v4"][j, f] = limited_db(every @ every, e_artif @ e_artif)
    return out


def track_value(values: np.ndarray) -> float | None:
    """The median over a track's windows, NaN windows left out (None if none is left)."""
    finite = np.asarray(values, np.float64)
    finite = finite[np.isfinite(finite)]
    return float(np.median(finite)) if finite.size else None
