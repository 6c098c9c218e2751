"""Registry, configs, save/load, MAC counting, MCU budget, separation and `tinysep models`."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tf_keras as keras
from test_models_support import randomize

from cli.main import main
from tinysep.models import (
    MODELS,
    build_model,
    copy_matching_layers,
    count_macs,
    count_params,
    load_model,
    macs_per_hop,
    magnitude_l1,
    make_config,
    make_streaming_model,
    model_config,
    model_from_config,
    predict_masks,
    resolved_params,
    save_model,
    separate,
    streaming_spec,
)
from tinysep.models.layers import FrameGroupNorm, Recurrence
from tinysep.models.summary import MCU_BUDGET

SMALL_TCN = {"residual": 8, "hidden": 8, "blocks": 2, "repeats": 1}


@pytest.mark.parametrize("name", sorted(MODELS))
def test_tiny_preset_fits_the_cortex_m7_budget(name):
    model = build_model(name)  # "tiny" is the default
    assert model_config(model)["preset"] == "tiny"
    assert count_params(model) <= MCU_BUDGET["params"]
    assert macs_per_hop(model) <= MCU_BUDGET["macs_per_hop"]
    # Per hop is the same whether counted on the whole-clip or the streaming form.
    assert macs_per_hop(make_streaming_model(model, 4)) == macs_per_hop(model)
    # Larger presets exist and are larger.
    sizes = [count_params(build_model(name, p)) for p in ("tiny", "small")]
    assert sizes[1] > 2 * sizes[0]


def test_tcn_macs_match_the_architecture_formula():
    p = resolved_params(make_config("dualgate-tcn"))  # the tiny preset
    r, h, k, blocks, repeats = p["residual"], p["hidden"], p["kernel"], p["blocks"], p["repeats"]
    red, window = p["se_reduction"], p["se_window"]
    per_block = 2 * r * h + k * h + h * (h // red) + window * (h // red) + (h // red) * h + h * r
    expected = 257 * r + repeats * blocks * per_block + r * 2 * 257
    assert macs_per_hop(build_model("dualgate-tcn")) == expected


def test_the_long_pooled_tiny_has_the_weights_of_the_softmax_tiny():
    """513 bins, pooled in pairs from bin 257: 385 features in, one anchored logit per
    feature out, so the projections are 385 x 64 and 64 x 385 (today's: 257 x 64 and
    64 x 514) and each pair of upper bins shares its mask."""
    plain = build_model("dualgate-tcn")
    model = build_model("dualgate-tcn", framing="long1024", pool_above=257, mask="anchored")
    assert model.input_shape == (None, None, 513) and model.output_shape == (None, None, 513, 2)
    assert model.get_layer("in_proj").weights[0].shape == (1, 1, 385, 64)
    assert model.get_layer("mask_proj").weights[0].shape == (1, 1, 64, 385)
    assert model.get_layer("input_norm").weights[0].shape == (385,)
    assert abs(count_params(model) - count_params(plain)) < 0.01 * count_params(plain)
    assert macs_per_hop(model) <= MCU_BUDGET["macs_per_hop"]
    masks = predict_masks(randomize(model, seed=3, scale=0.2),
                          np.random.default_rng(0).uniform(0, 2, (6, 513)).astype(np.float32))
    np.testing.assert_array_equal(masks[:, 257::2], masks[:, 258::2])
    assert np.abs(masks[:, 255] - masks[:, 256]).max() > 0  # the fine bins keep their own


def test_tcn_encoder_and_refiner_macs_and_shapes():
    """Each encoder level halves the bins (257 -> 129 -> 65); the refiner works on all 257."""
    base = build_model("dualgate-tcn", **SMALL_TCN)
    grown = build_model("dualgate-tcn", **SMALL_TCN, encoder=[4, 6], refine=5,
                        encoder_kernel=3, refine_kernel=7)
    assert tuple(grown.get_layer("enc0").output.shape[2:]) == (129, 4)
    assert tuple(grown.get_layer("enc1").output.shape[2:]) == (65, 6)
    encoder = 129 * 3 * 1 * 4 + 65 * 3 * 4 * 6
    encoder_projection = 65 * 6 * 8  # added to the linear projection of all 257 bins
    refiner = 257 * 7 * (2 + 1) * 5 + 257 * 7 * 5 * 2
    assert macs_per_hop(grown) - macs_per_hop(base) == encoder + encoder_projection + refiner
    mags = np.random.default_rng(0).gamma(0.5, 0.1, (12, 257)).astype(np.float32)
    assert predict_masks(grown, mags).shape == (12, 257, 2)


def test_the_background_view_costs_one_refiner_channel_and_three_multiplies_a_bin():
    """The refiner's first conv sees one more channel; the running mean multiplies each bin
    by the decay and flips two signs per frame, and adds one state value per bin."""
    refined = build_model("dualgate-tcn", **SMALL_TCN, refine=5, refine_kernel=7)
    viewed = build_model("dualgate-tcn", **SMALL_TCN, refine=5, refine_kernel=7, background=50)
    assert macs_per_hop(viewed) - macs_per_hop(refined) == 257 * 7 * 1 * 5 + 3 * 257
    stream = make_streaming_model(viewed, 1)
    assert macs_per_hop(stream) == macs_per_hop(viewed)
    spec = streaming_spec(stream)
    assert [s.shape for s in spec.states if s.input == "background_state"] == [(1, 257)]


def test_a_model_grown_by_an_encoder_and_a_refiner_starts_as_the_smaller_one():
    """With every layer of the smaller model copied, the grown model gives the same masks."""
    base = randomize(build_model("dualgate-tcn", **SMALL_TCN), seed=3, scale=0.3)
    grown = build_model("dualgate-tcn", **SMALL_TCN, encoder=[4, 4], refine=4)
    fresh = copy_matching_layers(base, grown)
    assert sorted(fresh) == ["enc0", "enc0_norm", "enc1", "enc1_norm", "enc_proj",
                             "refine0", "refine1"]
    mags = np.random.default_rng(1).gamma(0.5, 0.1, (20, 257)).astype(np.float32)
    np.testing.assert_allclose(predict_masks(grown, mags), predict_masks(base, mags), atol=1e-6)
    # ... and both are real paths: once their zero-started layer is not zero, the masks
    # change (a change common to both sources would cancel in the softmax: random weights).
    rng = np.random.default_rng(2)
    for name in ("enc_proj", "refine1"):
        layer = grown.get_layer(name)
        start = layer.get_weights()
        layer.set_weights([rng.normal(0, 0.3, w.shape).astype(np.float32) for w in start])
        assert np.abs(predict_masks(grown, mags) - predict_masks(base, mags)).max() > 0.01
        layer.set_weights(start)


def test_a_wider_model_grown_from_a_narrower_one_starts_as_it():
    """Widening the residual path and the blocks keeps every layer (none starts fresh) and
    the masks; the new channels are live: once they feed the old outputs, the masks move."""
    base = randomize(build_model("dualgate-tcn", **SMALL_TCN), seed=5, scale=0.3)
    wider = dict(SMALL_TCN, residual=12, hidden=16)
    grown = build_model("dualgate-tcn", **wider)
    assert copy_matching_layers(base, grown) == []
    assert count_params(grown) > count_params(base)
    mags = np.random.default_rng(1).gamma(0.5, 0.1, (20, 257)).astype(np.float32)
    expected = predict_masks(base, mags)
    assert np.mean((expected > 0.01) & (expected < 0.99)) > 0.5  # not saturated
    np.testing.assert_allclose(predict_masks(grown, mags), expected, atol=1e-5)
    kernel, bias = grown.get_layer("mask_proj").get_weights()
    assert np.all(kernel[..., 8:, :] == 0)  # new residual channels do not reach the masks yet
    kernel[..., 8:, :] = np.random.default_rng(2).normal(0, 0.3, kernel[..., 8:, :].shape)
    grown.get_layer("mask_proj").set_weights([kernel, bias])
    assert np.abs(predict_masks(grown, mags) - expected).max() > 0.01
    # A narrower target, or another depth, does not take the weights.
    narrower = build_model("dualgate-tcn", **dict(SMALL_TCN, residual=6))
    assert "in_proj" in copy_matching_layers(base, narrower)


def test_a_deeper_model_grown_from_a_shallower_one_starts_as_it():
    """Blocks added at the end of each stack (longer dilations) start with their output
    projection at zero, so the masks are the smaller model's; the rest of each new block is
    initialized as usual, and once its projection is not zero the masks move."""
    base = randomize(build_model("dualgate-tcn", **SMALL_TCN), seed=6, scale=0.3)
    deeper = build_model("dualgate-tcn", **dict(SMALL_TCN, blocks=3, repeats=2))
    fresh = copy_matching_layers(base, deeper)
    new_blocks = ("s0b2", "s1b0", "s1b1", "s1b2")
    assert fresh and all(name.startswith(new_blocks) for name in fresh)
    assert {f"{block}_out" for block in new_blocks} <= set(fresh)
    for block in new_blocks:
        assert not np.any(deeper.get_layer(f"{block}_out").get_weights()[0])
        assert np.any(deeper.get_layer(f"{block}_in").get_weights()[0])
    mags = np.random.default_rng(1).gamma(0.5, 0.1, (40, 257)).astype(np.float32)
    expected = predict_masks(base, mags)
    assert np.mean((expected > 0.01) & (expected < 0.99)) > 0.5  # not saturated
    np.testing.assert_allclose(predict_masks(deeper, mags), expected, atol=1e-5)
    layer = deeper.get_layer("s0b2_out")
    kernel, bias = layer.get_weights()
    layer.set_weights([np.random.default_rng(2).normal(0, 0.3, kernel.shape), bias])
    assert np.abs(predict_masks(deeper, mags) - expected).max() > 0.01
    # A layer that exists but does not fit is not zeroed: it keeps its initialization.
    narrower = build_model("dualgate-tcn", **dict(SMALL_TCN, residual=6))
    assert "s0b0_out" in copy_matching_layers(base, narrower)
    assert np.any(narrower.get_layer("s0b0_out").get_weights()[0])


@pytest.mark.parametrize(
    "sources", [["vocals", "accompaniment"], ["vocals", "drums", "bass", "other"]]
)
def test_a_softmax_model_converts_exactly_to_anchored_masks(sources):
    """The mask projection of a softmax model becomes an anchored one (every logit minus
    the last source's) with the same masks and one source's weights fewer."""
    base = randomize(build_model("dualgate-tcn", sources=sources, **SMALL_TCN), seed=4, scale=0.3)
    anchored = build_model("dualgate-tcn", sources=sources, mask="anchored", **SMALL_TCN)
    assert copy_matching_layers(base, anchored) == []
    assert count_params(base) - count_params(anchored) == (SMALL_TCN["residual"] + 1) * 257
    mags = np.random.default_rng(1).gamma(0.5, 0.1, (20, 257)).astype(np.float32)
    expected = predict_masks(base, mags)
    assert np.mean((expected > 0.01) & (expected < 0.99)) > 0.5  # not saturated
    np.testing.assert_allclose(predict_masks(anchored, mags), expected, atol=1e-5)
    # Only softmax converts: from sigmoid masks the projection starts fresh.
    sigmoid = build_model("dualgate-tcn", sources=sources, mask="sigmoid", **SMALL_TCN)
    assert copy_matching_layers(sigmoid, anchored) == ["mask_proj"]


def test_mac_counter_counts_each_layer_kind():
    x = keras.Input((None, 7, 2))
    y = keras.layers.Conv2D(4, (2, 3), strides=(1, 2), padding="valid")(x)  # width 3
    y = keras.layers.DepthwiseConv2D((3, 1), depth_multiplier=2)(y)  # 8 channels
    y = keras.layers.Dense(5)(y)
    y = FrameGroupNorm(5)(y)
    y = keras.layers.Reshape((-1, 1, 15))(y)
    y = keras.layers.Conv2D(16, 1)(y)
    y = Recurrence("lstm", 4)(y)
    model = keras.Model(x, y)
    expected = (
        3 * (2 * 3 * 2 * 4)  # conv: 3 positions x kernel 2x3 x cin 2 x cout 4
        + 3 * (3 * 4 * 2)  # depthwise: 3 positions x kernel 3 x 4 channels x multiplier 2
        + 3 * (8 * 5)  # dense on 3 positions
        + 2 * 5 * 5  # group norm: two 5x5 group-averaging maps
        + 15 * 16  # 1x1 conv
        + 4 * 16  # lstm recurrent matmul: units x 4 units
    )
    assert count_macs(model) == expected


def test_config_is_json_and_rebuilds_the_same_model():
    config = make_config("unet-se-sru", "tiny", recurrent="gru", channels=[8, 16], units=12)
    restored = json.loads(json.dumps(config))
    assert restored == {
        "name": "unet-se-sru",
        "preset": "tiny",
        "options": {"recurrent": "gru", "channels": [8, 16], "units": 12},
    }
    a, b = model_from_config(config), model_from_config(restored)
    assert [layer.name for layer in a.layers] == [layer.name for layer in b.layers]
    assert count_params(a) == count_params(b)
    assert model_config(b) == {**restored, "params": resolved_params(restored)}
    assert model_config(b)["params"]["units"] == 12
    assert isinstance(b.get_layer("rnn"), Recurrence) and b.get_layer("rnn").cell == "gru"


@pytest.mark.parametrize(
    ("name", "preset", "options", "message"),
    [
        ("nope", "tiny", {}, "unknown model 'nope'"),
        ("dualgate-tcn", "huge", {}, "no preset 'huge'"),
        ("dualgate-tcn", "tiny", {"width": 3}, r"unknown options key\(s\) \['width'\]"),
        ("dualgate-tcn", "tiny", {"attention": "global"}, "attention must be one of"),
        ("dualgate-tcn", "tiny", {"blocks": 0}, "blocks must be a whole number from 1 to 12"),
        ("dualgate-tcn", "tiny", {"blocks": 40}, "blocks must be a whole number from 1 to 12"),
        ("dualgate-tcn", "tiny", {"residual": 100000}, "residual must be a whole number from 1 "
                                                       "to 4096, got 100000"),
        ("dualgate-tcn", "tiny", {"hidden": True}, "hidden must be a whole number"),
        ("dualgate-tcn", "tiny", {"input_gate": "maybe"}, "input_gate must be true or false"),
        ("dualgate-tcn", "tiny", {"norm": "layer"}, "norm must be one of"),
        ("dualgate-tcn", "tiny", {"encoder": 8}, "encoder must be a list of whole numbers"),
        ("dualgate-tcn", "tiny", {"encoder": [8, 0]}, "encoder must be a list of whole"),
        ("dualgate-tcn", "tiny", {"encoder": [2] * 5}, "encoder has at most 4 levels"),
        ("dualgate-tcn", "tiny", {"refine": -1}, "refine must be a whole number from 0"),
        ("dualgate-tcn", "tiny", {"refine_kernel": 0}, "refine_kernel must be a whole number"),
        ("dualgate-tcn", "tiny", {"background": -5}, "background must be a whole number"),
        ("dualgate-tcn", "tiny", {"background": 125}, "background feeds the refiner"),
        ("dualgate-tcn", "tiny", {"framing": "long"}, r"framing must be one of \['hann512', "),
        ("dualgate-tcn", "tiny", {"pool_above": -1}, "pool_above must be a whole number from 0"),
        ("dualgate-tcn", "tiny", {"pool_above": 256}, r"pool_above must leave an even number "
         r"of bins \(at least 2\) from it to the last of the 257 bins of framing 'hann512'"),
        ("dualgate-tcn", "tiny", {"framing": "long1024", "pool_above": 258},
         "the 513 bins of framing 'long1024', got 258"),
        ("dualgate-tcn", "tiny", {"framing": "long1024", "pool_above": 513}, "got 513"),
        ("dualgate-tcn", "tiny", {"framing": "long1024", "pool_above": 257, "refine": 4},
         "pool_above cannot be combined with encoder or refine"),
        ("unet-se-sru", "tiny", {"recurrent": "rnn"}, "recurrent must be one of"),
        ("unet-se-sru", "tiny", {"channels": []}, "channels must be a non-empty list"),
        ("unet-se-sru", "tiny", {"channels": [True, 2]}, "channels must be a non-empty list"),
        ("unet-se-sru", "tiny", {"se": 0}, "se must be true or false, got 0"),
        ("unet-se-sru", "tiny", {"bidirectional": "no"}, "bidirectional must be true or false"),
        ("unet-se-sru", "tiny", {"channels": [4] * 8}, "levels need at least"),
        ("unet-se-sru", "tiny", {"mask": "relu"}, "mask must be one of"),
    ],
)
def test_bad_configs_name_the_problem(name, preset, options, message):
    with pytest.raises(ValueError, match=message):
        build_model(name, preset, **options)


def test_save_and_load_round_trip(tmp_path):
    model = randomize(build_model("dualgate-tcn", attention="cbam", **SMALL_TCN), seed=3)
    folder = save_model(model, tmp_path / "run")
    record = json.loads((folder / "config.json").read_text())
    assert record["name"] == "dualgate-tcn" and record["options"]["attention"] == "cbam"
    loaded = load_model(folder)
    mag = np.random.default_rng(0).gamma(1.0, 2.0, (9, 257)).astype(np.float32)
    np.testing.assert_array_equal(predict_masks(loaded, mag), predict_masks(model, mag))
    assert model_config(loaded) == model_config(model)


def test_load_errors_name_the_file(tmp_path):
    with pytest.raises(FileNotFoundError, match="does not exist"):
        load_model(tmp_path / "missing")
    with pytest.raises(FileNotFoundError, match="config.json is missing"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text("{not json")
    with pytest.raises(ValueError, match="config.json is not valid JSON"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps({"name": "resnet"}))
    with pytest.raises(ValueError, match=r"config.json: unknown model 'resnet'"):
        load_model(tmp_path)
    (tmp_path / "config.json").write_text(json.dumps(make_config("dualgate-tcn", **SMALL_TCN)))
    with pytest.raises(FileNotFoundError, match="model.weights.h5 is missing"):
        load_model(tmp_path)


def test_separate_resynthesises_both_sources():
    rng = np.random.default_rng(4)
    mixture = (0.3 * rng.standard_normal(4000)).astype(np.float32)
    model = randomize(build_model("dualgate-tcn", **SMALL_TCN), seed=5, scale=0.2)
    out = separate(model, mixture)
    assert set(out) == {"vocals", "accompaniment"}
    for estimate in out.values():
        assert estimate.shape == mixture.shape and estimate.dtype == np.float32
    # Softmax masks sum to one, so the two estimates add back to the mixture ...
    np.testing.assert_allclose(out["vocals"] + out["accompaniment"], mixture, atol=1e-4)
    # ... while neither estimate is the mixture itself.
    assert np.max(np.abs(out["vocals"] - mixture)) > 0.01
    sigmoid = randomize(build_model("dualgate-tcn", mask="sigmoid", **SMALL_TCN), seed=5)
    summed = sum(separate(sigmoid, mixture).values())
    assert np.max(np.abs(summed - mixture)) > 0.01
    with pytest.raises(ValueError, match="mono audio"):
        separate(model, np.zeros((100, 2), np.float32))


def test_magnitude_l1_loss():
    mixture = np.array([[[2.0, 4.0]]], np.float32)  # (1, 1, 2 bins)
    masks = np.array([[[[0.5, 0.5], [0.25, 0.75]]]], np.float32)
    targets = np.array([[[[1.0, 2.0], [1.0, 3.0]]]], np.float32)
    # estimates [[1, 1], [1, 3]] -> errors [0, 1, 0, 0]
    assert float(magnitude_l1(mixture, targets, masks)) == pytest.approx(0.25)


def test_models_command_json_and_table(tmp_path, capsys):
    assert main(["models", "--model", "dualgate-tcn", "--preset", "tiny", "--json", "-"]) == 0
    report = json.loads(capsys.readouterr().out)
    (row,) = report["rows"]
    model = build_model("dualgate-tcn")
    assert row["params"] == count_params(model)
    assert row["macs_per_hop"] == macs_per_hop(model)
    assert row["state_values"] == streaming_spec(make_streaming_model(model)).state_values
    assert row["fits_mcu_budget"] is True

    out = tmp_path / "models.json"
    args = [
        "models",
        "--model",
        "unet-se-sru",
        "--preset",
        "tiny",
        "--option",
        "recurrent=lstm",
        "--option",
        "bidirectional=true",
        "--json",
        str(out),
    ]
    assert main(args) == 0
    table = capsys.readouterr().out
    assert "unet-se-sru" in table and "offline only" in table and f"wrote {out}" in table
    (row,) = json.loads(out.read_text())["rows"]
    assert row["options"] == {"recurrent": "lstm", "bidirectional": True}
    assert row["streamable"] is False and row["fits_mcu_budget"] is False


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--model", "nope"], "unknown model"),
        (["--option", "novalue"], "KEY=VALUE"),
        (["--model", "dualgate-tcn", "--preset", "tiny", "--option", "blocks=0"], "blocks"),
    ],
)
def test_models_command_bad_input(args, message, capsys):
    assert main(["models", *args]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.slow  # minutes on 2 cores: `make test-slow` (CI runs it)
def test_the_stored_preset_sizes_are_what_the_presets_build():
    """`tinysep models` reads preset_sizes.json instead of building every preset: it must
    hold exactly what building them gives."""
    from tinysep.models import MODELS
    from tinysep.models.registry import make_config
    from tinysep.models.summary import describe_config, preset_rows, stored_preset_sizes

    configs = [make_config(n, p) for n in MODELS for p in MODELS[n].presets]
    stored = stored_preset_sizes()
    assert len(stored) == len(configs)
    assert preset_rows(configs) == [describe_config(c) for c in configs]
    custom = make_config("dualgate-tcn", "tiny", hidden=8)
    assert preset_rows([custom])[0]["params"] < stored[next(iter(stored))]["params"]
