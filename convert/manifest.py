"""Write ``manifest.json``, the contract between ``convert/`` and a board (docs/bundle.md).

:func:`build_manifest` describes a converted streaming model from its own flatbuffer (the
tensor indices, dtypes and int8 parameters a board must use) and the streaming spec (the
transform, the sources, which state output feeds which state input), in the terms of the
bundle contract (:mod:`firmware_host.bundle`), which also reads and checks it back.
"""

from __future__ import annotations

import hashlib
import json

import numpy as np

import tinysep
from convert.tflite_model import TensorInfo, TfliteModel
from firmware_host.bundle.layout import (
    DEFAULT_FRAMING,
    FORMAT,
    LONG_FORMAT_VERSION,
    MODEL_FILE,
    QUANTIZATIONS,
    SAMPLE_RATE,
    get_framing,
)
from firmware_host.bundle.quantization import DTYPES, requantize_rule

TENSOR_DTYPES = tuple(DTYPES)


def sha256_of(content: bytes) -> str:
    return hashlib.sha256(content).hexdigest()


def _hash_array(digest, name: str, array) -> None:
    array = np.ascontiguousarray(array)
    digest.update(f"{name}|{array.dtype.str}|{list(array.shape)}|".encode())
    digest.update(array.tobytes())


# Model options added after bundles began to record their float model, at the values that
# build the model as it was before them: left out of the architecture's hash, so a bundle
# exported earlier still matches its float model.
LATER_OPTIONS_AS_BEFORE = {"framing": DEFAULT_FRAMING, "pool_above": 0}


def float_model_digest(model) -> dict:
    """sha256 of a float Keras model built by :mod:`tinysep.models`: of its architecture
    (name and resolved parameters, canonical JSON, less :data:`LATER_OPTIONS_AS_BEFORE`), of
    its weights (dtype, shape and bytes of each, in order) and of both together. A saved and
    reloaded model hashes the same."""
    from tinysep.models import model_config
    from tinysep.models.registry import resolved_params

    config = model_config(model)
    params = {key: value for key, value in resolved_params(config).items()
              if LATER_OPTIONS_AS_BEFORE.get(key, object()) != value}
    architecture = {"name": config["name"], "params": params}
    config_sha = sha256_of(json.dumps(architecture, sort_keys=True).encode())
    weights = hashlib.sha256()
    for number, array in enumerate(model.get_weights()):
        _hash_array(weights, str(number), array)
    weights_sha = weights.hexdigest()
    return {
        "sha256": sha256_of(f"{config_sha}{weights_sha}".encode()),
        "config_sha256": config_sha,
        "weights_sha256": weights_sha,
    }


def calibration_digest(representative) -> dict:
    """sha256 of a calibration set: every recorded model input of every invoke, in order."""
    digest = hashlib.sha256()
    for number, sample in enumerate(representative.samples):
        for name in sorted(sample):
            _hash_array(digest, f"{number}:{name}", sample[name])
    return {"sha256": digest.hexdigest(), "invokes": len(representative.samples)}


def tensor_entry(tensor: TensorInfo, name: str, position: int) -> dict:
    """A manifest tensor entry (``scale`` / ``zero_point`` only for integer tensors)."""
    if tensor.dtype not in TENSOR_DTYPES:
        raise ValueError(f"tensor {name!r} has dtype {tensor.dtype}; a bundle's inputs and "
                         f"outputs must be one of {TENSOR_DTYPES}")
    entry = {
        "name": name,
        "index": tensor.index,
        "position": position,
        "shape": list(tensor.shape),
        "dtype": tensor.dtype,
    }
    if tensor.dtype != "float32":
        params = tensor.per_tensor
        if params is None:
            raise ValueError(f"tensor {name!r} ({tensor.dtype}) has no per-tensor scale")
        entry["scale"], entry["zero_point"] = params
    return entry


def build_manifest(
    content: bytes,
    spec,
    config: dict,
    quantization: str,
    *,
    params: int,
    macs_per_hop: int,
    arena: dict,
    micro_ops: list[str],
    extra: dict | None = None,
) -> dict:
    """The manifest of ``content`` (the exact bytes of ``model.tflite``)."""
    if quantization not in QUANTIZATIONS:
        raise ValueError(f"unknown quantization {quantization!r}")
    model = TfliteModel(content)
    sig = model.signature
    if sig is None:
        raise ValueError("the model has no signature: its tensors cannot be named")
    in_pos = {t: i for i, t in enumerate(model.inputs)}
    out_pos = {t: i for i, t in enumerate(model.outputs)}

    def entry(name: str, output: bool) -> dict:
        table = sig.outputs if output else sig.inputs
        if name not in table:
            side = "outputs" if output else "inputs"
            raise ValueError(f"the model has no {side[:-1]} named {name!r} ({sorted(table)})")
        index = table[name]
        return tensor_entry(model.tensors[index], name, (out_pos if output else in_pos)[index])

    k = spec.frames_per_invoke
    states = []
    for state in spec.states:
        s_in, s_out = entry(state.input, False), entry(state.output, True)
        if s_in["shape"] != s_out["shape"] or s_in["dtype"] != s_out["dtype"]:
            raise ValueError(f"state {state.input!r}: input {s_in['shape']} {s_in['dtype']} and "
                             f"output {s_out['shape']} {s_out['dtype']} differ")
        if s_in["dtype"] == "float32":
            kind = "copy"
        else:
            kind = requantize_rule((s_out["scale"], s_out["zero_point"]),
                                   (s_in["scale"], s_in["zero_point"]), s_in["dtype"])
        states.append({"input": s_in, "output": s_out, "shape": s_in["shape"],
                       "kind": state.kind, "requantize": kind})
    transform = {k_: v for k_, v in spec.input["transform"].items() if k_ != "formula"}
    framing = get_framing(spec.framing)
    output = entry(spec.output["name"], True)
    version = framing.format_version
    if spec.output.get("pool_above"):  # masks per input position, spread to bins on the board
        output["pool_above"] = int(spec.output["pool_above"])
        version = max(version, LONG_FORMAT_VERSION)
    manifest = {
        "format": FORMAT,
        "format_version": version,
        "kit_version": tinysep.__version__,
        "model": {
            "file": MODEL_FILE,
            "sha256": sha256_of(content),
            "bytes": len(content),
            "name": config["name"],
            "preset": config.get("preset"),
            "config": config,
            "quantization": quantization,
            "params": int(params),
            "macs_per_hop": int(macs_per_hop),
        },
        "audio": {
            "sample_rate": SAMPLE_RATE,
            "n_fft": framing.n_fft,
            "hop_samples": framing.hop,
            "analysis_window": framing.analysis_window,
            "synthesis_window": framing.synthesis_window,
            "frames_per_invoke": k,
            "latency_samples": framing.latency_samples(k),
        },
        "sources": list(spec.output["sources"]),
        "input": {**entry(spec.input["name"], False), "transform": transform},
        "output": output,
        "states": states,
        "state_bytes": int(sum(
            _elements(s["shape"]) * np.dtype(DTYPES[s["input"]["dtype"]][0]).itemsize
            for s in states
        )),
        "arena_bytes_estimate": int(arena["bytes"]),
        "arena_estimate": arena,
        "micro_ops": list(micro_ops),
    }
    if extra:
        manifest.update(extra)
    return manifest


def _elements(shape) -> int:
    n = 1
    for d in shape:
        n *= int(d)
    return n
