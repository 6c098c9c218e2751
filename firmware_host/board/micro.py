"""TensorFlow Lite Micro as a board runtime: its own interpreter and kernels (the ``tflite-micro``
Python package), so a host or Linux board runs the model exactly as a Cortex-M port would.

TFLite Micro addresses inputs and outputs by their place in the subgraph's lists and reports
no tensor names or indices; ``MicroInterpreter`` reads both from the model's flatbuffer and
offers the interface the pipeline uses with the LiteRT interpreters (``get_input_details``,
``set_tensor`` / ``get_tensor`` by tensor index, ``invoke``). The tensor arena is the size the
manifest measured at export (``arena_tflite_micro.bytes``) plus ``ARENA_MARGIN``. A failed
allocation can leave the process unstable, so it raises ``MicroAllocationFailed``, which the
agent does not survive: it stops with that message instead of running on.
"""

from __future__ import annotations

import importlib

import numpy as np

MODULE = "tflite_micro.python.tflite_micro.runtime"
VERSION_MODULE = "tflite_micro.python.tflite_micro._version"
ARENA_MARGIN = 1024  # above the measured arena: another TFLite Micro build may need a bit more
FALLBACK_ARENA = 4 << 20  # without a measured figure: generous on any Linux board
FALLBACK_MODEL_FACTOR = 10  # ... or ten times the model, if that is more


class MicroAllocationFailed(RuntimeError):
    """TFLite Micro could not allocate the model in its tensor arena (or could not prepare it)."""


def import_micro():
    """(runtime module, version) of the ``tflite-micro`` package; ImportError when absent."""
    module = importlib.import_module(MODULE)
    try:
        version = importlib.import_module(VERSION_MODULE).__version__
    except (ImportError, AttributeError):
        version = "?"
    return module, version


def arena_size(measured, model_bytes: int) -> tuple:
    """(bytes, where the figure comes from) for a model of ``model_bytes`` bytes.

    ``measured`` is the manifest's ``arena_tflite_micro.bytes`` (None when absent).
    """
    if measured is not None:
        return (
            int(measured) + ARENA_MARGIN,
            f"manifest arena_tflite_micro.bytes {int(measured):,} + {ARENA_MARGIN:,} margin",
        )
    size = max(FALLBACK_ARENA, FALLBACK_MODEL_FACTOR * int(model_bytes))
    return size, "no arena_tflite_micro.bytes in the manifest: a generous default"


def _io_tensors(module, model: bytes, where: str) -> tuple:
    """([(tensor index, name)] of the inputs, same of the outputs), read from the flatbuffer."""
    schema = module.schema_fb
    try:
        root = schema.Model.GetRootAsModel(model, 0)
        if root.SubgraphsLength() != 1:
            raise ValueError(f"{root.SubgraphsLength()} subgraphs, the agent runs exactly one")
        graph = root.Subgraphs(0)

        def named(indices):
            pairs = []
            for index in indices:
                raw = graph.Tensors(int(index)).Name()
                name = raw.decode("utf-8", "replace") if raw else "tensor %d" % int(index)
                pairs.append((int(index), name))
            return pairs

        return named(graph.InputsAsNumpy()), named(graph.OutputsAsNumpy())
    except Exception as exc:  # a damaged flatbuffer must not reach TFLite Micro's C++ code
        raise ValueError(f"{where} is not a usable TFLite model: {exc}") from None


def _details(raw: dict, index: int, name: str) -> dict:
    """One TFLite Micro tensor description in the LiteRT ``get_input_details`` form."""
    params = raw.get("quantization_parameters") or {}
    scales = np.asarray(params.get("scales", []), dtype=np.float32)
    zero_points = np.asarray(params.get("zero_points", []), dtype=np.int32)
    scale = float(scales[0]) if scales.size == 1 else 0.0
    zero_point = int(zero_points[0]) if zero_points.size == 1 else 0
    return {
        "name": name,
        "index": index,
        "shape": np.asarray(raw["shape"], dtype=np.int32),
        "dtype": np.dtype(raw["dtype"]).type,
        "quantization": (scale, zero_point),
        "quantization_parameters": {
            "scales": scales,
            "zero_points": zero_points,
            "quantized_dimension": int(params.get("quantized_dimension", 0)),
        },
    }


class MicroInterpreter:
    """A TFLite Micro interpreter behind the LiteRT interpreter's interface (module docstring).

    Only model inputs can be set and only model outputs read; ``get_tensor`` returns a copy.
    """

    def __init__(self, module, model: bytes, arena_bytes: int, arena_origin: str, where: str):
        inputs, outputs = _io_tensors(module, model, where)
        self.arena_bytes = int(arena_bytes)
        try:
            self._micro = module.Interpreter.from_bytes(model, arena_size=self.arena_bytes)
        except RuntimeError as exc:
            raise MicroAllocationFailed(
                f"TFLite Micro could not allocate {where} in a tensor arena of "
                f"{self.arena_bytes:,} bytes ({arena_origin}): {exc}. An arena too small for "
                "the model is the usual cause (TFLite Micro's messages before this one say how "
                "much was missing); re-export the bundle to measure it"
            ) from None
        self._inputs = [
            _details(self._micro.get_input_details(place), index, name)
            for place, (index, name) in enumerate(inputs)
        ]
        self._outputs = [
            _details(self._micro.get_output_details(place), index, name)
            for place, (index, name) in enumerate(outputs)
        ]
        self._input_place = dict((d["index"], place) for place, d in enumerate(self._inputs))
        self._output_place = dict((d["index"], place) for place, d in enumerate(self._outputs))

    def allocate_tensors(self) -> None:
        """Nothing to do: TFLite Micro allocated the arena when it was made."""

    def get_input_details(self) -> list:
        return [dict(d) for d in self._inputs]

    def get_output_details(self) -> list:
        return [dict(d) for d in self._outputs]

    def set_tensor(self, index: int, value: np.ndarray) -> None:
        """Copy ``value`` into the model input with tensor index ``index``."""
        place = self._input_place.get(int(index))
        if place is None:
            raise ValueError(
                f"tensor {index} is not a model input (TFLite Micro sets inputs only: "
                f"{sorted(self._input_place)})"
            )
        self._micro.set_input(np.ascontiguousarray(value), place)

    def get_tensor(self, index: int) -> np.ndarray:
        """A copy of the model output with tensor index ``index`` after the last invoke."""
        place = self._output_place.get(int(index))
        if place is None:
            raise ValueError(
                f"tensor {index} is not a model output (TFLite Micro reads outputs only: "
                f"{sorted(self._output_place)})"
            )
        return self._micro.get_output(place)

    def invoke(self) -> None:
        self._micro.invoke()
