"""`tinysep train`: the loss goes down, runs resume exactly, bad input stops clearly, the
run folder is a model folder that loads and separates, and with --weight-average the saved
model is the moving average of the weights the steps went through."""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import tensorflow as tf
import tf_keras as keras
from train_helpers import TINY, tiny_config

from cli.main import main as cli_main
from tinysep.data.loaders import load_split
from tinysep.data.synth import write_corpus
from tinysep.dsp import magnitude, stft
from tinysep.metrics.by_engine import recorded_corpora
from tinysep.models import load_model, make_config, model_from_config, save_model, separate
from tinysep.models.reframing import input_norm_features
from tinysep.train import TrainConfig, TrainingError, train
from tinysep.training.config import DEFAULT_AUGMENT
from tinysep.training.data import batch_for_step, fingerprint_clips, validation_clips
from tinysep.training.run_folder import stored_config
from tinysep.training.spectral import batch_loss
from tinysep.training.tensorboard import read_scalars, read_tags, spectrogram_image
from tinysep.training.validation import validation_sdr

AVERAGE_DECAY = 0.6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("train") / "synth"
    write_corpus(root, songs=6, seconds=6.0, seed=3, progress=False)
    return root


@pytest.fixture(scope="module")
def one_epoch(corpus, tmp_path_factory) -> Path:
    """A finished one-epoch run (3 steps); tests copy it before changing it."""
    out = tmp_path_factory.mktemp("runs") / "one_epoch"
    train(tiny_config(corpus, epochs=1), out, progress=False)
    return out


def _copy_run(run: Path, dest: Path) -> Path:
    shutil.copytree(run, dest)
    return dest



def _checkpoint_values(out: Path) -> dict[str, np.ndarray]:
    state = json.loads((out / "state.json").read_text())
    reader = tf.train.load_checkpoint(str(out / state["checkpoint"]))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
            if k != "_CHECKPOINTABLE_OBJECT_GRAPH"}


def test_loss_decreases(corpus, tmp_path):
    config = tiny_config(corpus, epochs=4, steps_per_epoch=15, learning_rate=3e-3)
    clips = load_split(corpus, split="train", progress=False)
    batches = [batch_for_step(clips, 10_000 + k, 1, 8, 8000, config.augment) for k in range(3)]

    def loss(model) -> float:  # on fixed batches, as the optimizer sees it
        return sum(float(batch_loss(model, tf.constant(m), tf.constant(s), "l1", 0.0, True))
                   for m, s in batches)

    keras.utils.set_random_seed(config.seed)
    initial = loss(model_from_config(config.model_config()))
    result = train(config, tmp_path / "run", progress=False)
    assert result.status == "finished" and result.steps == 60
    assert loss(load_model(tmp_path / "run")) < 0.8 * initial
    assert result.history[-1]["loss"] < result.history[0]["loss"]


def test_resume_continues_exactly(corpus, one_epoch, tmp_path):
    config = tiny_config(corpus)
    straight = train(config, tmp_path / "straight", progress=False)
    _copy_run(one_epoch, tmp_path / "split")  # the same run, stopped after epoch 1
    resumed = train(config, tmp_path / "split", resume=True, progress=False)
    assert (resumed.epochs, resumed.steps) == (straight.epochs, straight.steps) == (2, 6)
    assert stored_config(tmp_path / "split") == stored_config(tmp_path / "straight") == config
    # Same batches, same optimizer state: the second epoch and its weights match.
    assert [h["loss"] for h in resumed.history] == pytest.approx(
        [h["loss"] for h in straight.history], rel=1e-5)
    a, b = _checkpoint_values(tmp_path / "straight"), _checkpoint_values(tmp_path / "split")
    assert a.keys() == b.keys() and any("optimizer" in k for k in a)
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)
    run = json.loads((tmp_path / "split" / "run.json").read_text())
    resumes = [(r["step"], r["changes"]) for r in run["resumes"]]
    assert resumes == [(3, ["epochs: stored 1, given 2"])]
    # TensorBoard logs hold every step of both sessions.
    scalars = read_scalars(tmp_path / "split" / "logs")
    assert [s for s, _ in scalars["train/loss"]] == [1, 2, 3, 4, 5, 6]
    assert len(scalars["valid/sdr_mean"]) == 2


def test_an_audio_log_prints_nothing_on_stderr(tmp_path):
    # a fresh process: TensorFlow's wav encoder logs its oneDNN note once per process
    script = ("from tinysep.quiet import import_tensorflow; import_tensorflow(); "
              "import numpy as np; from tinysep.training.tensorboard import RunLog; "
              f"log = RunLog({str(tmp_path)!r}); "
              "log.audio('clip', np.zeros(1600, np.float32), 16000, 1); log.flush()")
    done = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True,
                          timeout=300, env={k: v for k, v in os.environ.items()
                                            if k != "TF_CPP_MIN_LOG_LEVEL"})
    assert done.returncode == 0, done.stderr
    assert "DT_STRING" not in done.stderr and "E0000" not in done.stderr, done.stderr
    assert read_tags(tmp_path) == {"clip": "audio"}


