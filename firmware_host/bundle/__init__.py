"""The deploy bundle contract (docs/bundle.md): what the exporter writes, what the board agent
and the host runner read. numpy only, Python 3.7, so a board carries it with the agent.

Modules: ``layout`` (format tag, file names, audio framing, quantization modes),
``quantization`` (the integer arithmetic), ``features`` (the model input from STFT frames),
``tensors`` (tensor and state records), ``manifest`` (read and check a bundle folder).
"""

from __future__ import annotations

from .manifest import Bundle, read_bundle, sha256_of
from .tensors import BundleError, StatePair, TensorSpec

__all__ = ["Bundle", "BundleError", "StatePair", "TensorSpec", "read_bundle", "sha256_of"]
