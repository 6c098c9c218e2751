"""Streaming STFT and overlap-add inverse, one hop at a time (what a board runs).

Numpy only and self-contained. ``StreamingSTFT.push(hop)`` returns the frame the offline
:func:`tinysep.dsp.stft.stft` gives at the same index; ``StreamingISTFT.push(frame)``
returns one hop of audio. The output stream is the offline inverse delayed by
``n_fft - hop`` samples (384 at the defaults): the first three output hops are the
tail of the zero padding. Counting the hop that must be buffered before a frame
exists, a sample leaves ``LATENCY_SAMPLES = n_fft`` (512 samples, 32 ms) after it
arrived, before any model look-ahead (the models are causal and add none).
"""

from __future__ import annotations

import numpy as np

from tinysep.dsp.stft import HOP_SAMPLES, N_FFT, analysis_window, synthesis_window

OUTPUT_DELAY_SAMPLES = N_FFT - HOP_SAMPLES
LATENCY_SAMPLES = N_FFT


class StreamingSTFT:
    """Keeps the last ``n_fft`` samples; each pushed hop yields one spectrum frame."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP_SAMPLES) -> None:
        self.n_fft, self.hop = n_fft, hop
        self.window = analysis_window(n_fft)
        self.buffer = np.zeros(n_fft)

    def reset(self) -> None:
        self.buffer[:] = 0.0

    def push(self, hop_audio: np.ndarray) -> np.ndarray:
        hop_audio = np.asarray(hop_audio, dtype=np.float64)
        if hop_audio.shape != (self.hop,):
            raise ValueError(f"expected {self.hop} samples, got shape {hop_audio.shape}")
        self.buffer[: -self.hop] = self.buffer[self.hop :]
        self.buffer[-self.hop :] = hop_audio
        return np.fft.rfft(self.buffer * self.window).astype(np.complex64)


class StreamingISTFT:
    """Overlap-adds each frame into an ``n_fft`` accumulator and releases one finished hop."""

    def __init__(self, n_fft: int = N_FFT, hop: int = HOP_SAMPLES) -> None:
        self.n_fft, self.hop = n_fft, hop
        self.window = synthesis_window(n_fft, hop)
        self.accumulator = np.zeros(n_fft)

    def reset(self) -> None:
        self.accumulator[:] = 0.0

    def push(self, frame: np.ndarray) -> np.ndarray:
        frame = np.asarray(frame)
        if frame.shape != (self.n_fft // 2 + 1,):
            raise ValueError(f"expected a frame of {self.n_fft // 2 + 1} bins, got {frame.shape}")
        self.accumulator += np.fft.irfft(frame.astype(np.complex128), n=self.n_fft) * self.window
        out = self.accumulator[: self.hop].astype(np.float32)
        self.accumulator[: -self.hop] = self.accumulator[self.hop :]
        self.accumulator[-self.hop :] = 0.0
        return out