def test_tensorboard_logs_audio_spectrogram_and_hparams(one_epoch):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    logs = one_epoch / "logs"
    tags = read_tags(logs)
    assert tags["train/loss"] == "scalars" and tags["valid/sdr_mean"] == "scalars"
    for name in ("mixture", "vocals", "accompaniment"):
        assert tags[f"valid_clip/{name}"] == "audio"
    assert tags["valid_clip/spectrogram"] == "images"
    assert "hparams" in set(tags.values())
    # TensorBoard itself reads them: one 2 s clip at 16 kHz per epoch, a 3-panel image.
    events = EventAccumulator(str(logs), size_guidance={"tensors": 0}).Reload()
    (audio,) = events.Tensors("valid_clip/vocals")
    wav, rate = tf.audio.decode_wav(tf.make_ndarray(audio.tensor_proto)[0, 0])
    assert int(rate) == 16_000 and wav.shape == (32_000, 1)
    (image,) = events.Tensors("valid_clip/spectrogram")
    width, height = (int(v) for v in tf.make_ndarray(image.tensor_proto)[:2])
    assert height == 3 * 257 + 2 * 2 and width > 100
    scalars = read_scalars(logs)
    assert set(scalars) == {t for t, p in tags.items() if p == "scalars"}


def test_spectrogram_image_puts_loud_low_bins_at_the_bottom():
    tone = np.sin(2 * np.pi * 250 * np.arange(8000) / 16_000).astype(np.float32)
    image = spectrogram_image([tone, 0.0 * tone])
    assert image.shape[0] == 2 * 257 + 2 and image.dtype == np.uint8
    top_panel = image[:257].astype(int).sum(axis=(1, 2))
    assert np.argmax(top_panel) == 256 - 8  # 250 Hz is bin 8 of 257, counted from below
    assert len(np.unique(image[259:].reshape(-1, 3), axis=0)) == 1  # silence: one colour


def test_a_log_gets_one_line_per_epoch(corpus, tmp_path, capsys):
    options = [a for k, v in TINY.items() for a in ("--option", f"{k}={v}")]
    code = cli_main(["train", "--model", "dualgate-tcn", "--preset", "tiny", *options,
                     "--data", str(corpus), "--out", str(tmp_path / "run"), "--epochs", "2",
                     "--steps-per-epoch", "4", "--batch-size", "4", "--chunk-seconds", "0.5",
                     "--valid-clips", "1", "--valid-seconds", "2"])
    err = capsys.readouterr().err  # not a terminal: no step bar
    assert code == 0
    epoch_lines = [line for line in err.splitlines() if line.startswith("epoch ")]
    assert len(epoch_lines) == 2 and all("valid SDR" in line for line in epoch_lines)
    assert "step/s" not in err and "steps/s" not in err and "epoch 1/2:" not in err


def test_resume_with_another_config_stops(corpus, one_epoch, tmp_path, capsys):
    out = _copy_run(one_epoch, tmp_path / "run")
    with pytest.raises(TrainingError, match=r"batch_size: stored 4, given 8"):
        train(tiny_config(corpus, batch_size=8), out, resume=True, progress=False)
    with pytest.raises(TrainingError, match="already holds a training run"):
        train(tiny_config(corpus), out, progress=False)
    with pytest.raises(TrainingError, match="nothing to resume"):
        train(tiny_config(corpus), tmp_path / "none", resume=True, progress=False)
    # The CLI takes the stored settings and rejects a different one in one line.
    code = cli_main(["train", "--out", str(out), "--resume", "--learning-rate", "0.01",
                     "--no-progress"])
    err = capsys.readouterr().err
    assert code == 2
    assert "learning_rate: stored 0.0003, given 0.01" in err
    assert json.loads((out / "state.json").read_text())["epoch"] == 1


def test_a_resume_on_another_corpus_keeps_the_earlier_one_on_record(corpus, one_epoch,
                                                                     tmp_path):
    from tinysep.metrics.by_engine import model_engines

    other = tmp_path / "other"
    write_corpus(other, songs=6, seconds=6.0, seed=12, progress=False,
                 engines="additive,physical")
    out = _copy_run(one_epoch, tmp_path / "run")
    first = json.loads((out / "run.json").read_text())["corpora"]
    train(tiny_config(other, epochs=2), out, resume=True, allow_changes=True, progress=False)
    record = json.loads((out / "run.json").read_text())["corpora"]
    for split in ("train", "valid"):
        assert record[split]["folder"] == str(other.resolve())
        assert record[split]["earlier"] == [first[split]]
    # resuming again on the same corpus records nothing new
    train(tiny_config(other, epochs=3), out, resume=True, allow_changes=True, progress=False)
    assert json.loads((out / "run.json").read_text())["corpora"] == record
    # the engines the weights learnt from are those of both corpora
    both = set(first["train"]["engines"]["accompaniment"]) | set(
        record["train"]["engines"]["accompaniment"])
    assert "physical" in both
    assert model_engines(out)["train"]["accompaniment"] == both


