"""The few custom Keras layers the separators need; everything else is a stock layer.

Each one lowers to TFLite builtins that have int8 kernels in TFLite Micro (LOG excepted:
:class:`LogCompression` only ever runs in float, in front of the int8 graph):

- :class:`LogCompression`: ``log1p(gain * magnitude)``, the input compression.
- :class:`SliceAxis`: a static (strided) slice along one axis -> STRIDED_SLICE.
- :class:`ReduceMean`: mean over one axis, kept -> MEAN.
- :class:`FrameGroupNorm`: GroupNorm whose statistics come from one frame only
  (frequency positions x channels of a group), so it is causal and stateless
  -> MEAN, CONV_2D (fixed block-averaging), ADD, MUL, RSQRT.
- :class:`Recurrence`: the elementwise / recurrent part of SRU, LSTM and GRU; the input
  projections are ordinary 1x1 convolutions batched over time outside the layer. Whole
  clips run a ``tf.scan``; the streaming form unrolls ``frames_per_invoke`` steps with
  an explicit state (STRIDED_SLICE, FULLY_CONNECTED, LOGISTIC, TANH, MUL, ADD, CONCAT).
- :class:`BackgroundDeviation`: each value's distance from its own slow running mean (a
  fixed-decay average per bin), so what has sounded steadily for seconds stands apart
  from what just began; whole clips scan, streaming carries the mean as a state
  (STRIDED_SLICE, MUL, ADD, CONCAT).

Layouts are 4-D ``(batch, time, width, channels)`` with time on axis 1. Each layer has
``get_prunable_weights`` so it can be registered as a tfmot ``PrunableLayer``
(``PrunableLayer.register(cls)`` for ``cls`` in :data:`CUSTOM_OBJECTS`).
"""

from __future__ import annotations

import numpy as np
import tensorflow as tf
import tf_keras as keras

PACKAGE = "tinysep"

RECURRENT_CELLS = ("sru", "lstm", "gru")
# Projection width (in units of `units`) that each cell expects from its input conv.
CELL_GATES = {"sru": 3, "lstm": 4, "gru": 3}


@keras.utils.register_keras_serializable(package=PACKAGE)
class LogCompression(keras.layers.Layer):
    """``log1p(gain * x)``: squeezes the magnitude's ~100 dB range into a few units.

    Runs in float only (TFLite Micro and the Edge TPU have no int8 LOG), so the
    streaming/int8 graph starts right after it and the board applies the same formula
    (:func:`tinysep.models.compress_magnitude`) before quantizing its input.
    """

    def __init__(self, gain: float = 100.0, **kwargs):
        super().__init__(**kwargs)
        self.gain = float(gain)

    def call(self, inputs):
        return tf.math.log1p(self.gain * tf.nn.relu(inputs))

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {**super().get_config(), "gain": self.gain}


