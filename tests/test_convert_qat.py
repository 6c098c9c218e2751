"""Quantization-aware training (custom QuantizeConfigs for the layers tfmot does not know),
pruning-preserving QAT, and `tinysep quantize` with its reports."""

from __future__ import annotations

import json

import numpy as np
import pytest
from convert_helpers import SMALL, clips, corpus, fitted_model_folder, load

from calibration.representative import build_representative_set
from cli.main import main
from convert.prune import sparsity_report
from convert.qat import qat_fine_tune, quantize_aware
from convert.quantize import quantize_stream
from tinysep.models import (
    build_model,
    compress_magnitude,
    make_streaming_model,
    predict_masks,
)


def _magnitudes(frames: int = 30) -> np.ndarray:
    rng = np.random.default_rng(2)
    return rng.gamma(0.5, 0.2, (frames, 257)).astype(np.float32)


def _wrapper_configs(qat_model) -> dict[str, str]:
    return {
        layer.layer.name: type(layer.quantize_config).__name__
        for layer in qat_model.layers
        if hasattr(layer, "quantize_config") and layer.quantize_config is not None
    }


def test_qat_model_fake_quantizes_every_layer_kind():
    model = build_model("dualgate-tcn", **{**SMALL["dualgate-tcn"], "blocks": 2})
    mag = _magnitudes()
    features = compress_magnitude(mag, 100.0)[None]
    qat = quantize_aware(model, features=features)
    configs = _wrapper_configs(qat)
    assert configs["s0b0_in_gated"] == "OutputQuantizeConfig"  # Multiply: no tfmot default
    assert configs["s0b0_in"] == "Default8BitQuantizeConfig"  # tfmot's own, per tensor
    assert "compress" not in configs  # the board compresses in float, then quantizes
    fake, real = qat(features).numpy()[0], predict_masks(model, mag)
    # Ranges initialised from the float model: int8 noise, not a different model.
    assert 0 < np.mean(np.abs(fake - real)) < 0.05
    untuned = quantize_aware(model)(features).numpy()[0]  # tfmot's default [-6, 6] ranges
    assert np.mean(np.abs(untuned - real)) > 2 * np.mean(np.abs(fake - real))
    unet = quantize_aware(build_model("unet-se-sru", **SMALL["unet-se-sru"]))
    configs = _wrapper_configs(unet)
    for layer in ("rnn", "enc0_norm", "enc0_se_squeeze", "enc0_glu"):  # custom layers
        assert configs[layer] == "OutputQuantizeConfig", layer


def _kernel_scales(qat_model, layer: str) -> int:
    """How many scales the fake quantizer of ``layer``'s kernel keeps."""
    wrapper = next(w for w in qat_model.layers if getattr(w, "layer", w).name == layer)
    kernel_min = next(w for w in wrapper.weights if w.name.split("/")[-1].startswith("kernel_min"))
    return int(np.prod(kernel_min.shape))


def test_qat_rounds_weights_with_the_exports_scales():
    """Per tensor by default, as the bundle is exported; per channel when asked, as
    ``--per-channel`` exports."""
    model = load("dualgate-tcn")
    channels = int(model.get_layer("in_proj").kernel.shape[-1])
    assert _kernel_scales(quantize_aware(model), "in_proj") == 1
    assert _kernel_scales(quantize_aware(model, per_channel=True), "in_proj") == channels > 1


def test_qat_fine_tuning_returns_a_deployable_model():
    model = build_model("dualgate-tcn", **{**SMALL["dualgate-tcn"], "blocks": 2})
    trained, report = qat_fine_tune(model, list(clips("train")), 6, chunk_frames=32)
    assert report["steps"] == 6 and np.isfinite(report["loss_last"])
    assert trained.tinysep_config == model.tinysep_config
    mag = _magnitudes()
    changed = np.mean(np.abs(predict_masks(trained, mag) - predict_masks(model, mag)))
    assert 0 < changed < 0.05  # trained on, not replaced
    stream = make_streaming_model(trained, 1)
    rep = build_representative_set(stream, list(clips("train")), 32, progress=False)
    assert quantize_stream(stream, "int8", rep).tied_states  # converts like any model


def test_qat_toward_the_float_model_learns_its_separation():
    """Trained toward its own float separation, the fake-quantized model starts close to its
    target (its int8 rounding is all that differs), far closer than to the stems, and trains."""
    model = load("dualgate-tcn")
    mag = _magnitudes()
    first, moved = {}, {}
    for target in ("stems", "float"):
        trained, report = qat_fine_tune(model, list(clips("train")), 4, chunk_frames=32,
                                        learning_rate=1e-4, target=target)
        assert report["target"] == target
        first[target] = report["loss_first"]
        moved[target] = np.mean(np.abs(predict_masks(trained, mag) - predict_masks(model, mag)))
    assert 0 < first["float"] < first["stems"] / 2, first
    assert moved["float"] > 0
    with pytest.raises(ValueError, match="target must be one of"):
        qat_fine_tune(model, list(clips("train")), 1, target="teacher")