def test_nan_loss_stops_and_keeps_last_good_checkpoint(corpus, one_epoch, tmp_path):
    out = _copy_run(one_epoch, tmp_path / "run")
    weights = hashlib.sha256((out / "model.weights.h5").read_bytes()).hexdigest()
    good = _checkpoint_values(out)
    with pytest.raises(TrainingError, match=r"(?i)nan|infinite") as info:
        train(tiny_config(corpus, epochs=2, learning_rate=1e30), out, resume=True,
              allow_changes=True, progress=False)
    assert "last good checkpoint" in str(info.value)
    state = json.loads((out / "state.json").read_text())
    assert (state["epoch"], state["step"], state["status"]) == (1, 3, "failed")
    assert state["checkpoint"].endswith("ckpt-1")
    assert hashlib.sha256((out / "model.weights.h5").read_bytes()).hexdigest() == weights
    for key, value in _checkpoint_values(out).items():
        np.testing.assert_array_equal(value, good[key])
    # With a sane rate again the run continues from that checkpoint.
    result = train(tiny_config(corpus, epochs=2), out, resume=True, allow_changes=True,
                   progress=False)
    assert (result.epochs, result.steps, result.status) == (2, 6, "finished")


def _copy_corpus(corpus: Path, dest: Path) -> Path:
    shutil.copytree(corpus, dest)
    return dest


def test_too_few_clips_stops(corpus, tmp_path):
    root = _copy_corpus(corpus, tmp_path / "few")
    meta = json.loads((root / "splits.json").read_text())
    meta["splits"]["train"] = meta["splits"]["train"][:1]
    (root / "splits.json").write_text(json.dumps(meta))
    with pytest.raises(ValueError, match=r"train split holds 1 clip.*at least 2 train"):
        train(tiny_config(root), tmp_path / "run", progress=False)
    assert not (tmp_path / "run").exists()


def test_clip_shorter_than_a_window_stops(corpus, tmp_path):
    root = _copy_corpus(corpus, tmp_path / "short")
    name = json.loads((root / "splits.json").read_text())["splits"]["train"][0]
    path = root / "Wavfile" / f"{name}.wav"
    audio, rate = sf.read(str(path), dtype="float32")
    sf.write(str(path), audio[:300], rate, subtype="PCM_16")
    with pytest.raises(ValueError, match=rf"clip {name} has 300 samples, shorter than one 512"):
        train(tiny_config(root), tmp_path / "run", progress=False)


def test_time_budget_stops_after_a_step(corpus, tmp_path):
    result = train(tiny_config(corpus, epochs=50, max_minutes=1e-4), tmp_path / "run",
                   progress=False)
    assert result.status == "time-budget"
    assert (result.epochs, result.steps) == (1, 1)
    assert json.loads((tmp_path / "run" / "state.json").read_text())["checkpoint"]


def test_saved_folder_loads_and_separates(corpus, one_epoch):
    out = one_epoch
    best = json.loads((out / "state.json").read_text())["best"]
    assert best["epoch"] == 1
    model = load_model(out)
    assert model.tinysep_config["options"] == TINY
    clip = load_split(corpus, split="test", progress=False)[0]
    estimates = separate(model, clip.mixture)
    assert set(estimates) == {"vocals", "accompaniment"}
    for audio in estimates.values():
        assert audio.shape == clip.mixture.shape and np.all(np.isfinite(audio))
    # Softmax masks: the estimates add up to the mixture.
    np.testing.assert_allclose(estimates["vocals"] + estimates["accompaniment"], clip.mixture,
                               atol=1e-4)
    # The folder holds the best epoch's weights: re-scoring gives the recorded SDR.
    from tinysep.training.data import validation_clips

    valid = validation_clips(load_split(corpus, split="valid", progress=False), 1, 2.0)
    rescored = validation_sdr(model, valid)
    assert rescored["mean"] == pytest.approx(best["valid_sdr"]["mean"], abs=1e-3)
    # Valid clips played at two levels: the quiet copies are the same clips, 20 dB down,
    # and the model (trained at one level) scores them otherwise, so the mean moves.
    both = validation_clips(load_split(corpus, split="valid", progress=False), 1, 2.0,
                            (0.0, -20.0))
    assert [c.name for c in both] == [valid[0].name] * 2
    np.testing.assert_allclose(both[1].mixture, valid[0].mixture * 0.1, rtol=1e-6)
    np.testing.assert_allclose(both[1].vocals, valid[0].vocals * 0.1, rtol=1e-6)
    quiet = validation_sdr(model, both[1:])
    assert abs(quiet["mean"] - rescored["mean"]) > 1e-3
    assert validation_sdr(model, both)["mean"] == pytest.approx(
        (quiet["mean"] + rescored["mean"]) / 2, abs=1e-6)
    run = json.loads((out / "run.json").read_text())
    assert run["data_fingerprint"]["train"]["clips"] == 3
    assert run["model"]["parameters"] > 0
    assert (out / "history.png").stat().st_size > 0


