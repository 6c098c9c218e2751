"""Signal processing: the offline STFT the models see. A board's hop-by-hop STFT is
``firmware_host.board.dsp``; both give the same frames."""

from firmware_host.bundle.layout import HOP_SAMPLES, N_BINS, N_FFT, SAMPLE_RATE
from tinysep.dsp.stft import (
    analysis_window,
    frame_count,
    istft,
    magnitude,
    stft,
    synthesis_window,
)

__all__ = [
    "HOP_SAMPLES",
    "N_BINS",
    "N_FFT",
    "SAMPLE_RATE",
    "analysis_window",
    "frame_count",
    "istft",
    "magnitude",
    "stft",
    "synthesis_window",
]
