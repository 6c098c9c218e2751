"""The board agent: runs ON the board (Coral Dev Board, Raspberry Pi, any Linux board).

``python3 -m firmware_host.board --port DEVICE --bundle DIR [--edgetpu]`` serves the wire
protocol with a deploy bundle's model. Python 3.7+, the standard library, numpy and a TFLite
runtime only; it never imports ``tinysep`` or TensorFlow (unless TensorFlow is the runtime).
Modules: ``runtime`` (which TFLite), ``model_check`` (the interpreter held against the
manifest of ``firmware_host.bundle``), ``dsp`` (streaming STFT),
``pipeline`` (the per-hop loop), ``micro`` (TFLite Micro behind the same interface), ``agent``
(protocol handlers), ``__main__`` (command line).
"""

from __future__ import annotations

from firmware_host.bundle import Bundle, BundleError, TensorSpec, read_bundle

from .agent import AGENT_VERSION, BoardAgent
from .model_check import check_model
from .pipeline import StreamingSeparator
from .runtime import Runtime, RuntimeUnavailable, load_runtime

__all__ = [
    "AGENT_VERSION",
    "BoardAgent",
    "Bundle",
    "BundleError",
    "Runtime",
    "RuntimeUnavailable",
    "StreamingSeparator",
    "TensorSpec",
    "check_model",
    "load_runtime",
    "read_bundle",
]