def test_like_repeats_a_run_and_options_parse(corpus, one_epoch, tmp_path, capsys):
    from cli.main import build_parser
    from cli.train import build_config

    out = one_epoch
    parser = build_parser()
    args = parser.parse_args(["train", "--like", str(out), "--out", str(tmp_path / "again"),
                              "--option", "kernel=2", "--seed", "9"])
    config = build_config(args)
    assert config == tiny_config(corpus, epochs=1, seed=9, options={**TINY, "kernel": 2})
    args = parser.parse_args(["train", "--model", "unet-se-sru", "--data", str(corpus),
                              "--out", str(tmp_path / "u"), "--option", "channels=[4,8]",
                              "--option", "recurrent=gru"])
    config = build_config(args)
    assert (config.model, config.options) == ("unet-se-sru",
                                              {"channels": [4, 8], "recurrent": "gru"})
    assert cli_main(["train", "--out", str(tmp_path / "x"), "--option", "oops"]) == 2
    assert "--option expects KEY=VALUE" in capsys.readouterr().err
    args = parser.parse_args(["train", "--like", str(out), "--out", str(tmp_path / "eq"),
                              "--augment", "eq_probability=0.5", "--augment", "remix=false"])
    config = build_config(args)
    assert config.augment == {**TrainConfig().augment, "eq_probability": 0.5, "remix": False}
    config.validate()
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "y"),
                     "--augment", "eq_probability=2"]) == 2
    assert "augment: eq_probability must be a number in [0, 1], got 2" in capsys.readouterr().err
    assert not (tmp_path / "y").exists()
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "z"),
                     "--augment", "pitch=3"]) == 2
    assert "augment: unknown key(s) ['pitch']" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "z"),
                     "--augment", "level_range_db=[0,-20]"]) == 2
    assert "augment: level_range_db must be [low, high] dB" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "z"),
                     "--augment", "remix=maybe"]) == 2
    assert "augment: remix must be true or false, got 'maybe'" in capsys.readouterr().err
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "z"),
                     "--augment", "gain_range=[1e300,1e308]"]) == 2
    assert "augment: gain_range must be [low, high] linear gains" in capsys.readouterr().err
    assert not (tmp_path / "z").exists()
    args = parser.parse_args(["train", "--like", str(out), "--out", str(tmp_path / "lv"),
                              "--valid-levels-db", "0,-20"])
    assert build_config(args).valid_levels_db == [0.0, -20.0]
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "z"),
                     "--valid-levels-db", "0,loud"]) == 2
    assert "--valid-levels-db expects comma-separated numbers of dB, got '0,loud'" in (
        capsys.readouterr().err)
    assert cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "z"),
                     "--valid-levels-db", "-90"]) == 2
    assert "valid_levels_db must be a list of levels in dB from -60 to 20, got [-90.0]" in (
        capsys.readouterr().err)


def test_fingerprint_follows_the_audio(corpus):
    train_clips = load_split(corpus, split="train", progress=False)
    valid_clips = load_split(corpus, split="valid", progress=False)
    first = fingerprint_clips(train_clips, valid_clips)
    assert first == fingerprint_clips(list(reversed(train_clips)), valid_clips)
    train_clips[0].vocals[100] += 1e-3
    changed = fingerprint_clips(train_clips, valid_clips)
    assert changed["train"]["sha256"] != first["train"]["sha256"]
    assert changed["valid"] == first["valid"]


def test_schedules():
    from tinysep.training.schedule import StepSchedule

    constant = StepSchedule(1e-3, "constant", total_steps=100, warmup_steps=10)
    assert constant.value(0) == pytest.approx(1e-4)
    assert constant.value(9) == constant.value(99) == pytest.approx(1e-3)
    cosine = StepSchedule(1e-3, "cosine", total_steps=110, warmup_steps=10, final_fraction=0.1)
    assert cosine.value(10) == pytest.approx(1e-3)
    assert cosine.value(60) == pytest.approx(0.55e-3)  # half way: mean of peak and final
    assert cosine.value(110) == cosine.value(500) == pytest.approx(1e-4)
    budget = StepSchedule(1e-3, "cosine-budget", total_steps=1000)
    assert budget.value(500) == pytest.approx(0.5e-3)
    budget.set_time_fraction(0.75)  # the clock is ahead of the steps: it decides
    assert budget.value(500) == pytest.approx(0.5e-3 * (1 + np.cos(0.75 * np.pi)))
    budget.set_time_fraction(0.1)  # the steps are ahead: they decide
    assert budget.value(500) == pytest.approx(0.5e-3)
    with pytest.raises(ValueError, match="needs max_minutes"):
        TrainConfig(data="x", lr_schedule="cosine-budget").validate()


def _largest_weight_gap(model_a, model_b) -> float:
    """The largest absolute difference between the trainable weights of two models."""
    return max(float(np.abs(a.numpy() - b.numpy()).max())
               for a, b in zip(model_a.trainable_weights, model_b.trainable_weights, strict=True))


def _start_cli_run(corpus: Path, out: Path, *extra: str):
    """`tinysep train` of the TINY model as its own process (signals reach it as they
    would a user's run)."""
    import os
    import subprocess
    import sys

    options = [f"--option={k}={v}" for k, v in TINY.items()]
    command = [sys.executable, "-m", "cli.main", "train", "--model", "dualgate-tcn",
               "--preset", "tiny", *options, "--data", str(corpus), "--out", str(out),
               "--batch-size", "4", "--chunk-seconds", "0.5", "--valid-clips", "1",
               "--valid-seconds", "2", "--no-progress", *extra]
    return subprocess.Popen(command, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                            text=True, env={**os.environ, "PYTHONHASHSEED": "0"})


