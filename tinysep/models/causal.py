"""Causal building blocks that build either the whole-clip graph or the streaming graph.

A model is written once, as a function of a :class:`Graph`. The same code, with the same
layer names, builds

- the *whole-clip* form (time axis ``None``): past context is zero padding (PAD), and
  recurrences scan over time; used for training and offline separation;
- the *streaming* form (``frames_per_invoke`` frames, batch 1, fixed shapes): past
  context comes from explicit state inputs (CONCATENATION) and the last frames are
  returned as new states (STRIDED_SLICE); recurrences unroll.

Zero padding at the start of a clip and a zeroed initial state are the same thing, so
the two forms agree frame for frame. Weights are copied between them by layer name.
"""

from __future__ import annotations

import math
from dataclasses import asdict, dataclass

import tf_keras as keras

from tinysep.models.layers import BackgroundDeviation, Recurrence, SliceAxis

L = keras.layers


@dataclass(frozen=True)
class StateTensor:
    """One state: the model input ``input`` is fed with the output ``output`` of the
    previous invoke (zeros before the first one)."""

    input: str
    output: str
    shape: tuple[int, ...]
    kind: str  # "context" (last frames of a tensor) or "recurrent"
    frames: int  # frames held (context) or 0 (recurrent)

    def to_json(self) -> dict:
        d = asdict(self)
        d["shape"] = list(self.shape)
        return d


class Graph:
    """Builder context: whole-clip (``streaming=False``) or streaming."""

    def __init__(self, streaming: bool, frames_per_invoke: int | None = None):
        if streaming and (not isinstance(frames_per_invoke, int) or frames_per_invoke < 1):
            raise ValueError(
                f"frames_per_invoke must be an integer >= 1, got {frames_per_invoke!r}"
            )
        self.streaming = streaming
        self.frames = frames_per_invoke if streaming else None
        self.batch = 1 if streaming else None
        self.states: list[StateTensor] = []
        self.state_inputs: list = []
        self.state_outputs: list = []

    def input(self, shape: tuple, name: str):
        """Model input with ``shape`` after (batch, time)."""
        return keras.Input((self.frames, *shape), batch_size=self.batch, name=name)

    def context(self, x, length: int, name: str):
        """``x`` with ``length`` past frames in front (zeros at the clip start)."""
        if length <= 0:
            return x
        if not self.streaming:
            return L.ZeroPadding2D(((length, 0), (0, 0)), name=f"{name}_pad")(x)
        inner = tuple(int(d) for d in x.shape[2:])
        state = keras.Input((length, *inner), batch_size=1, name=f"{name}_state")
        full = L.Concatenate(axis=1, name=f"{name}_cat")([state, x])
        new_state = SliceAxis(1, start=-length, name=f"{name}_state_out")(full)
        self._register(state, new_state, name, "context", length)
        return full

    def recurrence(self, name: str, cell: str, units: int, bidirectional: bool, inputs: list):
        """Run a :class:`Recurrence`; in streaming form its state becomes a model I/O."""
        if not self.streaming:
            return Recurrence(cell, units, bidirectional=bidirectional, name=name)(inputs)
        layer = Recurrence(cell, units, bidirectional=bidirectional, streaming=True, name=name)
        return self._carry_state(layer, inputs, layer.state_size, name)

    def background_deviation(self, x, decay: float, name: str):
        """``x`` less its running mean (:class:`BackgroundDeviation`); in streaming form the
        mean becomes a model I/O."""
        if not self.streaming:
            return BackgroundDeviation(decay, name=name)(x)
        layer = BackgroundDeviation(decay, streaming=True, name=name)
        return self._carry_state(layer, [x], math.prod(int(d) for d in x.shape[2:]), name)

    def _carry_state(self, layer, inputs: list, size: int, name: str):
        """Call streaming ``layer`` on ``inputs`` and its previous ``(1, size)`` state, which
        becomes a model input, and its new state a model output."""
        state = keras.Input((size,), batch_size=1, name=f"{name}_state")
        y, new_state = layer([*inputs, state])
        new_state = L.Activation("linear", name=f"{name}_state_out")(new_state)
        self._register(state, new_state, name, "recurrent", 0)
        return y

    def _register(self, state_in, state_out, name: str, kind: str, frames: int) -> None:
        self.state_inputs.append(state_in)
        self.state_outputs.append(state_out)
        self.states.append(
            StateTensor(
                input=f"{name}_state",
                output=f"{name}_state_out",
                shape=tuple(int(d) for d in state_in.shape),
                kind=kind,
                frames=frames,
            )
        )


