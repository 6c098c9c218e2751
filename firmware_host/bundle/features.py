"""The model's input features from STFT frames, one implementation for the board and the
host: ``|X|`` in float64 rounded to float32, then the manifest's transform. ``log1p`` takes
``gain * |X|`` in float32 and is evaluated in float64, rounded to float32, so that every numpy
on every board gives the same bits. numpy only, Python 3.7.
"""

from __future__ import annotations

import numpy as np

TRANSFORMS = ("log1p", "none")


def magnitude(spectra: np.ndarray) -> np.ndarray:
    """|X| of complex spectra as float32 (float64 math: the same on every numpy)."""
    real = spectra.real.astype(np.float64)
    imag = spectra.imag.astype(np.float64)
    return np.sqrt(real * real + imag * imag).astype(np.float32)


def input_features(magnitudes: np.ndarray, kind: str, gain: float = 1.0) -> np.ndarray:
    """The model input for float32 magnitudes: ``log1p(gain * |X|)`` or ``|X|`` itself."""
    mag = np.asarray(magnitudes, dtype=np.float32)
    if kind == "none":
        return mag
    if kind == "log1p":
        scaled = np.float32(gain) * mag
        return np.log1p(scaled.astype(np.float64)).astype(np.float32)
    raise ValueError(f"input transform {kind!r} is unknown; known: {TRANSFORMS}")