def test_valid_data_init_from_and_the_corpora_record(corpus, one_epoch, tmp_path):
    """Validation on another corpus (held-out engines), weights started from a saved model,
    and run.json naming the folders and engines the run trained and selected on."""
    other = tmp_path / "other"
    write_corpus(other, songs=10, seconds=4.0, seed=11, progress=False)
    out = tmp_path / "run"
    config = tiny_config(corpus, epochs=1, steps_per_epoch=1, learning_rate=1e-9,
                     valid_data=str(other), init_from=str(one_epoch))
    train(config, out, progress=False)
    run = json.loads((out / "run.json").read_text())
    assert run["corpora"]["train"]["folder"] == str(corpus.resolve())
    assert run["corpora"]["valid"]["folder"] == str(other.resolve())
    meta = json.loads((corpus / "splits.json").read_text())
    trained = {c["engines"]["vocals"] for n, c in meta["clips"].items()
               if n in meta["splits"]["train"]}
    assert run["corpora"]["train"]["engines"]["vocals"] == sorted(trained)
    # the weights it started from were selected on the corpus's own valid split: kept as earlier
    started = json.loads((one_epoch / "run.json").read_text())["corpora"]
    assert started["train"] == run["corpora"]["train"]  # the same corpus is not repeated
    assert "earlier" not in run["corpora"]["train"]
    assert run["corpora"]["valid"]["earlier"] == [started["valid"]]
    # a learning rate of 1e-9: the trained weights are (almost) those it started from
    after = load_model(out)
    assert _largest_weight_gap(load_model(one_epoch), after) < 1e-5
    assert _largest_weight_gap(model_from_config(after.tinysep_config), after) > 1e-2
    # the validation clips came from the other corpus
    valid = validation_clips(load_split(other, split="valid", progress=False), 1, 2.0)
    best = json.loads((out / "state.json").read_text())["best"]["valid_sdr"]["mean"]
    assert validation_sdr(load_model(out), valid)["mean"] == pytest.approx(best, abs=1e-3)
    with pytest.raises(ValueError, match="init_from"):
        train(config.replace(options={**TINY, "hidden": 8}), tmp_path / "bad", progress=False)


def test_init_matching_grows_a_model_from_a_smaller_one(corpus, one_epoch, tmp_path):
    """A model with a refiner starts from a model without one: the layers that match are
    copied, the new ones start fresh, and run.json says which."""
    grown = tiny_config(corpus, epochs=1, steps_per_epoch=1, learning_rate=1e-9,
                    init_from=str(one_epoch), options={**TINY, "refine": 3})
    with pytest.raises(ValueError, match="init_matching copies only the layers") as refused:
        train(grown, tmp_path / "refused", progress=False)
    assert "(refine 0 / 3; its value first)" in str(refused.value)  # what differs, in short
    assert len(str(refused.value)) < 300
    assert not (tmp_path / "refused").exists()
    out = tmp_path / "grown"
    train(grown.replace(init_matching=True), out, progress=False)
    init = json.loads((out / "run.json").read_text())["model"]["init"]
    assert init["layers_fresh"] == ["refine0", "refine1"]
    assert init["layers_copied"] > 5
    before, after = load_model(one_epoch), load_model(out)
    for name in ("in_proj", "s0b1_out", "mask_proj"):
        for a, b in zip(before.get_layer(name).get_weights(), after.get_layer(name).get_weights(),
                        strict=True):
            np.testing.assert_allclose(a, b, atol=1e-5)
    with pytest.raises(ValueError, match="give init_from too"):
        train(tiny_config(corpus, init_matching=True), tmp_path / "alone", progress=False)


def test_init_matching_carries_a_model_to_the_long_framing(corpus, one_epoch, tmp_path):
    """A model on the long framing with pooled bins starts from one on the short framing: every
    layer is carried, the input normalisation is measured again on the training mixtures, and
    run.json says from which features."""
    long_options = {**TINY, "framing": "long1024", "pool_above": 257}
    config = tiny_config(corpus, epochs=1, steps_per_epoch=1, learning_rate=1e-9,
                         init_from=str(one_epoch), init_matching=True, options=long_options)
    out = tmp_path / "long"
    train(config, out, progress=False)
    init = json.loads((out / "run.json").read_text())["model"]["init"]
    assert init["layers_fresh"] == []
    assert init["reframed_from"] == ["hann512", 0]
    assert init["input_norm_frames"] > 100
    before, after = load_model(one_epoch), load_model(out)
    assert after.get_layer("in_proj").get_weights()[0].shape[2] == 385
    assert before.get_layer("in_proj").get_weights()[0].shape[2] == 257
    # the running mean is the features' mean over the corpus (one step moved it 1 % from there)
    seen = np.concatenate([
        np.asarray(input_norm_features(after)(magnitude(stft(clip.mixture,
                                                             framing="long1024"))[None]))[0]
        for clip in load_split(corpus, split="train", progress=False)])
    _, _, new_mean, _ = after.get_layer("input_norm").get_weights()
    assert np.max(np.abs(new_mean - seen.mean(axis=0))) < 0.05 * np.max(np.abs(seen.mean(axis=0)))


