"""calibration: representative data, calibration studies and quantization error reports."""

import tinysep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
