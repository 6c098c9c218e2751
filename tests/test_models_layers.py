"""Each causal layer type: streaming == whole clip, and the math against a reference."""

from __future__ import annotations

import numpy as np
import pytest
import tf_keras as keras
from test_models_support import pair, randomize, stream_through

from tinysep.models import attention
from tinysep.models.blocks import squeeze_excite_frequency
from tinysep.models.causal import Graph, causal_depthwise
from tinysep.models.layers import BackgroundDeviation, FrameGroupNorm, Recurrence
from tinysep.models.unet_se_sru import _conv_glu_se

FRAMES = 12
CHANNELS = 6
TCN_PARAMS = {
    "norm": "batch",
    "groups": 2,
    "se_reduction": 2,
    "se_window": 4,
    "temporal_kernel": 3,
    "attention_dim": 4,
    "attention_window": 4,
}


def _depthwise(dilation):
    def build(graph, x):
        ctx = graph.context(x, 2 * dilation, "ctx")
        return causal_depthwise(graph, ctx, 3, dilation, "dw")

    return build


def _unet_level(norm_kind):
    params = {"time_kernel": 2, "norm": norm_kind, "groups": 2, "se": True, "se_reduction": 2}
    return lambda graph, x: _conv_glu_se(graph, x, 4, "enc", 2, params)


def _recurrent(cell, units=5):
    def build(graph, x):
        from tinysep.models.causal import conv1x1
        from tinysep.models.layers import CELL_GATES

        proj = conv1x1(x, CELL_GATES[cell] * units, "proj")
        h = conv1x1(x, units, "highway")
        inputs = [proj, h] if cell == "sru" else [proj]
        return graph.recurrence("rnn", cell, units, False, inputs)

    return build


LAYERS = {
    "depthwise-d1": ((1, CHANNELS), _depthwise(1)),
    "depthwise-d2": ((1, CHANNELS), _depthwise(2)),
    "depthwise-d3": ((1, CHANNELS), _depthwise(3)),
    "se-window": (
        (1, CHANNELS),
        lambda g, x: attention.output_gate(g, x, "se", "b", TCN_PARAMS),
    ),
    "cbam": ((1, CHANNELS), lambda g, x: attention.output_gate(g, x, "cbam", "b", TCN_PARAMS)),
    "self-attention": (
        (1, CHANNELS),
        lambda g, x: attention.output_gate(g, x, "self", "b", TCN_PARAMS),
    ),
    "selective-kernel": (
        (1, CHANNELS),
        lambda g, x: attention.selective_kernel(g, x, "b", 2, TCN_PARAMS),
    ),
    "frame-groupnorm": ((5, CHANNELS), lambda g, x: FrameGroupNorm(3, name="gn")(x)),
    "se-frequency": ((5, CHANNELS), lambda g, x: squeeze_excite_frequency(x, "se", 2)),
    "unet-level-groupnorm": ((9, 3), _unet_level("group")),
    "unet-level-batchnorm": ((9, 3), _unet_level("batch")),
    "sru": ((1, CHANNELS), _recurrent("sru")),
    "lstm": ((1, CHANNELS), _recurrent("lstm")),
    "gru": ((1, CHANNELS), _recurrent("gru")),
    "background-deviation": ((5, 1), lambda g, x: g.background_deviation(x, 0.8, "bg")),
}
STATEFUL = [k for k in LAYERS if k not in ("frame-groupnorm", "se-frequency")]


@pytest.mark.parametrize("frames_per_invoke", [1, 3])
@pytest.mark.parametrize("kind", list(LAYERS))
def test_streaming_layer_equals_whole_clip(kind, frames_per_invoke):
    shape, build = LAYERS[kind]
    whole, stream, graph = pair(build, shape, frames_per_invoke)
    x = np.random.default_rng(1).normal(0, 1, (1, FRAMES, *shape)).astype(np.float32)
    expected = np.asarray(whole(x, training=False))
    got = stream_through(stream, graph, x)
    assert got.shape == expected.shape
    np.testing.assert_allclose(got, expected, atol=1e-4, rtol=0)
    if kind in STATEFUL:
        # The states really carry the past: dropping them changes the output.
        assert graph.states
        wrong = stream_through(stream, graph, x, reset=True)
        assert np.max(np.abs(wrong - expected)) > 1e-3


def test_background_deviation_is_each_value_less_its_running_mean():
    """A reference loop over frames: the mean starts at zero and moves a fifth of the way
    to every new value; a value held steady fades to zero, a new one stands out."""
    x = np.zeros((2, 30, 3, 1), np.float32)
    x[:, :20] = 2.0
    x[1, 20:] = 5.0
    got = np.asarray(BackgroundDeviation(0.8)(x))
    mean = np.zeros((2, 3, 1))
    expected = np.empty_like(x)
    for t in range(x.shape[1]):
        mean = 0.8 * mean + 0.2 * x[:, t]
        expected[:, t] = x[:, t] - mean
    np.testing.assert_allclose(got, expected, atol=1e-5)
    assert got[0, 0, 0, 0] == pytest.approx(1.6)
    assert abs(got[0, 19, 0, 0]) < 0.03  # held for 20 frames: background
    assert got[1, 20, 0, 0] == pytest.approx(0.8 * (5.0 - 2.0), abs=0.03)
    with pytest.raises(ValueError, match="decay must be between 0 and 1"):
        BackgroundDeviation(1.0)


