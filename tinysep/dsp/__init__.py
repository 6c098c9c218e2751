"""Signal processing: the offline STFT the models see. A board's hop-by-hop STFT is
``firmware_host.board.dsp``; both give the same frames."""

from firmware_host.bundle.layout import (
    DEFAULT_FRAMING,
    FRAMINGS,
    HOP_SAMPLES,
    N_BINS,
    N_FFT,
    SAMPLE_RATE,
    Framing,
    get_framing,
)
from tinysep.dsp.stft import (
    analysis_window,
    frame_count,
    framing_windows,
    istft,
    magnitude,
    stft,
    synthesis_window,
)

__all__ = [
    "DEFAULT_FRAMING",
    "FRAMINGS",
    "Framing",
    "HOP_SAMPLES",
    "N_BINS",
    "N_FFT",
    "SAMPLE_RATE",
    "analysis_window",
    "frame_count",
    "framing_windows",
    "get_framing",
    "istft",
    "magnitude",
    "stft",
    "synthesis_window",
]
