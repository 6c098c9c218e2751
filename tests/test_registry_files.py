"""A saved model folder read back: damaged weights, weights of other sizes and config.json
values out of range are refused naming the file and the field, never a raw h5py or Keras
error."""

from __future__ import annotations

import json
import re
import shutil
from pathlib import Path

import numpy as np
import pytest

from firmware_host.bundle import BundleError
from firmware_host.bundle.manifest import check_source_names
from tinysep.data.sources import KNOWN_SOURCES
from tinysep.models import build_model, load_model, make_config, predict_masks, save_model

SMALL_TCN = {"residual": 8, "hidden": 8, "blocks": 2, "repeats": 1}


@pytest.fixture(scope="module")
def saved(tmp_path_factory) -> Path:
    return save_model(build_model("dualgate-tcn", **SMALL_TCN), tmp_path_factory.mktemp("m") / "m")


@pytest.fixture
def folder(saved, tmp_path) -> Path:
    return Path(shutil.copytree(saved, tmp_path / "model"))


def _edit_config(folder: Path, edit) -> Path:
    path = folder / "config.json"
    record = json.loads(path.read_text())
    edit(record)
    path.write_text(json.dumps(record))
    return path


def test_an_unchanged_copy_loads_and_predicts_the_same(saved, folder):
    mag = np.random.default_rng(0).gamma(1.0, 2.0, (5, 257)).astype(np.float32)
    masks = predict_masks(load_model(folder), mag)
    np.testing.assert_array_equal(masks, predict_masks(load_model(saved), mag))
    assert masks.shape == (5, 257, 2)


@pytest.mark.parametrize(
    "damage",
    [
        lambda data: b"",
        lambda data: b"not an hdf5 file" * 64,
        lambda data: data[: len(data) // 2],
    ],
    ids=["empty", "text", "truncated"],
)
def test_a_damaged_weights_file_is_named(folder, damage):
    weights = folder / "model.weights.h5"
    weights.write_bytes(damage(weights.read_bytes()))
    with pytest.raises(OSError) as caught:
        load_model(folder)
    assert str(caught.value).startswith(f"{weights} is not a readable Keras weights file (")


def test_an_hdf5_file_without_keras_weights_is_named(folder):
    import h5py

    weights = folder / "model.weights.h5"
    with h5py.File(weights, "w") as handle:
        handle.create_dataset("vars", data=np.zeros(3))
    with pytest.raises(OSError, match="is not a readable Keras weights file"):
        load_model(folder)


@pytest.mark.parametrize("key, value", [("residual", 128), ("blocks", 3)])
def test_weights_of_other_sizes_than_the_config_are_named(folder, key, value):
    _edit_config(folder, lambda r: r["params"].update({key: value}))
    with pytest.raises(ValueError) as caught:
        load_model(folder)
    text = str(caught.value)
    assert text.startswith(f"{folder}: the weights in model.weights.h5 do not match config.json")
    assert "Shape mismatch" in text


@pytest.mark.parametrize(
    "gain", [float("nan"), float("inf"), -1.0, 0, True, "100"], ids=repr
)
def test_an_input_gain_that_is_not_a_finite_positive_number_is_refused(folder, gain):
    path = _edit_config(folder, lambda r: r["params"].update(input_gain=gain))
    with pytest.raises(ValueError) as caught:
        load_model(folder)
    assert str(caught.value) == (
        f"{path}: input_gain must be a finite number > 0, got {gain!r}"
    )


def test_an_input_gain_option_is_checked_when_a_model_is_built():
    with pytest.raises(ValueError, match=r"input_gain must be a finite number > 0, got -3"):
        make_config("dualgate-tcn", input_gain=-3)
    with pytest.raises(ValueError, match=r"input_gain must be a finite number > 0, got nan"):
        make_config("unet-se-sru", input_gain=float("nan"))
    assert make_config("dualgate-tcn", input_gain=0.5)["options"] == {"input_gain": 0.5}


@pytest.mark.parametrize("version", [999, 0, "1", 1.0, True, None])
def test_a_config_format_this_kit_does_not_read_is_refused(folder, version):
    path = _edit_config(folder, lambda r: r.update(format=version))
    with pytest.raises(ValueError) as caught:
        load_model(folder)
    assert str(caught.value) == (
        f"{path}: format {version!r} is not supported (this tinysep reads format 1)"
    )


def test_a_config_written_without_a_format_still_loads(folder):
    _edit_config(folder, lambda r: r.pop("format"))
    assert load_model(folder).tinysep_config["params"]["residual"] == 8


@pytest.mark.parametrize("key", ["name", "preset"])
def test_a_name_or_preset_that_is_not_a_string_is_named(folder, key):
    path = _edit_config(folder, lambda r: r.update({key: ["dualgate-tcn"]}))
    with pytest.raises(ValueError) as caught:
        load_model(folder)
    assert str(caught.value) == (
        f"{path}: model config {key!r} must be a string, got ['dualgate-tcn']"
    )


@pytest.mark.parametrize(
    "sources", [["/tmp/victim", "vocals"], ["../../x", "vocals"], ["vocals", "vocals"]]
)
def test_config_sources_refused_by_the_bundle_rule_are_refused_by_the_registry(
    folder, sources
):
    with pytest.raises(BundleError):
        check_source_names(sources, "sources")
    path = _edit_config(folder, lambda r: r["params"].update(sources=sources))
    with pytest.raises(ValueError, match=rf"^{re.escape(str(path))}: sources"):
        load_model(folder)


def test_every_source_a_model_can_have_is_a_valid_bundle_source_name():
    assert check_source_names(list(KNOWN_SOURCES), "sources") == list(KNOWN_SOURCES)
