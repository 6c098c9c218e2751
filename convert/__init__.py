"""convert: trained Keras separator -> pruned, quantized, streaming TFLite -> deploy bundle."""

import tinysep  # noqa: F401  (sets TF_USE_LEGACY_KERAS before TensorFlow loads)