def test_sigterm_stops_and_the_run_folder_says_what_finished(corpus, tmp_path):
    """A stopped run keeps its finished epochs, says it was interrupted, and resumes."""
    import signal
    import time

    out = tmp_path / "run"
    process = _start_cli_run(corpus, out, "--epochs", "500", "--steps-per-epoch", "3",
                             "--seed", "5")
    state_file = out / "state.json"
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if state_file.is_file() and json.loads(state_file.read_text() or "{}").get("epoch", 0) >= 1:
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()
    process.send_signal(signal.SIGTERM)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130 and "tinysep train: interrupted: " in stderr  # not an error
    state = json.loads(state_file.read_text())
    assert state["status"] == "stopped"
    assert state["stop_reason"] == f"interrupted during epoch {state['epoch'] + 1}"
    assert f"{state['epoch']} epoch(s), {state['step']} steps finished" in stderr
    assert state["epoch"] >= 1 and state["step"] == 3 * state["epoch"]
    assert (out / state["checkpoint"]).parent.is_dir()
    result = train(tiny_config(corpus, epochs=state["epoch"] + 1), out, resume=True,
                   allow_changes=True, progress=False)
    assert (result.epochs, result.status) == (state["epoch"] + 1, "finished")


def test_a_run_stopped_before_its_first_checkpoint_resumes_from_init_from(corpus, one_epoch,
                                                                          tmp_path):
    """Stopped before an epoch finished, a warm-started run has no weights of its own: its
    resume starts again from the model it was started from, not from random weights."""
    import signal
    import time

    out = tmp_path / "run"
    process = _start_cli_run(corpus, out, "--init-from", str(one_epoch), "--epochs", "1",
                             "--steps-per-epoch", "100000", "--seed", "7",
                             "--learning-rate", "1e-9")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline and process.poll() is None:
        if (out / "state.json").is_file():
            break
        time.sleep(0.2)
    assert process.poll() is None, process.communicate()
    time.sleep(1.0)
    process.send_signal(signal.SIGTERM)
    process.communicate(timeout=120)
    state = json.loads((out / "state.json").read_text())
    assert (state["epoch"], state["checkpoint"]) == (0, None)

    # another seed than the one the started-from model had: random weights would differ
    resumed = tiny_config(corpus, epochs=1, steps_per_epoch=1, learning_rate=1e-9, seed=7,
                      init_from=str(one_epoch))
    train(resumed, out, resume=True, allow_changes=True, progress=False)
    after = load_model(out)
    assert _largest_weight_gap(load_model(one_epoch), after) < 1e-5
    assert _largest_weight_gap(model_from_config(after.tinysep_config), after) > 1e-2


def test_ship_model_copies_the_best_weights_and_writes_the_record(corpus, one_epoch, tmp_path):
    """Shipping a run: the weights land beside a training.json whose test scores and eval
    command come from the report; a report without the run is refused."""
    from tinysep.pretrained import ship_model

    report = tmp_path / "test.json"
    assert cli_main(["eval", "--method", f"model:{one_epoch},mix", "--data", str(corpus),
                     "--split", "all", "--max-clips", "2", "--jobs", "1", "--no-progress",
                     "--json", str(report)]) == 0
    folder = ship_model(one_epoch, report, "tiny-test", package_dir=tmp_path / "package")
    assert folder == tmp_path / "package" / "tiny-test"
    assert (folder / "model.weights.h5").read_bytes() == \
        (one_epoch / "model.weights.h5").read_bytes()
    record = json.loads((folder / "training.json").read_text())
    scores = json.loads(report.read_text())["summary"]
    assert record["test"]["sdr_sir_sar_mean_db"]["vocals"]["sdr"] == \
        scores[f"model:{one_epoch}"]["sources"]["vocals"]["sdr"]["mean"]
    assert set(record["test"]["baselines_sdr_mean_db"]) == {"mix"}
    assert record["test"]["clips"] == 2 and "--max-clips 2" in record["test"]["eval_command"]
    run = json.loads((one_epoch / "run.json").read_text())
    assert record["training"]["best_epoch"] == 1 and record["command"] == run.get("command")
    assert record["train_config"] == run["train_config"]
    assert record["resumes"] == run.get("resumes", [])
    clip = load_split(corpus, split="test", progress=False)[0]
    np.testing.assert_array_equal(separate(load_model(folder), clip.mixture)["vocals"],
                                  separate(load_model(one_epoch), clip.mixture)["vocals"])
    other = tmp_path / "other.json"
    assert cli_main(["eval", "--method", "mix", "--data", str(corpus), "--split", "all",
                     "--max-clips", "1", "--jobs", "1", "--no-progress",
                     "--json", str(other)]) == 0
    with pytest.raises(ValueError, match="holds no 'model:"):
        ship_model(one_epoch, other, "tiny-test", package_dir=tmp_path / "package")


def _float_weights(model) -> list[np.ndarray]:
    return [w.numpy() for w in model.weights if w.dtype.is_floating]


