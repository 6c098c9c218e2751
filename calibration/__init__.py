"""calibration: the representative data int8 calibration runs on (below convert/, which
quantizes with it; the studies of how calibration choices cost SDR are convert's)."""

import tinysep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
