"""Harmonic/percussive separation as a vocals baseline (median filtering, librosa).

Assignment: the **harmonic** part is the vocals; the **percussive** part plus the
**residual** (bins that are not clearly harmonic) is the accompaniment. With this STFT
(32 ms window, 8 ms hop) a sung note is a stack of steady, well-separated partials, so
a 31-frame horizontal median keeps it; drums, onsets, noise and the denser chord
textures fall on the other side. The harmonic mask needs the harmonic estimate to beat
twice the percussive one (margin 2), so ambiguous bins go to the accompaniment.

Measured on the synthetic corpus (8 songs x 8 s): this assignment gives +2.5 to +4.5 dB SDR
for both sources; the opposite one (vocals = percussive + residual, the long-window
convention of two-stage HPSS) gives about -8 dB for the vocals at this resolution.
"""

from __future__ import annotations

import numpy as np

from tinysep.baselines.masking import mixture_spectrogram, split_by_mask
from tinysep.data.clip import Clip

# Median filter lengths: 31 frames (~250 ms) across time, 31 bins (~970 Hz) across frequency.
KERNEL_SIZE = (31, 31)
# The harmonic estimate must exceed this multiple of the percussive one to count as vocals.
HARMONIC_MARGIN = 2.0


def separate_hpss(clip: Clip) -> dict[str, np.ndarray]:
    """Vocals = soft harmonic mask (power 2, margin 2); accompaniment = the complement."""
    import librosa

    spec, magnitude = mixture_spectrogram(clip.mixture)
    harmonic_mask, _ = librosa.decompose.hpss(
        magnitude, kernel_size=KERNEL_SIZE, power=2.0, mask=True, margin=(HARMONIC_MARGIN, 1.0)
    )
    return split_by_mask(spec, harmonic_mask, len(clip.mixture))
