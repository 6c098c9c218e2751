"""Size of a model config: parameters, MACs per hop, streaming state, MCU budget check.

Building a model in TensorFlow to count it takes seconds per preset, so the presets' rows
are also kept in ``preset_sizes.json`` beside this module (a test rebuilds every preset
and compares); ``preset_rows`` reads them and builds only what the file does not hold.
"""

from __future__ import annotations

import json
from pathlib import Path

PRESET_SIZES_FILE = Path(__file__).with_name("preset_sizes.json")

# Cortex-M7-class budget for the default (tiny) model.
MCU_BUDGET = {"params": 256_000, "macs_per_hop": 1_000_000}


def describe_config(config: dict) -> dict:
    """Parameters, MACs per 128-sample hop and state size of ``config`` (builds it)."""
    import tf_keras as keras

    from tinysep.models.macs import macs_per_hop
    from tinysep.models.registry import count_params, model_from_config
    from tinysep.models.streaming import make_streaming_model, offline_only_reason, streaming_spec

    model = model_from_config(config)
    trainable = int(sum(keras.backend.count_params(w) for w in model.trainable_weights))
    info = {
        "name": config["name"],
        "preset": config.get("preset", "tiny"),
        "options": dict(config.get("options", {}) or {}),
        "params": count_params(model),
        "trainable_params": trainable,
        "macs_per_hop": macs_per_hop(model),
        "streamable": offline_only_reason(config) is None,
        "state_values": None,
        "state_tensors": None,
    }
    if info["streamable"]:
        spec = streaming_spec(make_streaming_model(model, 1))
        info["state_values"] = spec.state_values
        info["state_tensors"] = len(spec.states)
    info["fits_mcu_budget"] = (
        info["params"] <= MCU_BUDGET["params"]
        and info["macs_per_hop"] <= MCU_BUDGET["macs_per_hop"]
        and info["streamable"]
    )
    return info


def _key(config: dict) -> str:
    return json.dumps([config["name"], config.get("preset"), config.get("options") or {}],
                      sort_keys=True)


def stored_preset_sizes() -> dict[str, dict]:
    """The rows kept in ``preset_sizes.json``, by config key (empty if the file is absent)."""
    try:
        rows = json.loads(PRESET_SIZES_FILE.read_text())
    except (OSError, ValueError):
        return {}
    return {_key(r): r for r in rows}


def preset_rows(configs: list[dict]) -> list[dict]:
    """``describe_config`` of each config, taken from ``preset_sizes.json`` when it holds
    the config (no option overrides), built otherwise."""
    stored = stored_preset_sizes()
    return [dict(stored[_key(c)]) if _key(c) in stored else describe_config(c)
            for c in configs]


def add_preset_sizes(configs: list[dict]) -> list[dict]:
    """Build the configs ``preset_sizes.json`` does not hold yet and insert their rows after
    the last row of the same model, leaving every stored row as it is; returns the rows
    added (run after adding a preset)."""
    try:
        rows = json.loads(PRESET_SIZES_FILE.read_text())
    except (OSError, ValueError):
        rows = []
    held = {_key(r) for r in rows}
    added = [describe_config(c) for c in configs if _key(c) not in held]
    for row in added:
        same = [i for i, r in enumerate(rows) if r["name"] == row["name"]]
        rows.insert(same[-1] + 1 if same else len(rows), row)
    PRESET_SIZES_FILE.write_text(json.dumps(rows, indent=1) + "\n")
    return added


def write_preset_sizes(configs: list[dict]) -> Path:
    """Rebuild every config and write ``preset_sizes.json`` (run after changing a preset)."""
    rows = [describe_config(c) for c in configs]
    PRESET_SIZES_FILE.write_text(json.dumps(rows, indent=1) + "\n")
    return PRESET_SIZES_FILE
