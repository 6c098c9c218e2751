import os

# Before numpy/TensorFlow load: Keras 2 for tfmot, quiet TF logs, one BLAS thread per
# process (the suite runs on 2 shared cores; threaded BLAS only contends there).
os.environ.setdefault("TF_USE_LEGACY_KERAS", "1")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("OPENBLAS_NUM_THREADS", "1")
