"""Signal processing: the STFT the models see, offline and one hop at a time."""

from tinysep.dsp.stft import (
    HOP_SAMPLES,
    N_BINS,
    N_FFT,
    SAMPLE_RATE,
    analysis_window,
    frame_count,
    istft,
    magnitude,
    stft,
    synthesis_window,
)
from tinysep.dsp.streaming import LATENCY_SAMPLES, StreamingISTFT, StreamingSTFT

__all__ = [
    "HOP_SAMPLES",
    "LATENCY_SAMPLES",
    "N_BINS",
    "N_FFT",
    "SAMPLE_RATE",
    "StreamingISTFT",
    "StreamingSTFT",
    "analysis_window",
    "frame_count",
    "istft",
    "magnitude",
    "stft",
    "synthesis_window",
]
