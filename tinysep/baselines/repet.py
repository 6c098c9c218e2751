"""REPET family: the accompaniment repeats, the voice does not.

All three build a *repeating model* of the magnitude spectrogram, clip it to the
mixture (``min(model, |X|)``) and use ``model / |X|`` as a soft accompaniment mask; the
vocals get the complement. They differ in where the repetitions are looked for:

- ``repet``: one global period, found in the beat spectrum (the frequency-averaged
  autocorrelation of the power spectrogram); the model is the median over all periods.
- ``repet-sim``: no period; for every frame, the median over its nearest neighbours
  in a cosine self-similarity of the magnitude spectrogram (neighbours found here in
  blocks, the median taken by librosa's ``nn_filter``).
- ``repet-mfcc``: as ``repet-sim``, but the neighbours are found on MFCCs, which
  compare timbre and harmony rather than exact spectra.

Energy below ``HIGH_PASS_HZ`` is always given to the accompaniment (voices have none).
"""

from __future__ import annotations

import numpy as np
import scipy.sparse

from tinysep.baselines.masking import (
    MAGNITUDE_FLOOR,
    mixture_spectrogram,
    ratio_mask,
    split_by_mask,
)
from tinysep.data.clip import Clip
from tinysep.dsp import HOP_SAMPLES, N_FFT, SAMPLE_RATE

HIGH_PASS_HZ = 100.0
# Candidate repeating periods, in seconds; at least three periods must fit in the clip.
PERIOD_RANGE_S = (0.8, 10.0)
MIN_REPEATS = 3
# Half-width of the beat-spectrum neighbourhood a peak is compared with.
PEAK_NEIGHBOURHOOD_S = 0.3
# Lags scoring within this fraction of the best are ties; the shortest one wins.
PERIOD_TIE = 0.1
# Frames closer than this in time are not counted as repetitions (they are the same
# note). Each frame's model is the median over its NEIGHBOURS most similar frames: more
# neighbours move the model towards REPET's global median, fewer keep it local.
MIN_DISTANCE_S = 1.0
NEIGHBOURS = 100
# Frames per block when searching neighbours (memory: frames x block float32).
SIMILARITY_BLOCK = 512
MFCC_BANDS = 40
MFCC_COEFFICIENTS = 20

FRAMES_PER_SECOND = SAMPLE_RATE / HOP_SAMPLES


def _high_pass_bins() -> int:
    return int(np.ceil(HIGH_PASS_HZ * N_FFT / SAMPLE_RATE))


def _separate_with_model(clip: Clip, spec: np.ndarray, magnitude: np.ndarray,
                         model: np.ndarray) -> dict[str, np.ndarray]:
    accompaniment_mask = ratio_mask(np.minimum(model, magnitude), magnitude)
    accompaniment_mask[: _high_pass_bins()] = 1.0
    return split_by_mask(spec, 1.0 - accompaniment_mask, len(clip.mixture))


def beat_spectrum(magnitude: np.ndarray) -> np.ndarray:
    """Mean over frequency of the unbiased autocorrelation of each power-spectrogram row.

    ``magnitude`` is ``(bins, frames)``; the result has one value per lag (frames),
    normalised to 1 at lag 0.
    """
    power = magnitude.astype(np.float64) ** 2
    n = power.shape[1]
    spectrum = np.fft.rfft(power, n=2 * n, axis=1)
    acf = np.fft.irfft(np.abs(spectrum) ** 2, n=2 * n, axis=1)[:, :n]
    acf /= np.arange(n, 0, -1)  # unbiased: divide by the number of overlapping terms
    beat = acf.mean(axis=0)
    return beat / beat[0] if beat[0] > 0 else np.zeros_like(beat)


