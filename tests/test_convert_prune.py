"""Pruning: tfmot magnitude pruning reaches its sparsity and compresses; structured pruning
removes channels for real (exactly, when they are dead) and refuses fixed channels."""

from __future__ import annotations

import json

import numpy as np
import pytest
from convert_helpers import SMALL, clips, corpus, fitted_model_folder, load

from cli.main import main
from convert.prune import check_sparsity, gzip_size, magnitude_prune, narrow_model, weights_bytes
from tinysep.models import build_model, macs_per_hop, predict_masks


def _magnitudes(frames: int = 40) -> np.ndarray:
    rng = np.random.default_rng(4)
    mag = rng.gamma(0.5, 0.1, (frames, 257))
    mag[:, rng.integers(0, 257, 10)] += rng.uniform(1, 20, (frames, 10))
    return mag.astype(np.float32)


def test_magnitude_pruning_reaches_the_target_and_compresses():
    model = load("dualgate-tcn")
    pruned, report = magnitude_prune(model, list(clips("train")), 0.6, 16, min_weights=256,
                                     chunk_frames=32)
    assert report["sparsity"] == pytest.approx(0.6, abs=0.01)
    assert len(report["layers"]) >= 8
    for row in report["layers"]:
        assert row["sparsity"] == pytest.approx(0.6, abs=0.02), row["layer"]
    small = [layer.name for layer in pruned.layers
             if getattr(layer, "kernel", None) is not None and layer.kernel.shape.num_elements()
             < 256]
    for name in small:  # layers under min_weights stay dense
        assert np.mean(pruned.get_layer(name).kernel.numpy() == 0) < 0.1
    assert gzip_size(weights_bytes(pruned)) < 0.75 * gzip_size(weights_bytes(model))
    # Still the same separator, only sparser: outputs stay close.
    mag = _magnitudes()
    assert np.mean(np.abs(predict_masks(pruned, mag) - predict_masks(model, mag))) < 0.1
    assert pruned.tinysep_config == model.tinysep_config


def test_sparsity_must_be_in_zero_one():
    assert check_sparsity(0) == 0.0
    for bad in (1.0, -0.1, 1.5, "half"):
        with pytest.raises(ValueError, match=r"sparsity must be in \[0, 1\)"):
            check_sparsity(bad)


def test_channel_pruning_removes_dead_channels_exactly():
    # se_reduction 64: the squeeze is one channel wide at 32 and at 28 hidden channels, so
    # only the dead hidden channels go.
    model = build_model("dualgate-tcn", **SMALL["dualgate-tcn"], se_reduction=64)
    rng = np.random.default_rng(0)
    for layer in model.layers:  # random, non-trivial BatchNorm statistics
        if layer.__class__.__name__ == "BatchNormalization":
            gamma, beta, mean, var = layer.get_weights()
            layer.set_weights([rng.uniform(0.5, 1.5, gamma.shape), rng.normal(0, .1, beta.shape),
                               rng.normal(0, .1, mean.shape), rng.uniform(.5, 2, var.shape)])
    dead = [3, 10, 17, 30]  # hidden channels of every block that carry nothing
    for b in range(SMALL["dualgate-tcn"]["blocks"]):
        for suffix, axis in (("in", -1), ("in_gate", -1), ("out", 2), ("se_reduce", 2)):
            layer = model.get_layer(f"s0b{b}_{suffix}")
            kernel, bias = layer.get_weights()
            index = [slice(None)] * kernel.ndim
            index[axis] = dead
            kernel[tuple(index)] = 0
            if axis == -1:
                bias[dead] = 0
            layer.set_weights([kernel, bias])
        for name in (f"s0b{b}_in_norm", f"s0b{b}_dw_norm"):
            gamma, beta, mean, var = model.get_layer(name).get_weights()
            gamma[dead], beta[dead], mean[dead] = 0, 0, 0
            model.get_layer(name).set_weights([gamma, beta, mean, var])
        kernel, bias = model.get_layer(f"s0b{b}_dw").get_weights()
        kernel[..., dead, :], bias[dead] = 0, 0
        model.get_layer(f"s0b{b}_dw").set_weights([kernel, bias])
    narrow, report = narrow_model(model, hidden=28)
    mag = _magnitudes()
    np.testing.assert_allclose(predict_masks(narrow, mag), predict_masks(model, mag), atol=1e-5)
    assert report["macs_per_hop_after"] == macs_per_hop(narrow) < report["macs_per_hop_before"]
    assert narrow.get_layer("s0b0_in").kernel.shape[-1] == 28


def test_channel_pruning_narrows_residual_and_hidden():
    model = load("dualgate-tcn")
    narrow, report = narrow_model(model, residual=12, hidden=24)
    assert report["params_after"] < 0.8 * report["params_before"]
    assert report["macs_per_hop_after"] < 0.75 * report["macs_per_hop_before"]
    assert narrow.get_layer("in_proj").kernel.shape[-1] == 12
    # Keeping the strongest channels keeps most of the function (before any fine-tuning).
    mag = _magnitudes()
    wide, thin = predict_masks(model, mag), predict_masks(narrow, mag)
    assert np.corrcoef(wide.ravel(), thin.ravel())[0, 1] > 0.5
    same, _ = narrow_model(model, residual=16, hidden=32)
    np.testing.assert_array_equal(predict_masks(same, mag), wide)


def test_channel_pruning_refuses_channels_a_layer_fixes():
    unet = build_model("unet-se-sru", **SMALL["unet-se-sru"])
    with pytest.raises(ValueError, match="pass through a layer that fixes them"):
        narrow_model(unet, channels=[8, 12])


def test_cli_prune(tmp_path, capsys):
    out = tmp_path / "pruned"
    args = ["prune", str(fitted_model_folder("dualgate-tcn")), "--data", str(corpus()),
            "--out", str(out), "--narrow", "hidden=24", "--steps", "0", "--max-clips", "2",
            "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "structured:" in printed and "gzip" in printed
    report = json.loads((out / "prune_report.json").read_text())
    assert report["structured"]["macs_per_hop_after"] < report["structured"]["macs_per_hop_before"]
    assert report["sizes_after"]["int8_tflite_bytes"] < report["sizes_before"][
        "int8_tflite_bytes"]
    assert json.loads((out / "config.json").read_text())["options"]["hidden"] == 24
    # its record: how to make it again, what it came from, the music it has heard
    record = json.loads((out / "training.json").read_text())
    assert record["command"].startswith("tinysep prune ") and "--narrow hidden=24" in record[
        "command"]
    source = fitted_model_folder("dualgate-tcn")
    assert record["pruned_from"]["folder"] == str(source.resolve())
    assert record["corpora"]["train"]["folder"] == str(corpus().resolve())
    assert record["corpora"]["train"]["engines"]["vocals"]
    assert not list(tmp_path.glob(".*partial*"))
    assert main(args) == 2
    assert "already exists" in capsys.readouterr().err
    (tmp_path / "notes").mkdir()
    (tmp_path / "notes" / "keep.txt").write_text("mine")
    assert main([*args[:5], str(tmp_path / "notes"), *args[6:], "--force"]) == 2
    assert "not a model folder" in capsys.readouterr().err
    assert main(["prune", str(out), "--data", str(corpus()), "--out", str(tmp_path / "x"),
                 "--sparsity", "1.0"]) == 2
    assert "[0, 1)" in capsys.readouterr().err