def causal_depthwise(
    graph: Graph,
    context,
    kernel: int,
    dilation: int,
    name: str,
    skip: int = 0,
    use_bias: bool = True,
    initializer="glorot_uniform",
):
    """Causal dilated depthwise conv over time on a tensor from :meth:`Graph.context`.

    ``context`` holds at least ``(kernel - 1) * dilation`` past frames; ``skip`` leading
    frames beyond that are ignored. The whole-clip form is a dilated conv. The streaming
    form gathers each output frame's ``kernel`` taps with a strided slice: TFLite would
    lower a dilated conv to SPACE_TO_BATCH_ND, which neither TFLite Micro nor the Edge TPU
    accept. With one frame per invoke the taps are exactly one valid window; with more, the
    windows are placed side by side on the width axis, so one conv (one output scale once
    quantized) handles them all, and reshaped back to frames. (A conv strided along time
    only would not run on TensorFlow's plain CPU kernels; windows in the batch axis would
    break the Edge TPU's rule that only the last three axes exceed 1.)
    """
    if skip:
        context = SliceAxis(1, start=skip, name=f"{name}_skip")(context)
    args = dict(padding="valid", use_bias=use_bias, depthwise_initializer=initializer, name=name)
    if dilation == 1:
        return L.DepthwiseConv2D((kernel, 1), **args)(context)
    if not graph.streaming:
        return L.DepthwiseConv2D((kernel, 1), dilation_rate=(dilation, 1), **args)(context)
    span = (kernel - 1) * dilation + 1
    taps = [
        SliceAxis(1, start=f, stop=f + span, step=dilation, name=f"{name}_taps{f}")(context)
        for f in range(graph.frames)
    ]
    if len(taps) == 1:
        return L.DepthwiseConv2D((kernel, 1), **args)(taps[0])
    width, channels = (int(d) for d in context.shape[2:])
    windows = L.Concatenate(axis=2, name=f"{name}_taps")(taps)  # (1, kernel, frames * width, C)
    out = L.DepthwiseConv2D((kernel, 1), **args)(windows)  # (1, 1, frames * width, C)
    return L.Reshape((graph.frames, width, channels), name=f"{name}_frames")(out)


def conv1x1(x, channels: int, name: str, use_bias: bool = True, activation=None,
            initializer="glorot_uniform"):
    """Pointwise conv = a dense layer applied to every (frame, position).

    The whole-clip form (time axis ``None``) uses a 1x1 ``Conv2D``; the streaming form
    (fixed time axis) a ``Dense`` with the same weights, which TFLite turns into one
    FULLY_CONNECTED op: with per-tensor weights TFLite Micro then keeps no per-channel
    multipliers in its arena (a CONV_2D always holds 8 B per output channel there).
    :func:`tinysep.models.streaming.make_streaming_model` copies the kernel across.
    """
    if x.shape[1] is not None:
        y = L.Dense(channels, use_bias=use_bias, kernel_initializer=initializer, name=name)(x)
    else:
        y = L.Conv2D(channels, 1, use_bias=use_bias, kernel_initializer=initializer,
                     name=name)(x)
    if activation:
        y = L.Activation(activation, name=f"{name}_{activation}")(y)
    return y
