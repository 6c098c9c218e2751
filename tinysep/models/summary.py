"""Size of a model config: parameters, MACs per hop, streaming state, MCU budget check."""

from __future__ import annotations

import tf_keras as keras

from tinysep.models.macs import macs_per_hop
from tinysep.models.registry import count_params, model_from_config, resolved_params
from tinysep.models.streaming import make_streaming_model

# Cortex-M7-class budget for the default (tiny) model.
MCU_BUDGET = {"params": 256_000, "macs_per_hop": 1_000_000}


def describe_config(config: dict) -> dict:
    """Parameters, MACs per 128-sample hop and state size of ``config``."""
    model = model_from_config(config)
    params = resolved_params(config)
    trainable = int(sum(keras.backend.count_params(w) for w in model.trainable_weights))
    info = {
        "name": config["name"],
        "preset": config.get("preset", "tiny"),
        "options": dict(config.get("options", {}) or {}),
        "params": count_params(model),
        "trainable_params": trainable,
        "macs_per_hop": macs_per_hop(model),
        "streamable": not params.get("bidirectional", False),
        "state_values": None,
        "state_tensors": None,
    }
    if info["streamable"]:
        spec = make_streaming_model(model, 1).tinysep_streaming
        info["state_values"] = spec.state_values
        info["state_tensors"] = len(spec.states)
    info["fits_mcu_budget"] = (
        info["params"] <= MCU_BUDGET["params"]
        and info["macs_per_hop"] <= MCU_BUDGET["macs_per_hop"]
        and info["streamable"]
    )
    return info
