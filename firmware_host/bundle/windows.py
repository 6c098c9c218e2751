"""The STFT windows a manifest may name (docs/bundle.md), numpy float64, looked up by name:
one definition for the offline STFT of the models, the host and the board's streaming STFT.
Python 3.7."""

from __future__ import annotations

import numpy as np

from .layout import (
    ANALYSIS_WINDOW,
    HOP_SAMPLES,
    LONG_ANALYSIS_WINDOW,
    LONG_FALL,
    LONG_N_FFT,
    LONG_SPAN,
    LONG_SYNTHESIS_WINDOW,
    SYNTHESIS_WINDOW,
)


def hann_periodic(n_fft: int) -> np.ndarray:
    """``w[n] = 0.5 - 0.5 cos(2 pi n / n_fft)``."""
    n = np.arange(n_fft, dtype=np.float64)
    return 0.5 - 0.5 * np.cos(2.0 * np.pi * n / n_fft)


def hann_periodic_ola(n_fft: int, hop: int) -> np.ndarray:
    """``w[n] / sum_k w[n + k hop]^2``: overlap-adds with the analysis Hann window to one."""
    window = hann_periodic(n_fft)
    overlap = np.zeros(hop)
    for k in range(n_fft // hop):
        overlap += window[k * hop : (k + 1) * hop] ** 2
    return window / np.tile(overlap, n_fft // hop)


def rise_fall_window(n_fft: int = LONG_N_FFT, fall: int = LONG_FALL) -> np.ndarray:
    """Hann rise over ``n_fft - fall`` samples to a peak of 1, then a Hann fall over ``fall``."""
    rise = n_fft - fall
    n = np.arange(n_fft, dtype=np.float64)
    window = np.empty(n_fft)
    window[:rise] = 0.5 - 0.5 * np.cos(np.pi * n[:rise] / rise)
    window[rise:] = 0.5 - 0.5 * np.cos(np.pi * (n[rise:] - rise + fall) / fall)
    return window


def span_synthesis_window(
    n_fft: int = LONG_N_FFT, hop: int = HOP_SAMPLES, span: int = LONG_SPAN, fall: int = LONG_FALL
) -> np.ndarray:
    """Zero but for the newest ``span`` samples, where it is a periodic Hann of length ``span``
    over its overlap-add sum, divided by :func:`rise_fall_window`: the pair overlap-adds to one."""
    if span % hop or span > n_fft:
        raise ValueError(f"span {span} must be a multiple of hop {hop} and at most n_fft {n_fft}")
    hann = 0.5 - 0.5 * np.cos(2.0 * np.pi * np.arange(span) / span)
    overlap = sum(hann[k * hop] for k in range(span // hop))
    window = np.zeros(n_fft)
    window[n_fft - span:] = hann / overlap / rise_fall_window(n_fft, fall)[n_fft - span:]
    return window


ANALYSIS_WINDOWS = {
    ANALYSIS_WINDOW: lambda n_fft, hop: hann_periodic(n_fft),
    LONG_ANALYSIS_WINDOW: lambda n_fft, hop: rise_fall_window(n_fft),
}
SYNTHESIS_WINDOWS = {
    SYNTHESIS_WINDOW: hann_periodic_ola,
    LONG_SYNTHESIS_WINDOW: lambda n_fft, hop: span_synthesis_window(n_fft, hop),
}


def make_window(name: str, n_fft: int, hop: int, analysis: bool) -> np.ndarray:
    """The window a manifest names; ValueError naming the known ones otherwise."""
    table = ANALYSIS_WINDOWS if analysis else SYNTHESIS_WINDOWS
    kind = "analysis_window" if analysis else "synthesis_window"
    if name not in table:
        raise ValueError(f"audio.{kind} {name!r} is unknown; this agent knows {sorted(table)}")
    return table[name](n_fft, hop)