@keras.utils.register_keras_serializable(package=PACKAGE)
class SliceAxis(keras.layers.Layer):
    """``x[..., start:stop:step, ...]`` on one axis with static bounds (STRIDED_SLICE)."""

    def __init__(self, axis: int, start=None, stop=None, step: int = 1, **kwargs):
        super().__init__(**kwargs)
        self.axis, self.start, self.stop, self.step = int(axis), start, stop, int(step)

    def call(self, inputs):
        index = [slice(None)] * inputs.shape.rank
        index[self.axis] = slice(self.start, self.stop, self.step)
        return inputs[tuple(index)]

    def compute_output_shape(self, input_shape):
        shape = list(tf.TensorShape(input_shape).as_list())
        n = shape[self.axis]
        shape[self.axis] = None if n is None else len(range(n)[self.start : self.stop : self.step])
        return tf.TensorShape(shape)

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {
            **super().get_config(),
            "axis": self.axis,
            "start": self.start,
            "stop": self.stop,
            "step": self.step,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class AppendZero(keras.layers.Layer):
    """One more channel, all zeros, after the last one: the fixed logit of an anchored
    softmax. The zeros are the first channel minus itself (SLICE, SUB, CONCATENATION), not
    a PAD, which the Edge TPU refuses on the channel axis."""

    def call(self, inputs):
        first = inputs[..., :1]
        return tf.concat([inputs, first - first], axis=-1)

    def compute_output_shape(self, input_shape):
        shape = list(tf.TensorShape(input_shape).as_list())
        shape[-1] = None if shape[-1] is None else shape[-1] + 1
        return tf.TensorShape(shape)

    def get_prunable_weights(self):
        return []


@keras.utils.register_keras_serializable(package=PACKAGE)
class ReduceMean(keras.layers.Layer):
    """Mean over one axis, kept as size 1 (MEAN). Used to squeeze over frequency."""

    def __init__(self, axis: int, **kwargs):
        super().__init__(**kwargs)
        self.axis = int(axis)

    def call(self, inputs):
        return tf.reduce_mean(inputs, axis=self.axis, keepdims=True)

    def compute_output_shape(self, input_shape):
        shape = list(tf.TensorShape(input_shape).as_list())
        shape[self.axis] = 1
        return tf.TensorShape(shape)

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {**super().get_config(), "axis": self.axis}


def _block_average(channels: int, groups: int, sign: float) -> np.ndarray:
    """(1, 1, C, C) kernel that maps each channel to ``sign`` x its group's mean."""
    size = channels // groups
    kernel = np.zeros((channels, channels), np.float32)
    for g in range(groups):
        kernel[g * size : (g + 1) * size, g * size : (g + 1) * size] = sign / size
    return kernel.reshape(1, 1, channels, channels)


@keras.utils.register_keras_serializable(package=PACKAGE)
class FrameGroupNorm(keras.layers.Layer):
    """GroupNorm over (width x channels-of-a-group) of each frame separately.

    Normalising over time (as GroupNorm does on a whole clip) would need future frames;
    per-frame statistics make the layer causal and stateless, identical in the
    whole-clip and streaming forms. Group means are a fixed block-averaging 1x1
    convolution (no SUB, no 5-D reshape): int8 ops MEAN, CONV_2D, ADD, MUL, RSQRT.
    """

    def __init__(self, groups: int = 4, epsilon: float = 1e-5, **kwargs):
        super().__init__(**kwargs)
        self.groups, self.epsilon = int(groups), float(epsilon)

    def build(self, input_shape):
        channels = int(input_shape[-1])
        if channels % self.groups:
            raise ValueError(
                f"{self.name}: {channels} channels do not split into {self.groups} groups"
            )
        self.gamma = self.add_weight(name="gamma", shape=(channels,), initializer="ones")
        self.beta = self.add_weight(name="beta", shape=(channels,), initializer="zeros")
        self._negative_mean = tf.constant(_block_average(channels, self.groups, -1.0))
        self._mean = tf.constant(_block_average(channels, self.groups, 1.0))
        super().build(input_shape)

    def _group_mean(self, x, kernel):
        if x.shape[2] != 1:
            x = tf.reduce_mean(x, axis=2, keepdims=True)
        return tf.nn.conv2d(x, kernel, strides=1, padding="VALID")

    def call(self, inputs):
        centered = inputs + self._group_mean(inputs, self._negative_mean)
        variance = self._group_mean(centered * centered, self._mean)
        return centered * tf.math.rsqrt(variance + self.epsilon) * self.gamma + self.beta

    def macs_per_frame(self, input_shape) -> int:
        channels = int(input_shape[-1])
        return 2 * channels * channels

    def get_prunable_weights(self):
        return []  # gamma/beta: one number per channel, not worth pruning

    def get_config(self):
        return {**super().get_config(), "groups": self.groups, "epsilon": self.epsilon}


def _neg_sigmoid(z):
    """``1 - sigmoid(z)`` written as ``sigmoid(-z)`` with a MUL (no SUB/NEG in int8 sets)."""
    return tf.sigmoid(z * -1.0)


@keras.utils.register_keras_serializable(package=PACKAGE)
class Recurrence(keras.layers.Layer):
    """Recurrent part of an SRU / LSTM / GRU over ``(batch, time, 1, features)``.

    Inputs: ``projection`` (the cell's gates for every frame, computed by a 1x1 conv
    batched over time: SRU eqs. 3.4-3.7), for ``sru`` also ``x`` (the highway input,
    ``units`` wide), and in streaming form the previous ``state`` of shape
    ``(1, state_size)``. Output: ``(batch, time, 1, units x directions)``, plus the new
    state when streaming.

    - ``sru``: ``c_t = f_t c_{t-1} + (1 - f_t) xhat_t``,
      ``h_t = r_t tanh(c_t) + (1 - r_t) x_t``; state ``c`` (no recurrent weights).
    - ``lstm``: gates ``i f g o``; state ``[h, c]``.
    - ``gru``: gates ``z r n`` with the reset applied after the recurrent matmul;
      state ``h``.
    """

    def __init__(
        self,
        cell: str,
        units: int,
        bidirectional: bool = False,
        streaming: bool = False,
        **kwargs,
    ):
        super().__init__(**kwargs)
        if cell not in RECURRENT_CELLS:
            raise ValueError(f"recurrent cell must be one of {RECURRENT_CELLS}, got {cell!r}")
        if bidirectional and streaming:
            raise ValueError("a bidirectional recurrence needs the whole clip: it cannot stream")
        self.cell, self.units = cell, int(units)
        self.bidirectional, self.streaming = bool(bidirectional), bool(streaming)
        self.directions = 2 if self.bidirectional else 1

    @property
    def state_size(self) -> int:
        return 2 * self.units if self.cell == "lstm" else self.units

    @property
    def projection_size(self) -> int:
        return CELL_GATES[self.cell] * self.units * self.directions

    def build(self, input_shape):
        gates = CELL_GATES[self.cell]
        self.recurrent_kernels, self.recurrent_biases = [], []
        for d in range(self.directions):
            if self.cell == "sru":
                continue
            self.recurrent_kernels.append(
                self.add_weight(
                    name=f"recurrent_kernel_{d}",
                    shape=(self.units, gates * self.units),
                    initializer="orthogonal",
                )
            )
            if self.cell == "gru":
                self.recurrent_biases.append(
                    self.add_weight(
                        name=f"recurrent_bias_{d}",
                        shape=(gates * self.units,),
                        initializer="zeros",
                    )
                )
        super().build(input_shape)

    # --- one time step ------------------------------------------------------------
    def _step(self, direction: int, p, x, state):
        """One frame: ``p`` (B, gates*units), ``x`` (B, units) or None, ``state``."""
        u = self.units
        if self.cell == "sru":
            z_f, z_r, x_hat = p[:, :u], p[:, u : 2 * u], p[:, 2 * u :]
            c = tf.sigmoid(z_f) * state + _neg_sigmoid(z_f) * x_hat
            h = tf.sigmoid(z_r) * tf.tanh(c) + _neg_sigmoid(z_r) * x
            return h, c
        if self.cell == "lstm":
            h_prev, c_prev = state[:, :u], state[:, u:]
            z = p + tf.matmul(h_prev, self.recurrent_kernels[direction])
            i, f, g, o = z[:, :u], z[:, u : 2 * u], z[:, 2 * u : 3 * u], z[:, 3 * u :]
            c = tf.sigmoid(f) * c_prev + tf.sigmoid(i) * tf.tanh(g)
            h = tf.sigmoid(o) * tf.tanh(c)
            return h, tf.concat([h, c], axis=-1)
        # gru
        r_h = tf.matmul(state, self.recurrent_kernels[direction]) + self.recurrent_biases[direction]
        z_pre = p[:, :u] + r_h[:, :u]
        r = tf.sigmoid(p[:, u : 2 * u] + r_h[:, u : 2 * u])
        n = tf.tanh(p[:, 2 * u :] + r * r_h[:, 2 * u :])
        h = tf.sigmoid(z_pre) * state + _neg_sigmoid(z_pre) * n
        return h, h

    # --- whole clip: scan over time -------------------------------------------------
    def _scan(self, direction: int, p, x, reverse: bool):
        batch = tf.shape(p)[0]
        p_t = tf.transpose(p[:, :, 0, :], (1, 0, 2))  # (T, B, P)
        x_t = tf.transpose(x[:, :, 0, :], (1, 0, 2)) if x is not None else tf.zeros_like(p_t)
        initial = tf.zeros((batch, self.state_size), p.dtype)

        def step(carry, inputs):
            _, state = carry
            p_i, x_i = inputs
            return self._step(direction, p_i, x_i if x is not None else None, state)

        h0 = tf.zeros((batch, self.units), p.dtype)
        hs, _ = tf.scan(step, (p_t, x_t), initializer=(h0, initial), reverse=reverse)
        return tf.transpose(hs, (1, 0, 2))[:, :, tf.newaxis, :]

    def call(self, inputs):
        inputs = list(inputs) if isinstance(inputs, (list, tuple)) else [inputs]
        p = inputs.pop(0)
        x = inputs.pop(0) if self.cell == "sru" else None
        width = CELL_GATES[self.cell] * self.units
        if not self.streaming:
            outs = [
                self._scan(d, p[..., d * width : (d + 1) * width], x, reverse=d == 1)
                for d in range(self.directions)
            ]
            return outs[0] if len(outs) == 1 else tf.concat(outs, axis=-1)
        state = inputs.pop(0)
        frames = p.shape[1]
        outs = []
        for t in range(frames):
            p_t = tf.reshape(p[:, t : t + 1], (-1, width))
            x_t = tf.reshape(x[:, t : t + 1], (-1, self.units)) if x is not None else None
            h, state = self._step(0, p_t, x_t, state)
            outs.append(tf.reshape(h, (-1, 1, 1, self.units)))
        y = outs[0] if frames == 1 else tf.concat(outs, axis=1)
        return [y, state]

    def compute_output_shape(self, input_shape):
        shape = input_shape[0] if isinstance(input_shape, (list, tuple)) else input_shape
        shape = tf.TensorShape(shape).as_list()
        out = tf.TensorShape(shape[:-1] + [self.units * self.directions])
        if self.streaming:
            return [out, tf.TensorShape([shape[0], self.state_size])]
        return out

    def macs_per_frame(self, input_shape) -> int:
        """Recurrent matmuls per frame (the input projections are counted as convs)."""
        if self.cell == "sru":
            return 0
        return self.directions * self.units * CELL_GATES[self.cell] * self.units

    def get_prunable_weights(self):
        return list(self.recurrent_kernels)

    def get_config(self):
        return {
            **super().get_config(),
            "cell": self.cell,
            "units": self.units,
            "bidirectional": self.bidirectional,
            "streaming": self.streaming,
        }


@keras.utils.register_keras_serializable(package=PACKAGE)
class BackgroundDeviation(keras.layers.Layer):
    """``x_t - m_t`` with ``m_t = decay * m_{t-1} + (1 - decay) * x_t`` per position, over
    ``(batch, time, width, channels)``; ``m`` starts at zero, as the streaming state does.

    Written as ``decay * (x_t - m_{t-1})`` so one frame is two ADDs and three MULs (two of
    them by -1: the int8 op sets here avoid SUB). In streaming form the inputs are
    ``[x, state]`` (state ``(1, width * channels)``, the mean after the previous frame) and
    the outputs ``[deviation, new_state]``.
    """

    def __init__(self, decay: float, streaming: bool = False, **kwargs):
        super().__init__(**kwargs)
        decay = float(decay)
        if not 0.0 < decay < 1.0:
            raise ValueError(f"decay must be between 0 and 1 (exclusive), got {decay}")
        self.decay, self.streaming = decay, bool(streaming)

    def _step(self, x, mean):
        deviation = (x + mean * -1.0) * self.decay
        return deviation, x + deviation * -1.0

    def call(self, inputs):
        if not self.streaming:
            x = inputs
            shape = tf.shape(x)
            frames = tf.transpose(tf.reshape(x, (shape[0], shape[1], -1)), (1, 0, 2))

            def step(carry, x_t):
                return self._step(x_t, carry[1])

            zeros = tf.zeros_like(frames[0])
            deviations, _ = tf.scan(step, frames, initializer=(zeros, zeros))
            return tf.reshape(tf.transpose(deviations, (1, 0, 2)), shape)
        x, mean = inputs
        width = int(np.prod(x.shape[2:]))
        outs = []
        for t in range(int(x.shape[1])):
            deviation, mean = self._step(tf.reshape(x[:, t : t + 1], (-1, width)), mean)
            outs.append(tf.reshape(deviation, (-1, 1, *x.shape[2:])))
        y = outs[0] if len(outs) == 1 else tf.concat(outs, axis=1)
        return [y, mean]

    def compute_output_shape(self, input_shape):
        if not self.streaming:
            return tf.TensorShape(input_shape)
        return [tf.TensorShape(shape) for shape in input_shape]

    def macs_per_frame(self, input_shape) -> int:
        """Three multiplies per value and frame (by the decay and two sign flips);
        ``input_shape`` is the values' (the state's is not passed)."""
        return 3 * int(np.prod(tf.TensorShape(input_shape).as_list()[2:]))

    def get_prunable_weights(self):
        return []

    def get_config(self):
        return {**super().get_config(), "decay": self.decay, "streaming": self.streaming}


CUSTOM_OBJECTS = {
    cls.__name__: cls
    for cls in (
        LogCompression, SliceAxis, ReduceMean, FrameGroupNorm, Recurrence, BackgroundDeviation
    )
}
