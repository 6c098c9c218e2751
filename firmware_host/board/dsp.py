"""Streaming STFT and overlap-add inverse for the board, a whole chunk of hops per call (numpy).

Windows are chosen by the manifest's names. Analysis frames end with the newest hop (causal
framing, the buffer starts zeroed); the synthesis side overlap-adds only the span of each
frame its window covers (the newest ``span`` samples: all ``n_fft`` of the default framing,
512 of the long one) and releases one finished hop per frame, so its output lags the input
by ``span - hop`` samples. FFTs run in float64 so that results
do not depend on the numpy version's float32 FFT; spectra are then rounded to complex64.
"""

from __future__ import annotations

import numpy as np

from firmware_host.bundle.windows import (  # noqa: F401 (the board's window lookup)
    ANALYSIS_WINDOWS,
    SYNTHESIS_WINDOWS,
    hann_periodic,
    hann_periodic_ola,
    make_window,
)


def window_span(window: np.ndarray, hop: int) -> int:
    """Trailing samples of a synthesis window from its first nonzero hop on (a whole number
    of hops): the part of each frame the synthesizer needs to overlap-add."""
    window = np.asarray(window)
    nonzero = np.flatnonzero(window)
    first = int(nonzero[0]) if nonzero.size else window.size - hop
    return window.size - (first // hop) * hop


class StreamAnalyzer:
    """Keeps the last ``n_fft - hop`` samples; ``push`` turns h new hops into h spectra."""

    def __init__(self, n_fft: int, hop: int, window: np.ndarray):
        self.n_fft = n_fft
        self.hop = hop
        self.window = np.asarray(window, dtype=np.float64)
        self.history = np.zeros(n_fft - hop)
        self._offsets = {}

    def reset(self) -> None:
        self.history[:] = 0.0

    def push(self, samples: np.ndarray) -> np.ndarray:
        """Spectra ``(h, n_fft/2 + 1)`` complex64 for ``h * hop`` new samples (float)."""
        samples = np.asarray(samples, dtype=np.float64)
        hops = samples.size // self.hop
        full = np.concatenate((self.history, samples))
        index = self._offsets.get(hops)
        if index is None:  # frame t covers full[t*hop : t*hop + n_fft]
            index = np.arange(hops)[:, None] * self.hop + np.arange(self.n_fft)[None, :]
            self._offsets[hops] = index
        spectra = np.fft.rfft(full[index] * self.window, axis=-1)
        self.history = full[full.size - (self.n_fft - self.hop) :].copy()
        return spectra.astype(np.complex64)


class StreamSynthesizer:
    """Overlap-adds the windowed span of frames of several channels (sources); each frame
    releases one hop, ``span - hop`` samples after the newest sample of its frame arrived."""

    def __init__(self, n_fft: int, hop: int, window: np.ndarray, channels: int):
        self.n_fft = n_fft
        self.hop = hop
        self.span = window_span(window, hop)
        self.window = np.asarray(window, dtype=np.float64)[n_fft - self.span :]
        self.channels = channels
        self.tail = np.zeros((channels, self.span - hop))

    def reset(self) -> None:
        self.tail[:] = 0.0

    def push(self, spectra: np.ndarray) -> np.ndarray:
        """Audio ``(channels, h * hop)`` float64 for spectra ``(channels, h, n_fft/2 + 1)``."""
        spectra = np.asarray(spectra)
        channels, frames = spectra.shape[0], spectra.shape[1]
        segments = np.fft.irfft(spectra.astype(np.complex128), n=self.n_fft, axis=-1)
        segments = segments[:, :, self.n_fft - self.span :] * self.window
        hop = self.hop
        buffer = np.zeros((channels, (frames - 1) * hop + self.span))
        buffer[:, : self.span - hop] += self.tail
        for k in range(self.span // hop):  # part k of every frame lands on a hop-aligned grid
            part = segments[:, :, k * hop : (k + 1) * hop].reshape(channels, frames * hop)
            buffer[:, k * hop : k * hop + frames * hop] += part
        self.tail = buffer[:, frames * hop :].copy()
        return buffer[:, : frames * hop]
