"""What a deploy bundle is made of: its format tag, file names, audio framing and the
quantization modes a manifest may name (docs/bundle.md). Each value is defined here once;
the exporter, the board agent and the host runner take it from here.
"""

from __future__ import annotations

from typing import NamedTuple

FORMAT = "tinysep-bundle"
FORMAT_VERSION = 1  # the version the exporter writes for the default framing
LONG_FORMAT_VERSION = 2  # the first version that may name another framing or pool bins
FORMAT_VERSIONS = (FORMAT_VERSION, LONG_FORMAT_VERSION)  # the versions a reader accepts
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.tflite"
EDGETPU_REPORT = "edgetpu_report.json"
C_SOURCE_FILE = "model_data.cc"  # the model as a C array, for firmware
C_HEADER_FILE = "model_data.h"
MICRO_OPS_FILE = "micro_ops.txt"  # the TFLite Micro op resolver the model needs
CALIBRATION_FILE = "calibration.json"  # what calibrated an integer model
# what edgetpu_compiler writes beside model.tflite, when it is on PATH at export
EDGETPU_COMPILER_FILES = ("model_edgetpu.tflite", "model_edgetpu.log")
# every file an export writes into a bundle folder
BUNDLE_FILES = frozenset({MANIFEST_FILE, MODEL_FILE, EDGETPU_REPORT, C_SOURCE_FILE,
                          C_HEADER_FILE, MICRO_OPS_FILE, CALIBRATION_FILE,
                          *EDGETPU_COMPILER_FILES})

SAMPLE_RATE = 16000  # Hz, mono
N_FFT = 512  # STFT frame (32 ms)
HOP_SAMPLES = 128  # STFT hop (8 ms, 125 hops per second)
N_BINS = N_FFT // 2 + 1
ANALYSIS_WINDOW = "hann_periodic"
SYNTHESIS_WINDOW = "hann_periodic_ola"

# The long framing: the same hop and output latency, a 1024-sample view of the past. Its
# analysis window rises over LONG_N_FFT - LONG_FALL samples and falls over LONG_FALL; its
# synthesis window is zero but for the newest LONG_SPAN samples.
LONG_N_FFT = 1024
LONG_FALL = 192
LONG_SPAN = 512
LONG_ANALYSIS_WINDOW = "hann_rise832_fall192"
LONG_SYNTHESIS_WINDOW = "hann512_over_rise832_fall192"


class Framing(NamedTuple):
    """One STFT framing a model and a bundle may use (causal frames, hop-aligned)."""

    name: str
    n_fft: int
    hop: int
    analysis_window: str
    synthesis_window: str
    synthesis_span: int  # the trailing samples of a frame its synthesis window covers
    format_version: int  # the oldest bundle format that may name it

    @property
    def n_bins(self) -> int:
        """Bins of one frame's spectrum: ``n_fft / 2 + 1``."""
        return self.n_fft // 2 + 1

    def latency_samples(self, frames_per_invoke: int) -> int:
        """From a sample's arrival to its output: the span and the invoke's buffering."""
        return self.synthesis_span + (frames_per_invoke - 1) * self.hop

    def delay_samples(self, frames_per_invoke: int) -> int:
        """How far a streamed output lags its input (the latency less the hop it waits for)."""
        return self.latency_samples(frames_per_invoke) - self.hop


DEFAULT_FRAMING = "hann512"
LONG_FRAMING = "long1024"
FRAMINGS = {
    DEFAULT_FRAMING: Framing(DEFAULT_FRAMING, N_FFT, HOP_SAMPLES, ANALYSIS_WINDOW,
                             SYNTHESIS_WINDOW, N_FFT, FORMAT_VERSION),
    LONG_FRAMING: Framing(LONG_FRAMING, LONG_N_FFT, HOP_SAMPLES, LONG_ANALYSIS_WINDOW,
                          LONG_SYNTHESIS_WINDOW, LONG_SPAN, LONG_FORMAT_VERSION),
}


def get_framing(name) -> Framing:
    """The framing called ``name`` (a Framing is returned as is); ValueError naming the known."""
    if isinstance(name, Framing):
        return name
    if name not in FRAMINGS:
        raise ValueError(f"framing must be one of {sorted(FRAMINGS)}, got {name!r}")
    return FRAMINGS[name]


def framing_of_windows(n_fft, analysis_window, synthesis_window):
    """The known framing with this ``n_fft`` and these window names, or None."""
    for framing in FRAMINGS.values():
        if (framing.n_fft, framing.analysis_window, framing.synthesis_window) == (
                n_fft, analysis_window, synthesis_window):
            return framing
    return None

# ``model.quantization`` values, and the integer dtype of the full-integer ones (their model
# input, output and states are integer tensors).
QUANTIZATIONS = ("int8", "int16x8", "dynamic", "float16", "float32")
FULL_INTEGER = {"int8": "int8", "int16x8": "int16"}
