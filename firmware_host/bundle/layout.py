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

# ``model.quantization`` values, and the integer dtype of the full-integer ones (their model
# input, output and states are integer tensors).
QUANTIZATIONS = ("int8", "int16x8", "dynamic", "float16", "float32")
FULL_INTEGER = {"int8": "int8", "int16x8": "int16"}