def test_the_saved_model_is_the_moving_average_of_the_steps(corpus, tmp_path):
    # the weights after 0, 1, 2 and 3 steps of the same run (a constant rate: a step does not
    # depend on how many follow it)
    keras.utils.set_random_seed(5)
    steps = [_float_weights(model_from_config(tiny_config(corpus).model_config()))]
    for k in (1, 2, 3):
        train(tiny_config(corpus, epochs=1, steps_per_epoch=k, learning_rate=3e-3),
              tmp_path / f"raw{k}", progress=False)
        steps.append(_float_weights(load_model(tmp_path / f"raw{k}")))
    expected = steps[0]
    for after in steps[1:]:
        expected = [AVERAGE_DECAY * e + (1 - AVERAGE_DECAY) * w
                    for e, w in zip(expected, after, strict=True)]
    out = tmp_path / "averaged"
    config = tiny_config(corpus, epochs=1, learning_rate=3e-3, weight_average=AVERAGE_DECAY)
    result = train(config, out, progress=False)
    saved = _float_weights(load_model(out))
    assert len(saved) == len(expected) > 10  # trainable weights and normalisation statistics
    for got, want in zip(saved, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(float(np.abs(g - w).max()) for g, w in zip(saved, steps[-1], strict=True)) > 1e-3
    # the validation score on record is the average's
    clips = validation_clips(load_split(corpus, split="valid", progress=False), 1, 2.0)
    assert validation_sdr(load_model(out), clips)["mean"] == pytest.approx(
        result.best_sdr["mean"], abs=1e-3)


def test_the_last_epoch_is_a_model_folder_with_the_runs_record(corpus, tmp_path):
    """OUT/last holds the weights the last validation scored (the average, not the raw
    weights), names its epoch, and carries the run's corpora, so eval marks its engines."""
    out = tmp_path / "run"
    config = tiny_config(corpus, learning_rate=3e-3, weight_average=AVERAGE_DECAY)
    result = train(config, out, progress=False)
    last = out / "last"
    record = json.loads((last / "training.json").read_text())
    assert (record["epoch"], record["step"]) == (2, 6)
    assert record["valid_sdr"] == result.history[-1]["valid_sdr"]
    assert record["corpora"] == json.loads((out / "run.json").read_text())["corpora"]
    assert recorded_corpora(last) == record["corpora"]
    clips = validation_clips(load_split(corpus, split="valid", progress=False), 1, 2.0)
    assert validation_sdr(load_model(last), clips)["mean"] == pytest.approx(
        result.history[-1]["valid_sdr"]["mean"], abs=1e-3)
    # a resumed run replaces it with its own last epoch, and leaves no staging folder
    before = load_model(last)
    train(config.replace(epochs=3), out, resume=True, progress=False)
    assert json.loads((last / "training.json").read_text())["epoch"] == 3
    assert _largest_weight_gap(before, load_model(last)) > 1e-4
    assert sorted(p.name for p in out.iterdir() if p.name.startswith(".")) == []


def test_a_resumed_run_keeps_its_average(corpus, tmp_path):
    config = tiny_config(corpus, learning_rate=3e-3, weight_average=0.9)
    straight = train(config, tmp_path / "straight", progress=False)
    train(config.replace(epochs=1), tmp_path / "split", progress=False)
    resumed = train(config, tmp_path / "split", resume=True, progress=False)
    assert [h["valid_sdr"]["mean"] for h in resumed.history] == pytest.approx(
        [h["valid_sdr"]["mean"] for h in straight.history], abs=1e-4)

    def checkpoint(out: Path) -> dict[str, np.ndarray]:
        state = json.loads((out / "state.json").read_text())
        reader = tf.train.load_checkpoint(str(out / state["checkpoint"]))
        return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()
                if k.startswith("average/")}

    a, b = checkpoint(tmp_path / "straight"), checkpoint(tmp_path / "split")
    assert len(a) > 10 and a.keys() == b.keys()
    for key in a:
        np.testing.assert_allclose(a[key], b[key], rtol=1e-5, atol=1e-6, err_msg=key)


@pytest.mark.parametrize("decay", [1.0, -0.1, 1.5, True, "0.9"])
def test_a_weight_average_decay_outside_its_range_is_refused(corpus, decay):
    with pytest.raises(ValueError, match=r"weight_average is a decay per step in \[0, 1\)"):
        tiny_config(corpus, weight_average=decay).validate()


