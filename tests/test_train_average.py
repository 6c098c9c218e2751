"""`tinysep train --weight-average`: the saved model is the moving average of the weights the
steps went through, it is what validation scored, and a resumed run keeps the average."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf
import tf_keras as keras

from tinysep.cli import main as cli_main
from tinysep.data.loaders import load_split
from tinysep.data.synth import write_corpus
from tinysep.models import load_model, model_from_config
from tinysep.train import TrainConfig, train
from tinysep.training.data import validation_clips
from tinysep.training.validation import validation_sdr

TINY = {"residual": 6, "hidden": 6, "blocks": 2, "repeats": 1, "se_window": 2}
DECAY = 0.6


@pytest.fixture(scope="module")
def corpus(tmp_path_factory) -> Path:
    root = tmp_path_factory.mktemp("average") / "synth"
    write_corpus(root, songs=6, seconds=6.0, seed=3, progress=False)
    return root


def _config(corpus: Path, **changes) -> TrainConfig:
    base = TrainConfig(model="dualgate-tcn", preset="tiny", options=dict(TINY), data=str(corpus),
                       epochs=1, steps_per_epoch=3, batch_size=4, chunk_seconds=0.5,
                       learning_rate=3e-3, valid_clips=1, valid_seconds=2.0, seed=5)
    return base.replace(**changes)


def _weights(model) -> list[np.ndarray]:
    return [w.numpy() for w in model.weights if w.dtype.is_floating]


def test_the_saved_model_is_the_moving_average_of_the_steps(corpus, tmp_path):
    # the weights after 0, 1, 2 and 3 steps of the same run (a constant rate: a step does not
    # depend on how many follow it)
    keras.utils.set_random_seed(5)
    steps = [_weights(model_from_config(_config(corpus).model_config()))]
    for k in (1, 2, 3):
        train(_config(corpus, steps_per_epoch=k), tmp_path / f"raw{k}", progress=False)
        steps.append(_weights(load_model(tmp_path / f"raw{k}")))
    expected = steps[0]
    for after in steps[1:]:
        expected = [DECAY * e + (1 - DECAY) * w for e, w in zip(expected, after, strict=True)]
    out = tmp_path / "averaged"
    result = train(_config(corpus, weight_average=DECAY), out, progress=False)
    saved = _weights(load_model(out))
    assert len(saved) == len(expected) > 10  # trainable weights and normalisation statistics
    for got, want in zip(saved, expected, strict=True):
        np.testing.assert_allclose(got, want, rtol=1e-4, atol=1e-6)
    assert max(float(np.abs(g - w).max()) for g, w in zip(saved, steps[-1], strict=True)) > 1e-3
    # the validation score on record is the average's
    clips = validation_clips(load_split(corpus, split="valid", progress=False), 1, 2.0)
    assert validation_sdr(load_model(out), clips)["mean"] == pytest.approx(
        result.best_sdr["mean"], abs=1e-3)


def test_a_resumed_run_keeps_its_average(corpus, tmp_path):
    config = _config(corpus, epochs=2, weight_average=0.9)
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
def test_a_decay_outside_its_range_is_refused(corpus, decay):
    with pytest.raises(ValueError, match=r"weight_average is a decay per step in \[0, 1\)"):
        _config(corpus, weight_average=decay).validate()


def test_the_cli_refuses_a_decay_of_one(corpus, tmp_path, capsys):
    code = cli_main(["train", "--data", str(corpus), "--out", str(tmp_path / "run"),
                     "--weight-average", "1"])
    assert code != 0
    assert "weight_average is a decay per step in [0, 1)" in capsys.readouterr().err
    assert not (tmp_path / "run").exists()


def test_a_resume_can_turn_the_average_on(corpus, tmp_path):
    out = tmp_path / "run"
    train(_config(corpus), out, progress=False)
    first = _weights(load_model(out))  # the raw weights after epoch 1 (its best)
    config = _config(corpus, epochs=2, weight_average=0.999999)
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
    raw = _weights(model)
    assert max(float(np.abs(r - f).max()) for r, f in zip(raw, first, strict=True)) > 1e-3