def test_pruning_preserving_qat_keeps_zeros_and_plain_qat_does_not():
    model = build_model("dualgate-tcn", **{**SMALL["dualgate-tcn"], "blocks": 2})
    for layer in model.layers:
        if layer.__class__.__name__ == "Conv2D" and layer.kernel.shape.num_elements() >= 256:
            kernel, *rest = layer.get_weights()
            kernel[np.abs(kernel) < np.quantile(np.abs(kernel), 0.5)] = 0
            layer.set_weights([kernel, *rest])
    before = sparsity_report(model, 256)["sparsity"]
    assert before == pytest.approx(0.5, abs=0.01)
    kept, _ = qat_fine_tune(model, list(clips("train")), 4, chunk_frames=32,
                            preserve_sparsity=True, learning_rate=1e-3)
    lost, _ = qat_fine_tune(model, list(clips("train")), 4, chunk_frames=32,
                            learning_rate=1e-3)
    assert sparsity_report(kept, 256)["sparsity"] == pytest.approx(before, abs=1e-6)
    # plain QAT moves most pruned weights off zero (how many stay at zero varies a little
    # with the kernels a machine picks: 5-13 % seen)
    assert sparsity_report(lost, 256)["sparsity"] < before / 2


def test_cli_quantize_reports_sdr_layers_and_calibration_size(tmp_path, capsys):
    out = tmp_path / "q"
    args = ["quantize", str(fitted_model_folder("dualgate-tcn")), "--data", str(corpus()),
            "--out", str(out), "--calibration-frames", "64", "--eval-clips", "1",
            "--max-clips", "2", "--layer-errors", "--study-sizes", "16,64", "--study-seeds",
            "1", "--no-progress"]
    assert main(args) == 0
    printed = capsys.readouterr().out
    assert "SDR float" in printed and "worst layers:" in printed
    report = json.loads((out / "quantize.json").read_text())
    assert report["bytes"] == (out / "model.tflite").stat().st_size
    for source in ("vocals", "accompaniment"):
        assert abs(report["sdr"][source]["drop_db"]) < 2.0
    layers = json.loads((out / "layer_errors.json").read_text())
    assert layers["worst_layers"] == report["worst_layers"]
    steps = [row["rmse_steps"] for row in layers["tensors"]]
    assert steps == sorted(steps, reverse=True) and steps[0] > 0.2
    assert (out / "layer_errors.png").is_file() and (out / "calibration_study.png").is_file()
    study = json.loads((out / "calibration_study.json").read_text())
    assert [row["frames"] for row in study["summary"]] == [16, 64]
    assert main([*args[:2], "--data", str(corpus()), "--out", str(tmp_path / "x"),
                 "--preserve-sparsity"]) == 2
    assert "--qat-steps" in capsys.readouterr().err


def test_fine_tuning_uses_the_loss_the_model_was_trained_with(tmp_path):
    import json

    from convert.finetune import DEFAULT_LOSS, training_loss_of

    assert training_loss_of(tmp_path) == DEFAULT_LOSS  # no record: plain L1
    shipped = {"train_config": {"loss": "sdr", "sdr_weight": 0.01}}
    (tmp_path / "training.json").write_text(json.dumps(shipped))  # a shipped model's record
    assert training_loss_of(tmp_path) == ("sdr", 0.01)
    run = {"train_config": {"loss": "l1+sdr", "sdr_weight": 0.5}}
    (tmp_path / "run.json").write_text(json.dumps(run))  # a training run's folder wins
    assert training_loss_of(tmp_path) == ("l1+sdr", 0.5)
    (tmp_path / "run.json").write_text("{not json")
    assert training_loss_of(tmp_path) == ("sdr", 0.01)


