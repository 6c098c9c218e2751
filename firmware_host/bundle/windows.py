"""The long framing's windows (docs/bundle.md), numpy float64: one definition for the
offline STFT of the models and the board's streaming STFT. Python 3.7."""

from __future__ import annotations

import numpy as np

from .layout import HOP_SAMPLES, LONG_FALL, LONG_N_FFT, LONG_SPAN


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
