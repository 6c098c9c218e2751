"""Offline STFT / inverse STFT for 16 kHz mono: 512-sample window, hop 128, or another
framing of ``firmware_host.bundle.layout.FRAMINGS`` (``framing=``).

Framing is *causal*: frame ``t`` covers samples ``[t*hop - (n_fft - hop), t*hop + hop)``,
i.e. it ends with the hop that arrived last. The signal is padded with ``n_fft - hop``
zeros in front, so a streaming analyser that starts from a zeroed buffer produces the
very same frames. Analysis uses a periodic Hann window; synthesis uses the Hann window
scaled so that the window pair overlap-adds to exactly one (perfect reconstruction).
The long framing (``long1024``) frames 1024 samples the same way with its own window pair
(``firmware_host.bundle.windows``), which overlap-adds to one as well.
"""

from __future__ import annotations

import numpy as np

# The framing is the deploy bundle's: one definition for the models, the exporter and boards.
from firmware_host.bundle.layout import DEFAULT_FRAMING, HOP_SAMPLES, N_FFT, Framing, get_framing
from firmware_host.bundle.windows import hann_periodic, hann_periodic_ola, make_window


def framing_windows(framing: str | Framing = DEFAULT_FRAMING) -> tuple[np.ndarray, np.ndarray]:
    """``(analysis, synthesis)`` windows (float64) of a framing, by name or as a Framing:
    the windows its names stand for in the bundle's table (the board's too)."""
    framing = get_framing(framing)
    n_fft, hop = framing.n_fft, framing.hop
    return (make_window(framing.analysis_window, n_fft, hop, analysis=True),
            make_window(framing.synthesis_window, n_fft, hop, analysis=False))


def _sizes(n_fft: int, hop: int, framing) -> tuple[int, int]:
    """``(n_fft, hop)`` of ``framing`` when given, else the ones passed."""
    if framing is None:
        return n_fft, hop
    framing = get_framing(framing)
    return framing.n_fft, framing.hop


def analysis_window(n_fft: int = N_FFT) -> np.ndarray:
    """Periodic Hann window (float64), the board's."""
    return hann_periodic(n_fft)


def synthesis_window(n_fft: int = N_FFT, hop: int = HOP_SAMPLES) -> np.ndarray:
    """Synthesis window whose product with the analysis window overlap-adds to one (the
    board's); ValueError where the Hann window does not overlap-add to a constant."""
    if n_fft % hop:
        raise ValueError(f"n_fft={n_fft} must be a multiple of hop={hop}")
    wa = analysis_window(n_fft)
    overlap = np.zeros(hop)
    for k in range(n_fft // hop):
        overlap += wa[k * hop : (k + 1) * hop] ** 2
    if not np.allclose(overlap, overlap[0]) or overlap[0] <= 0:
        raise ValueError(f"the Hann window does not overlap-add to a constant at hop={hop}")
    return hann_periodic_ola(n_fft, hop)


def frame_count(n_samples: int, n_fft: int = N_FFT, hop: int = HOP_SAMPLES,
                framing: str | Framing | None = None) -> int:
    """Frames the offline STFT gives for ``n_samples`` (at ``framing``, when given).

    One frame per (zero-padded) hop, plus ``n_fft // hop - 1`` frames that flush the
    tail so that every sample is covered by all the windows it needs.
    """
    n_fft, hop = _sizes(n_fft, hop, framing)
    return -(-int(n_samples) // hop) + n_fft // hop - 1


def stft(audio: np.ndarray, n_fft: int = N_FFT, hop: int = HOP_SAMPLES,
         framing: str | Framing | None = None) -> np.ndarray:
    """Complex STFT of mono audio, shape ``(frames, n_fft // 2 + 1)``, time-major."""
    window = analysis_window(n_fft) if framing is None else framing_windows(framing)[0]
    n_fft, hop = _sizes(n_fft, hop, framing)
    x = np.asarray(audio, dtype=np.float64)
    if x.ndim != 1:
        raise ValueError(f"stft expects mono audio of shape (samples,), got shape {x.shape}")
    n_frames = frame_count(len(x), n_fft, hop)
    padded = np.zeros((n_frames - 1) * hop + n_fft)
    padded[n_fft - hop : n_fft - hop + len(x)] = x
    frames = np.lib.stride_tricks.sliding_window_view(padded, n_fft)[::hop]
    spec = np.fft.rfft(frames * window, axis=-1)
    return spec.astype(np.complex64)


def istft(
    spec: np.ndarray, length: int | None = None, n_fft: int = N_FFT, hop: int = HOP_SAMPLES,
    framing: str | Framing | None = None,
) -> np.ndarray:
    """Inverse of :func:`stft` by weighted overlap-add; ``length`` trims to the original size."""
    if framing is None:
        window = synthesis_window(n_fft, hop)
    else:
        window = framing_windows(framing)[1]
        n_fft, hop = _sizes(n_fft, hop, framing)
    spec = np.asarray(spec)
    if spec.ndim != 2 or spec.shape[1] != n_fft // 2 + 1:
        raise ValueError(f"istft expects shape (frames, {n_fft // 2 + 1}), got {spec.shape}")
    n_frames = spec.shape[0]
    frames = np.fft.irfft(spec.astype(np.complex128), n=n_fft, axis=-1) * window
    out = np.zeros((n_frames - 1) * hop + n_fft)
    for k in range(n_fft // hop):
        # Segment k of every frame lands on a hop-aligned grid: add them all at once.
        seg = frames[:, k * hop : (k + 1) * hop].reshape(-1)
        out[k * hop : k * hop + len(seg)] += seg
    audio = out[n_fft - hop :]
    if length is None:
        length = (n_frames - n_fft // hop + 1) * hop
    if length > len(audio):
        audio = np.pad(audio, (0, length - len(audio)))
    return audio[:length].astype(np.float32)


def magnitude(spec: np.ndarray) -> np.ndarray:
    """Magnitude spectrogram as float32."""
    return np.abs(spec).astype(np.float32)
