"""tinysep: a small vocals/accompaniment separator from Keras training to an int8 edge board."""

import os

# tensorflow-model-optimization works only with Keras 2 (tf_keras); this must be set
# before TensorFlow is first imported anywhere in the process.
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

__version__ = "0.1.0"
