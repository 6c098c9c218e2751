"""The two reference points of every table: the mixture itself, and the ideal ratio mask."""

from __future__ import annotations

import numpy as np

from tinysep.baselines.masking import MAGNITUDE_FLOOR, mixture_spectrogram, split_by_mask
from tinysep.data.clip import Clip
from tinysep.dsp import stft

# Exponent of the oracle mask |V|^p / (|V|^p + |A|^p); p = 2 is the Wiener-like mask.
IRM_POWER = 2.0


def separate_mix(clip: Clip) -> dict[str, np.ndarray]:
    """The mixture as the estimate of both sources: NSDR is zero by definition."""
    mixture = np.asarray(clip.mixture, dtype=np.float32)
    return {"vocals": mixture.copy(), "accompaniment": mixture.copy()}


def separate_irm(clip: Clip) -> dict[str, np.ndarray]:
    """Oracle ideal ratio mask from the clip's references, applied to the mixture STFT.

    It reads the references, so it is an upper bound for what a real-valued mask of
    this STFT (512 / 128) can reach, not a method.
    """
    spec, _ = mixture_spectrogram(clip.mixture)
    vocals = np.abs(stft(np.asarray(clip.vocals, dtype=np.float32)).T) ** IRM_POWER
    accompaniment = np.abs(stft(np.asarray(clip.accompaniment, dtype=np.float32)).T) ** IRM_POWER
    mask = vocals / np.maximum(vocals + accompaniment, MAGNITUDE_FLOOR)
    return split_by_mask(spec, mask, len(clip.mixture))