def test_dilated_depthwise_is_causal_and_dilated():
    """Output t = sum_j w_j * x[t - j*d] with zeros before the clip."""
    whole, _, _ = pair(_depthwise(2), (1, 1), 1)
    w = whole.get_layer("dw").get_weights()
    kernel, bias = w[0][:, 0, 0, 0], w[1][0]
    x = np.random.default_rng(2).normal(0, 1, (1, FRAMES, 1, 1)).astype(np.float32)
    y = np.asarray(whole(x))[0, :, 0, 0]
    padded = np.concatenate([np.zeros(4), x[0, :, 0, 0]])
    expected = [
        sum(kernel[j] * padded[t + 4 - (2 - j) * 2] for j in range(3)) + bias for t in range(FRAMES)
    ]
    np.testing.assert_allclose(y, expected, atol=1e-5)


def test_frame_groupnorm_matches_reference():
    x_in = keras.Input((None, 5, 6))
    model = keras.Model(x_in, FrameGroupNorm(3, name="gn")(x_in))
    randomize(model, seed=3)
    gamma, beta = model.get_layer("gn").get_weights()
    x = np.random.default_rng(4).normal(2, 3, (2, 7, 5, 6)).astype(np.float32)
    y = np.asarray(model(x))
    groups = x.reshape(2, 7, 5, 3, 2)
    mean = groups.mean(axis=(2, 4), keepdims=True)
    var = groups.var(axis=(2, 4), keepdims=True)
    expected = ((groups - mean) / np.sqrt(var + 1e-5)).reshape(x.shape) * gamma + beta
    np.testing.assert_allclose(y, expected, atol=1e-4)
    # Statistics are per frame: changing frame 3 leaves every other frame untouched.
    x2 = x.copy()
    x2[:, 3] *= 5.0
    y2 = np.asarray(model(x2))
    np.testing.assert_allclose(np.delete(y2, 3, axis=1), np.delete(y, 3, axis=1), atol=1e-5)


def _projection(cell, x, units, rng):
    """Random input projection (kernel, bias) and the projected sequence."""
    gates = {"sru": 3, "lstm": 4, "gru": 3}[cell] * units
    kernel = rng.normal(0, 0.4, (x.shape[-1], gates)).astype(np.float32)
    bias = rng.normal(0, 0.2, gates).astype(np.float32)
    return kernel, bias, (x @ kernel + bias)[:, :, None, :]


@pytest.mark.parametrize("cell", ["lstm", "gru"])
def test_recurrence_matches_keras_rnn(cell):
    """Our LSTM/GRU (projection outside, recurrence inside) == Keras' own layers."""
    rng = np.random.default_rng(5)
    units = 4
    x = rng.normal(0, 1, (2, 9, 3)).astype(np.float32)
    kernel, bias, proj = _projection(cell, x, units, rng)
    layer = Recurrence(cell, units)
    ours_in = keras.Input((None, 1, proj.shape[-1]))
    ours = keras.Model(ours_in, layer(ours_in))
    recurrent = rng.normal(0, 0.4, (units, proj.shape[-1])).astype(np.float32)
    if cell == "lstm":
        ours.set_weights([recurrent])
        reference = keras.layers.LSTM(units, return_sequences=True)
        reference(x)
        reference.set_weights([kernel, recurrent, bias])
    else:
        recurrent_bias = rng.normal(0, 0.2, proj.shape[-1]).astype(np.float32)
        ours.set_weights([recurrent, recurrent_bias])
        reference = keras.layers.GRU(units, return_sequences=True, reset_after=True)
        reference(x)
        reference.set_weights([kernel, recurrent, np.stack([bias, recurrent_bias])])
    np.testing.assert_allclose(np.asarray(ours(proj))[:, :, 0], np.asarray(reference(x)), atol=1e-5)


def _sru_reference(proj, x, units):
    """SRU, frame by frame: c = f c + (1 - f) xhat;  h = r tanh(c) + (1 - r) x."""
    sig = lambda z: 1 / (1 + np.exp(-z))  # noqa: E731
    c = np.zeros((proj.shape[0], units))
    out = []
    for t in range(proj.shape[1]):
        p = proj[:, t, 0]
        f, r, xhat = sig(p[:, :units]), sig(p[:, units : 2 * units]), p[:, 2 * units :]
        c = f * c + (1 - f) * xhat
        out.append(r * np.tanh(c) + (1 - r) * x[:, t, 0])
    return np.stack(out, axis=1)


def test_sru_matches_equations_and_bidirectional_runs_backwards():
    rng = np.random.default_rng(6)
    units = 4
    x = rng.normal(0, 1, (2, 8, 1, units)).astype(np.float32)
    _, _, proj = _projection("sru", x[:, :, 0], units, rng)
    forward_only = np.asarray(Recurrence("sru", units)([proj, x]))[:, :, 0]
    np.testing.assert_allclose(forward_only, _sru_reference(proj, x, units), atol=1e-5)

    _, _, proj_back = _projection("sru", x[:, :, 0], units, rng)
    both = np.asarray(
        Recurrence("sru", units, bidirectional=True)([np.concatenate([proj, proj_back], -1), x])
    )[:, :, 0]
    np.testing.assert_allclose(both[..., :units], forward_only, atol=1e-5)
    backward = _sru_reference(proj_back[:, ::-1], x[:, ::-1], units)[:, ::-1]
    np.testing.assert_allclose(both[..., units:], backward, atol=1e-5)


def test_bidirectional_recurrence_refuses_to_stream():
    graph = Graph(streaming=True, frames_per_invoke=1)
    x = graph.input((1, 12), "x")
    with pytest.raises(ValueError, match="cannot stream"):
        graph.recurrence("rnn", "gru", 4, True, [x])
