"""What a deploy bundle is made of: its format tag, file names, audio framing and the
quantization modes a manifest may name (docs/bundle.md). Each value is defined here once;
the exporter, the board agent and the host runner take it from here.
"""

from __future__ import annotations

FORMAT = "tinysep-bundle"
FORMAT_VERSION = 1  # the version the exporter writes
FORMAT_VERSIONS = (FORMAT_VERSION,)  # the versions a reader accepts
MANIFEST_FILE = "manifest.json"
MODEL_FILE = "model.tflite"
EDGETPU_REPORT = "edgetpu_report.json"

SAMPLE_RATE = 16000  # Hz, mono
N_FFT = 512  # STFT frame (32 ms)
HOP_SAMPLES = 128  # STFT hop (8 ms, 125 hops per second)
N_BINS = N_FFT // 2 + 1
ANALYSIS_WINDOW = "hann_periodic"
SYNTHESIS_WINDOW = "hann_periodic_ola"

# ``model.quantization`` values, and the integer dtype of the full-integer ones (their model
# input, output and states are integer tensors).
QUANTIZATIONS = ("int8", "int16x8", "dynamic", "float16", "float32")
FULL_INTEGER = {"int8": "int8", "int16x8": "int16"}
