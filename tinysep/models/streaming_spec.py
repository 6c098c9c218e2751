"""What a streaming model is, for the exporter and the streaming runners: a frozen
:class:`StreamingSpec`.

:func:`tinysep.models.make_streaming_model` builds the spec together with the Keras model
and records it with :func:`attach_streaming_spec`; every reader takes it back with
:func:`streaming_spec` (or :func:`find_streaming_spec` where a model may be whole-clip).
The record is kept beside the model, in a table keyed weakly by the model object, not as
an attribute on it: Keras tracks what is set on a model, and the spec is not part of its
graph or weights.
"""

from __future__ import annotations

import json
import weakref
from collections.abc import Mapping
from dataclasses import dataclass
from types import MappingProxyType
from typing import Any

import numpy as np
import tf_keras as keras

from firmware_host.bundle.layout import DEFAULT_FRAMING
from tinysep.models.causal import StateTensor


@dataclass(frozen=True)
class StreamingSpec:
    """What the exporter writes to the manifest about a streaming model.

    ``input`` holds the first input's ``name``, ``shape`` and ``transform`` (the board's
    input transform); ``output`` the masks' ``name``, ``shape``, ``sources`` and
    ``meaning``; ``states`` the state pairs in the order of the model's extra inputs and
    outputs. ``sources``, ``hop``, ``n_fft`` and ``framing`` (its name) are the mask order
    and the STFT framing one invoke's frames belong to.
    """

    frames_per_invoke: int
    input: Mapping[str, Any]
    output: Mapping[str, Any]
    states: tuple[StateTensor, ...] = ()
    sources: tuple[str, ...] = ()
    hop: int = 0
    n_fft: int = 0
    framing: str = DEFAULT_FRAMING

    def __post_init__(self) -> None:
        if not isinstance(self.frames_per_invoke, int) or self.frames_per_invoke < 1:
            raise ValueError(
                f"frames_per_invoke must be an integer >= 1, got {self.frames_per_invoke!r}"
            )
        for key in ("name", "shape"):
            if key not in self.input or key not in self.output:
                raise ValueError(f"a streaming spec's input and output need a {key!r}")
        # read-only views, so a reader cannot change what the exporter will write
        object.__setattr__(self, "input", MappingProxyType(dict(self.input)))
        object.__setattr__(self, "output", MappingProxyType(dict(self.output)))
        object.__setattr__(self, "states", tuple(self.states))
        object.__setattr__(self, "sources", tuple(self.sources))

    @property
    def input_name(self) -> str:
        return str(self.input["name"])

    @property
    def output_name(self) -> str:
        return str(self.output["name"])

    @property
    def state_values(self) -> int:
        """Numbers held in all states (= int8 bytes once quantized)."""
        return int(sum(np.prod(s.shape) for s in self.states))

    def zero_states(self) -> dict[str, np.ndarray]:
        """The states before the first invoke."""
        return {s.input: np.zeros(s.shape, np.float32) for s in self.states}

    def to_json(self) -> dict:
        """The spec as plain JSON values."""
        return {
            "frames_per_invoke": self.frames_per_invoke,
            "input": json.loads(json.dumps(dict(self.input))),
            "output": json.loads(json.dumps(dict(self.output))),
            "states": [s.to_json() for s in self.states],
            "state_values": self.state_values,
            "sources": list(self.sources),
            "hop": self.hop,
            "n_fft": self.n_fft,
            "framing": self.framing,
        }

    def __str__(self) -> str:
        return json.dumps(self.to_json(), indent=2)


_SPECS: weakref.WeakKeyDictionary = weakref.WeakKeyDictionary()


def attach_streaming_spec(model: keras.Model, spec: StreamingSpec) -> keras.Model:
    """Record ``spec`` as the streaming spec of ``model`` (returned for chaining)."""
    if not isinstance(spec, StreamingSpec):
        raise TypeError(f"expected a StreamingSpec, got {type(spec).__name__}")
    _SPECS[model] = spec
    return model


def find_streaming_spec(model: keras.Model) -> StreamingSpec | None:
    """The spec of a streaming model, ``None`` for any other model."""
    try:
        return _SPECS.get(model)
    except TypeError:  # an object that cannot be weakly referenced holds no spec
        return None


def streaming_spec(model: keras.Model) -> StreamingSpec:
    """The spec of a model made by :func:`tinysep.models.make_streaming_model`."""
    spec = find_streaming_spec(model)
    if spec is None:
        name = getattr(model, "name", type(model).__name__)
        raise ValueError(f"model {name!r} is not a tinysep streaming model")
    return spec
