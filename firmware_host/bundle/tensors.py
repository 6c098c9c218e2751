"""The tensor and state records of a bundle manifest, parsed and checked.

``TensorSpec`` is one tensor entry (interpreter index, place among the model's inputs or
outputs, shape, dtype, scale and zero point) and quantizes / dequantizes its values;
``StatePair`` is a state input fed by a state output of the previous invoke. Errors name the
entry and what was expected. numpy only, Python 3.7.
"""

from __future__ import annotations

import math

import numpy as np

from .quantization import DTYPES, dequantize, quantize, requantize, requantize_rule


class BundleError(ValueError):
    """A bundle that cannot be used: the text names the file and field and what was expected."""


class TensorSpec:
    """One tensor entry of the manifest: interpreter index, shape, dtype, quantization."""

    def __init__(self, name, index, shape, dtype, scale=None, zero_point=None, position=None):
        self.name = name
        self.index = index
        self.position = position  # place among the model's inputs or outputs, when known
        self.shape = tuple(shape)
        self.dtype = dtype
        self.scale = scale
        self.zero_point = zero_point
        self.np_dtype, self.low, self.high = DTYPES[dtype]

    @property
    def quantized(self) -> bool:
        return self.dtype != "float32"

    @property
    def params(self) -> tuple:
        """``(scale, zero_point)``; ``(None, None)`` for a float32 tensor."""
        return self.scale, self.zero_point

    @classmethod
    def from_json(cls, entry, where: str) -> TensorSpec:
        """Parse a manifest tensor entry; ``where`` names it in errors (e.g. ``input``)."""
        if not isinstance(entry, dict):
            raise BundleError(f"{where} must be a tensor entry (a JSON object), got {entry!r}")
        name = entry.get("name")
        if not isinstance(name, str) or not name:
            raise BundleError(f"{where}.name must be a non-empty string, got {name!r}")
        index = entry.get("index")
        if not isinstance(index, int) or isinstance(index, bool) or index < 0:
            raise BundleError(f"{where}.index must be a tensor index >= 0, got {index!r}")
        shape = entry.get("shape")
        if not isinstance(shape, list) or not all(
            isinstance(d, int) and not isinstance(d, bool) and d > 0 for d in shape
        ):
            raise BundleError(f"{where}.shape must be a list of positive integers, got {shape!r}")
        dtype = entry.get("dtype")
        if dtype not in DTYPES:
            raise BundleError(f"{where}.dtype must be one of {sorted(DTYPES)}, got {dtype!r}")
        scale = zero_point = None
        if dtype != "float32":
            scale = entry.get("scale")
            if (
                not isinstance(scale, (int, float))
                or isinstance(scale, bool)
                or not (math.isfinite(scale) and scale > 0)
            ):
                raise BundleError(f"{where}.scale must be a positive number, got {scale!r}")
            zero_point = entry.get("zero_point")
            low, high = DTYPES[dtype][1:]
            if not isinstance(zero_point, int) or not low <= zero_point <= high:
                raise BundleError(
                    f"{where}.zero_point must be an integer in {low}..{high}, got {zero_point!r}"
                )
            scale = float(scale)
        position = entry.get("position")
        if position is not None and (not isinstance(position, int) or position < 0):
            raise BundleError(f"{where}.position must be an integer >= 0, got {position!r}")
        return cls(name, index, shape, dtype, scale, zero_point, position)

    def quantize(self, values: np.ndarray) -> np.ndarray:
        """Float values -> stored tensor values (identity for float32 tensors)."""
        if not self.quantized:
            return np.asarray(values, dtype=np.float32)
        return quantize(values, self.scale, self.zero_point, self.dtype)

    def dequantize(self, values: np.ndarray) -> np.ndarray:
        """Stored tensor values -> float32."""
        if not self.quantized:
            return np.asarray(values, dtype=np.float32)
        return dequantize(values, self.scale, self.zero_point)

    def zero(self) -> np.ndarray:
        """The stored value of 0.0 everywhere (a state before the first invoke)."""
        fill = self.zero_point if self.quantized else 0.0
        return np.full(self.shape, fill, dtype=self.np_dtype)

    def describe(self) -> str:
        text = f"{self.name} (index {self.index}) {self.dtype} {list(self.shape)}"
        if self.quantized:
            text += f" scale {self.scale:.9g} zero_point {self.zero_point}"
        return text


class StatePair:
    """A state input fed with a state output of the previous invoke (``copy`` or ``affine``)."""

    def __init__(self, input_spec: TensorSpec, output_spec: TensorSpec, requantize: str):
        self.input = input_spec
        self.output = output_spec
        self.requantize = requantize

    def carry(self, stored_output: np.ndarray) -> np.ndarray:
        """The next value of the state input, from the state output just produced.

        ``affine``: ``q_in = clip(round((q_out - zp_out) * s_out / s_in) + zp_in)``.
        """
        if self.requantize == "copy":  # interpreters hand out copies: no second copy needed
            return np.asarray(stored_output, dtype=self.input.np_dtype)
        if not (self.input.quantized and self.output.quantized):
            return self.input.quantize(self.output.dequantize(stored_output))
        return requantize(stored_output, self.output.params, self.input.params, self.input.dtype)


def state_rule(pair_in: TensorSpec, pair_out: TensorSpec) -> str:
    """The requantize rule of a state pair: ``copy`` when carrying the stored output over
    unchanged gives the same values, else ``affine`` (see ``requantize_rule``)."""
    if pair_in.dtype != pair_out.dtype:
        return "affine"
    return requantize_rule(pair_out.params, pair_in.params, pair_in.dtype)
