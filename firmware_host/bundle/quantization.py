"""The bundle's integer arithmetic, one implementation for the exporter, the board and the
host (docs/bundle.md): ``q = clip(round_half_away(x / scale) + zero_point)``,
``x = (q - zero_point) * scale``, and the re-quantization of a state output into its state
input. numpy only, Python 3.7.
"""

from __future__ import annotations

import numpy as np

# dtype name -> (numpy type, lowest, highest stored value)
DTYPES = {
    "int8": (np.int8, -128, 127),
    "int16": (np.int16, -32768, 32767),
    "float32": (np.float32, None, None),
}
REQUANTIZE = ("copy", "affine")


def round_half_away(values: np.ndarray) -> np.ndarray:
    """Round to the nearest integer, ties away from zero (C's ``roundf``; float64 math, exact
    for |x| < 2**52)."""
    values = np.asarray(values, dtype=np.float64)
    return np.copysign(np.floor(np.abs(values) + 0.5), values)


def quantize(values: np.ndarray, scale: float, zero_point: int, dtype: str) -> np.ndarray:
    """Float values (taken as float32) -> stored values of integer ``dtype``."""
    np_dtype, low, high = DTYPES[dtype]
    scaled = np.asarray(values, dtype=np.float32).astype(np.float64) / scale
    q = round_half_away(scaled) + zero_point
    return np.clip(q, low, high).astype(np_dtype)


def dequantize(values: np.ndarray, scale: float, zero_point: int) -> np.ndarray:
    """Stored integer values -> float32, in float32 math."""
    shifted = np.asarray(values).astype(np.float32) - np.float32(zero_point)
    return shifted * np.float32(scale)


def requantize(stored: np.ndarray, source: tuple, target: tuple, dtype: str) -> np.ndarray:
    """Stored values with ``source`` (scale, zero_point) -> the same values stored with
    ``target``: ``q_in = clip(round((q_out - zp_out) * s_out / s_in) + zp_in)``."""
    (s_out, z_out), (s_in, z_in) = source, target
    np_dtype, low, high = DTYPES[dtype]
    value = (np.asarray(stored).astype(np.float64) - z_out) * s_out
    q = round_half_away(value / s_in) + z_in
    return np.clip(q, low, high).astype(np_dtype)


def requantize_rule(source: tuple, target: tuple, dtype: str) -> str:
    """``"copy"`` when re-quantizing from ``source`` to ``target`` (scale, zero_point) is the
    identity on every value of ``dtype`` (same zero point, scales equal to well under half a
    step over the whole range; always for float32), else ``"affine"``."""
    if dtype == "float32":
        return "copy"
    (s_out, z_out), (s_in, z_in) = source, target
    low, high = DTYPES[dtype][1:]
    if z_out == z_in and abs(s_out / s_in - 1.0) * (high - low) < 0.5:
        return "copy"
    return "affine"