def repeating_period(beat: np.ndarray, n_frames: int) -> int:
    """The repeating period (frames): the lag whose integer multiples peak in the beat spectrum.

    Each candidate lag ``p`` is scored by the mean, over its multiples ``k p``, of how far
    the beat spectrum's peak near ``k p`` (within a frame or two, allowing for a period
    that is not a whole number of frames) rises above its mean over the surrounding
    ``PEAK_NEIGHBOURHOOD_S`` on either side (the same width for every lag, so that
    scores compare). Multiples of the true period score about as well as the period itself,
    so the shortest lag within ``PERIOD_TIE`` of the best score is returned.
    """
    low = int(round(PERIOD_RANGE_S[0] * FRAMES_PER_SECOND))
    high = min(int(round(PERIOD_RANGE_S[1] * FRAMES_PER_SECOND)), n_frames // MIN_REPEATS)
    if high <= low:
        return max(1, min(low, n_frames // MIN_REPEATS))
    usable = len(beat) * 3 // 4  # the last lags average too few terms to be trusted
    lags = np.arange(low, high + 1)
    scores = np.full(len(lags), -np.inf)
    reach = int(round(PEAK_NEIGHBOURHOOD_S * FRAMES_PER_SECOND))
    for i, lag in enumerate(lags):
        rises = []
        for k, centre in enumerate(range(lag, usable - reach, lag), start=1):
            tolerance = 1 + k // 2
            peak = beat[centre - tolerance : centre + tolerance + 1].max()
            rises.append(peak - beat[centre - reach : centre + reach + 1].mean())
        if rises:
            scores[i] = float(np.mean(rises))
    best = scores.max()
    if not np.isfinite(best):
        return int(low)
    return int(lags[np.flatnonzero(scores >= best - PERIOD_TIE * abs(best))[0]])


def repeating_model(magnitude: np.ndarray, period: int) -> np.ndarray:
    """Median of the spectrogram over all periods, tiled back to the clip's length."""
    bins, n = magnitude.shape
    segments = -(-n // period)
    padded = np.full((bins, segments * period), np.nan, dtype=np.float64)
    padded[:, :n] = magnitude
    segment = np.nanmedian(padded.reshape(bins, segments, period), axis=1)
    return np.tile(segment, (1, segments))[:, :n]


def separate_repet(clip: Clip) -> dict[str, np.ndarray]:
    """REPET: period from the beat spectrum, median repeating segment, soft mask."""
    spec, magnitude = mixture_spectrogram(clip.mixture)
    period = repeating_period(beat_spectrum(magnitude), magnitude.shape[1])
    return _separate_with_model(clip, spec, magnitude, repeating_model(magnitude, period))


def nearest_frames(features: np.ndarray, k: int, min_distance: int) -> scipy.sparse.csc_matrix:
    """Each frame's ``k`` most cosine-similar frames at least ``min_distance`` frames away.

    ``features`` is ``(dims, frames)``; column ``j`` of the result marks the neighbours
    of frame ``j`` (librosa's recurrence-matrix convention, as ``nn_filter`` reads it).
    Computed in column blocks so that long songs need no frames x frames matrix.
    (librosa's ``recurrence_matrix`` with a ``width`` exclusion is slow here -- it edits
    the sparse matrix one diagonal at a time -- and in connectivity mode it keeps the
    earliest ``k`` of the ``k + 2 width`` nearest frames rather than the most similar.)
    """
    x = np.asarray(features, dtype=np.float32)
    n = x.shape[1]
    unit = x / np.maximum(np.linalg.norm(x, axis=0, keepdims=True), MAGNITUDE_FLOOR)
    k = max(1, min(k, n - 2 * min_distance + 1))
    frames = np.arange(n)
    rows, cols = [], []
    for start in range(0, n, SIMILARITY_BLOCK):
        block = frames[start : start + SIMILARITY_BLOCK]
        similarity = unit.T @ unit[:, block]  # (n, block)
        similarity[np.abs(frames[:, None] - block[None, :]) < min_distance] = -np.inf
        top = np.argpartition(-similarity, k - 1, axis=0)[:k]
        keep = np.isfinite(np.take_along_axis(similarity, top, axis=0))
        rows.append(top[keep])
        cols.append(np.broadcast_to(block, top.shape)[keep])
    rows, cols = np.concatenate(rows), np.concatenate(cols)
    return scipy.sparse.csc_matrix((np.ones(len(rows), np.float32), (rows, cols)), shape=(n, n))


def _neighbour_median(magnitude: np.ndarray, features: np.ndarray) -> np.ndarray:
    """Median of ``magnitude`` over each frame's nearest neighbours in ``features``."""
    import librosa

    min_distance = int(round(MIN_DISTANCE_S * FRAMES_PER_SECOND))
    min_distance = max(1, min(min_distance, (magnitude.shape[1] - 1) // 2))
    rec = nearest_frames(features, NEIGHBOURS, min_distance)
    return librosa.decompose.nn_filter(magnitude, rec=rec, aggregate=np.median)


def separate_repet_sim(clip: Clip) -> dict[str, np.ndarray]:
    """REPET-SIM: neighbours by cosine similarity of magnitude spectra."""
    spec, magnitude = mixture_spectrogram(clip.mixture)
    model = _neighbour_median(magnitude, magnitude)
    return _separate_with_model(clip, spec, magnitude, model)


def separate_repet_mfcc(clip: Clip) -> dict[str, np.ndarray]:
    """REPET-MFCC: neighbours by cosine similarity of MFCCs from the same STFT."""
    import librosa

    spec, magnitude = mixture_spectrogram(clip.mixture)
    mel = librosa.feature.melspectrogram(
        S=magnitude.astype(np.float64) ** 2, sr=SAMPLE_RATE, n_fft=N_FFT, n_mels=MFCC_BANDS
    )
    mfcc = librosa.feature.mfcc(S=librosa.power_to_db(mel), n_mfcc=MFCC_COEFFICIENTS)
    model = _neighbour_median(magnitude, mfcc)
    return _separate_with_model(clip, spec, magnitude, model)
