"""Shared plumbing for mask-based baselines: the mixture STFT in, two waveforms out."""

from __future__ import annotations

import numpy as np

from tinysep.dsp import istft, stft

# Floor under magnitudes before dividing, so that silent bins give a defined mask.
MAGNITUDE_FLOOR = 1e-10


def mixture_spectrogram(mixture: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Complex mixture STFT as ``(bins, frames)`` (librosa orientation) and its magnitude."""
    spec = stft(np.asarray(mixture, dtype=np.float32)).T
    return spec, np.abs(spec)


def split_by_mask(spec: np.ndarray, vocals_mask: np.ndarray, length: int) -> dict[str, np.ndarray]:
    """Apply a soft vocals mask in [0, 1] and its complement; the two outputs sum to the mixture.

    ``spec`` and ``vocals_mask`` are ``(bins, frames)``.
    """
    mask = np.clip(np.nan_to_num(vocals_mask, nan=0.0), 0.0, 1.0)
    vocals = istft((mask * spec).T, length)
    accompaniment = istft(((1.0 - mask) * spec).T, length)
    return {"vocals": vocals, "accompaniment": accompaniment}


def ratio_mask(part: np.ndarray, whole: np.ndarray) -> np.ndarray:
    """``part / whole`` with silent bins of ``whole`` mapped to 0, clipped to [0, 1]."""
    return np.clip(part / np.maximum(whole, MAGNITUDE_FLOOR), 0.0, 1.0)