def test_fine_tuning_a_trained_model_can_keep_its_batchnorm_statistics():
    import tf_keras as keras

    from convert.finetune import fine_tune

    def batchnorm_means(model) -> list[np.ndarray]:
        return [layer.moving_mean.numpy().copy() for layer in model.layers
                if isinstance(layer, keras.layers.BatchNormalization)]

    for freeze in (True, False):
        model = build_model("dualgate-tcn", **{**SMALL["dualgate-tcn"], "blocks": 2})
        before = batchnorm_means(model)
        kernels = {w.name: w.numpy().copy() for w in model.weights if "kernel" in w.name}
        fine_tune(model, list(clips("train")), 3, chunk_frames=32, freeze_batchnorm=freeze)
        moved = [not np.allclose(a, b) for a, b in zip(before, batchnorm_means(model),
                                                        strict=True)]
        assert before and (not any(moved) if freeze else all(moved))
        # the other weights still train
        assert any(not np.allclose(kernels[w.name], w.numpy()) for w in model.weights
                   if w.name in kernels)


def test_a_model_trained_aware_of_int8_keeps_its_record_and_ships(tmp_path):
    """``qat_model`` says how it was made and what it came from, so its corpora and its engine
    table follow it, and ``ship_model`` takes it as it takes a run."""
    from tinysep.pretrained import ship_model

    source = fitted_model_folder("dualgate-tcn")
    out = tmp_path / "q"
    assert main(["quantize", str(source), "--data", str(corpus()), "--out", str(out),
                 "--qat-steps", "2", "--qat-chunk-frames", "32", "--qat-batch-size", "2",
                 "--qat-target", "float",
                 "--calibration-frames", "32", "--eval-clips", "0", "--max-clips", "2",
                 "--no-progress"]) == 0
    tuned = out / "qat_model"
    record = json.loads((tuned / "training.json").read_text())
    assert record["command"].startswith(f"tinysep quantize {source} ")
    assert "--qat-steps 2" in record["command"] and "--qat-target float" in record["command"]
    assert record["qat_from"]["folder"] == str(source.resolve())
    assert record["qat"]["steps"] == 2 and np.isfinite(record["qat"]["loss_last"])
    assert record["qat"]["target"] == "float"
    assert record["corpora"]["train"]["folder"] == str(corpus().resolve())
    report = tmp_path / "eval.json"
    assert main(["eval", "--method", f"model:{tuned},repet", "--data", str(corpus()),
                 "--split", "all", "--max-clips", "2", "--by-engine", "--no-progress",
                 "--json", str(report)]) == 0
    shipped = ship_model(tuned, report, "qat-test", package_dir=tmp_path / "package")
    kept = json.loads((shipped / "training.json").read_text())
    assert kept["qat_from"] == record["qat_from"] and kept["command"] == record["command"]
    assert kept["test"]["by_engine"] and all(
        row["status"] == "trained" for row in kept["test"]["by_engine"])


def test_the_loss_of_a_fine_tuned_model_is_that_of_its_source(tmp_path):
    from convert.finetune import DEFAULT_LOSS, training_loss_of

    trained = {"train_config": {"loss": "sdr", "sdr_weight": 0.02}}
    (tmp_path / "training.json").write_text(json.dumps({"qat_from": {"pruned_from": trained}}))
    assert training_loss_of(tmp_path) == ("sdr", 0.02)
    (tmp_path / "training.json").write_text(json.dumps({"qat_from": {"command": "x"}}))
    assert training_loss_of(tmp_path) == DEFAULT_LOSS


def test_the_loss_of_a_weight_soup_is_that_of_its_best_ingredient(tmp_path):
    """A soup is tuned with the loss of the run it kept first, whose recipe it follows, not
    with the fallback a folder without any training record gets."""
    from convert.finetune import DEFAULT_LOSS, training_loss_of

    def ingredient(folder: str, loss: str) -> dict:
        return {"folder": folder, "train_config": {"loss": loss, "sdr_weight": 0.03}}

    soup = {"command": "tinysep soup --greedy a b",
            "soup": {"kept": ["/runs/b"], "ingredients": [ingredient("/runs/a", "l1+sdr"),
                                                          ingredient("/runs/b", "sdr")]}}
    (tmp_path / "training.json").write_text(json.dumps(soup))
    assert training_loss_of(tmp_path) == ("sdr", 0.03)
    (tmp_path / "training.json").write_text(json.dumps({"qat_from": soup}))  # a tuned soup
    assert training_loss_of(tmp_path) == ("sdr", 0.03)
    nested = {"soup": {"kept": ["/soups/s"], "ingredients": [{"folder": "/soups/s", **soup}]}}
    (tmp_path / "training.json").write_text(json.dumps(nested))  # a soup of soups
    assert training_loss_of(tmp_path) == ("sdr", 0.03)
    soup["soup"]["kept"] = ["/runs/elsewhere"]  # a kept folder no ingredient names
    (tmp_path / "training.json").write_text(json.dumps(soup))
    assert training_loss_of(tmp_path) == DEFAULT_LOSS