def test_the_cli_refuses_a_weight_average_decay_of_one(corpus, tmp_path, capsys):
    code = cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "run"),
                     "--weight-average", "1"])
    assert code != 0
    assert "weight_average is a decay per step in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_resume_can_turn_the_average_on(corpus, tmp_path):
    out = tmp_path / "run"
    train(tiny_config(corpus, epochs=1, learning_rate=3e-3), out, progress=False)
    first = _float_weights(load_model(out))  # the raw weights after epoch 1 (its best)
    config = tiny_config(corpus, learning_rate=3e-3, weight_average=0.999999)
    with pytest.raises(Exception, match="weight_average"):
        train(config, out, resume=True, progress=False)  # a change must be allowed
    train(config, out, resume=True, allow_changes=True, progress=False)
    state = json.loads((out / "state.json").read_text())
    reader = tf.train.load_checkpoint(str(out / state["checkpoint"]))
    names = set(reader.get_variable_to_shape_map())
    # the average started from the weights of epoch 1 and hardly moved in three steps
    average = [reader.get_tensor(f"average/{i}/.ATTRIBUTES/VARIABLE_VALUE")
               for i in range(len(first))]
    assert f"average/{len(first)}/.ATTRIBUTES/VARIABLE_VALUE" not in names
    for got, want in zip(average, first, strict=True):
        np.testing.assert_allclose(got, want, atol=1e-4)
    # while the weights trained on
    model = model_from_config(load_model(out).tinysep_config)
    tf.train.Checkpoint(model=model).restore(str(out / state["checkpoint"])).expect_partial()
    raw = _float_weights(model)
    assert max(float(np.abs(r - f).max()) for r, f in zip(raw, first, strict=True)) > 1e-3


def test_the_teacher_loss_is_the_loss_against_the_teachers_separations(corpus):
    """A model taught by itself separates exactly what it is asked for (SDR near the
    epsilon's ceiling); the weight mixes the two losses linearly; another teacher is
    a different target."""
    clips = load_split(corpus, split="train", progress=False)
    mixture, sources = (tf.constant(a) for a in batch_for_step(clips, 7, 1, 4, 8000,
                                                                DEFAULT_AUGMENT))
    keras.utils.set_random_seed(1)
    model = model_from_config(tiny_config(corpus).model_config())
    other = model_from_config(tiny_config(corpus).model_config())

    def loss(teacher=None, weight=0.0) -> float:
        return float(batch_loss(model, mixture, sources, "sdr", 0.0, False, teacher, weight))

    truth, itself = loss(), loss(model, 1.0)
    assert itself < -30.0 and truth > itself + 20.0
    assert loss(model, 0.25) == pytest.approx(0.75 * truth + 0.25 * itself, abs=1e-3)
    assert itself + 10.0 < loss(other, 1.0)


def test_a_run_taught_by_a_teacher_records_it_and_leaves_it_untouched(corpus, one_epoch,
                                                                      tmp_path):
    """Distillation: the teacher's weights are not trained, the run records the teacher and
    counts the engines of the teacher's corpora as heard (held-out tables then say
    "trained" for them)."""
    from tinysep.metrics.by_engine import TRAINED, engine_status, model_engines

    teacher = _copy_run(one_epoch, tmp_path / "teacher")
    record = json.loads((teacher / "run.json").read_text())
    record["corpora"]["train"] = {"folder": "/elsewhere", "split": "train",
                                  "engines": {"vocals": ["choir"]}}
    (teacher / "run.json").write_text(json.dumps(record))
    weights = (teacher / "model.weights.h5").read_bytes()
    out = tmp_path / "taught"
    config = tiny_config(corpus, epochs=1, teacher=str(teacher), teacher_weight=0.7)
    train(config, out, progress=False)
    assert (teacher / "model.weights.h5").read_bytes() == weights
    run = json.loads((out / "run.json").read_text())
    assert run["train_config"]["teacher"] == str(teacher)
    assert run["train_config"]["teacher_weight"] == 0.7
    assert {"folder": "/elsewhere", "split": "train",
            "engines": {"vocals": ["choir"]}} in run["corpora"]["train"]["earlier"]
    assert engine_status("vocals", "choir", model_engines(out)) == TRAINED
    assert engine_status("vocals", "choir", model_engines(one_epoch)) != TRAINED


def test_a_teacher_that_does_not_fit_stops_before_the_run_starts(corpus, one_epoch, tmp_path,
                                                                 capsys):
    """A missing teacher, one that separates other sources and one with no record of its
    corpora each stop with the teacher's folder named; no run folder is left."""
    missing = tiny_config(corpus, teacher=str(tmp_path / "nowhere"))
    with pytest.raises(ValueError, match="teacher: model folder .*nowhere does not exist"):
        train(missing, tmp_path / "a", progress=False)
    four = tmp_path / "four"
    save_model(model_from_config(make_config("dualgate-tcn", "tiny", **TINY,
                                             sources=["vocals", "drums", "bass", "other"])),
               four)
    shutil.copy(one_epoch / "run.json", four / "run.json")
    with pytest.raises(ValueError, match="teacher .*four separates .*drums"):
        train(tiny_config(corpus, teacher=str(four)), tmp_path / "b", progress=False)
    unrecorded = _copy_run(one_epoch, tmp_path / "unrecorded")
    (unrecorded / "run.json").unlink()
    with pytest.raises(ValueError, match="teacher: .*unrecorded.*corpora"):
        train(tiny_config(corpus, teacher=str(unrecorded)), tmp_path / "c", progress=False)
    with pytest.raises(ValueError, match="teacher_weight"):
        tiny_config(corpus, teacher=str(one_epoch), teacher_weight=0.0).validate()
    assert not any((tmp_path / name).exists() for name in "abc")
    code = cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "d"),
                     "--teacher-weight", "0.5"])
    assert code != 0 and "give --teacher too" in capsys.readouterr().err
    assert not (tmp_path / "d").exists()
