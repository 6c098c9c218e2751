"""Silence detection: references too quiet to score are skipped and counted, never scored."""

from __future__ import annotations

import numpy as np

# A reference whose RMS is below this level (dB re full scale 1.0) is treated as silent.
# 16-bit dither sits near -100 dBFS; real vocals or accompaniment are far above -80 dBFS.
SILENT_REFERENCE_DBFS = -80.0
# BSS-eval is scale-invariant, so a quiet estimate is fine; only an (almost) all-zero
# estimate makes the ratios 0/0. Below this level an estimate counts as silent.
SILENT_ESTIMATE_DBFS = -140.0


def rms_dbfs(audio: np.ndarray) -> float:
    """RMS level of ``audio`` in dB re 1.0; ``-inf`` for an all-zero or empty signal."""
    x = np.asarray(audio, dtype=np.float64)
    if x.size == 0:
        return float("-inf")
    power = float(np.mean(x * x))
    if not np.isfinite(power):
        raise ValueError("audio contains NaN or infinite samples")
    return float("-inf") if power <= 0.0 else 10.0 * np.log10(power)


def is_silent(audio: np.ndarray, threshold_dbfs: float = SILENT_REFERENCE_DBFS) -> bool:
    """True when the RMS level of ``audio`` is below ``threshold_dbfs``."""
    return rms_dbfs(audio) < threshold_dbfs
