"""A saved model folder pins its architecture: later preset changes do not alter it."""

import json

import numpy as np

from tinysep.models import build_model, count_params, dualgate_tcn, load_model, save_model


def test_saved_folder_keeps_its_parameters_when_a_preset_changes(tmp_path, monkeypatch):
    model = build_model("dualgate-tcn", "tiny", residual=8, hidden=8, blocks=2, repeats=1)
    folder = save_model(model, tmp_path / "m")
    record = json.loads((folder / "config.json").read_text())
    assert record["params"]["residual"] == 8 and record["params"]["blocks"] == 2

    # Redefine what "tiny" and the defaults mean; the saved folder must not follow.
    monkeypatch.setitem(dualgate_tcn.PRESETS, "tiny", {"residual": 16, "hidden": 16})
    monkeypatch.setitem(dualgate_tcn.DEFAULTS, "blocks", 3)
    reloaded = load_model(folder)
    assert count_params(reloaded) == count_params(model)
    x = np.random.default_rng(0).uniform(0, 1, (1, 20, 257)).astype(np.float32)
    np.testing.assert_allclose(reloaded(x).numpy(), model(x).numpy(), atol=1e-6)
