"""Hold a loaded interpreter against a bundle's manifest (the board agent's load-time checks).

``check_model`` compares the manifest's tensors with the interpreter's: index, shape, dtype,
and (unless told otherwise) scale and zero point. ``bind_by_position`` points the entries at
another build of the model whose indices differ; ``manifest_for_model`` rewrites the manifest
for an uploaded model with the same layout. numpy only, Python 3.7.
"""

from __future__ import annotations

import json
import math

import numpy as np

from firmware_host.bundle.manifest import Bundle
from firmware_host.bundle.tensors import BundleError, TensorSpec, state_rule

SCALE_RTOL = 1e-6
MAX_PROBLEMS_SHOWN = 4


def bind_by_position(bundle: Bundle, interpreter) -> None:
    """Point every tensor entry at the interpreter tensor in the same input/output place.

    For another build of the same model whose tensor indices differ (the Edge TPU
    compiler's output keeps the order of inputs and outputs, not the indices).
    """
    inputs = list(interpreter.get_input_details())
    outputs = list(interpreter.get_output_details())
    for specs, details, kind in (
        (bundle.input_specs(), inputs, "input"),
        (bundle.output_specs(), outputs, "output"),
    ):
        for spec in specs:
            if spec.position is None or spec.position >= len(details):
                raise BundleError(
                    f"{bundle.manifest_path}: {spec.name} has no usable position "
                    f"({spec.position!r}) among the model's {len(details)} {kind}s"
                )
            spec.index = int(details[spec.position]["index"])


def _detail_quantization(detail: dict):
    scale, zero_point = detail.get("quantization", (0.0, 0))
    return float(scale), int(zero_point)


def check_model(bundle: Bundle, interpreter, check_quantization: bool = True) -> None:
    """Raise BundleError listing every way the interpreter's tensors differ from the manifest."""
    inputs = dict((d["index"], d) for d in interpreter.get_input_details())
    outputs = dict((d["index"], d) for d in interpreter.get_output_details())
    problems = []
    for specs, details, kind in (
        (bundle.input_specs(), inputs, "input"),
        (bundle.output_specs(), outputs, "output"),
    ):
        for spec in specs:
            detail = details.get(spec.index)
            if detail is None:
                problems.append(
                    f"{spec.name}: the model has no {kind} tensor with index {spec.index}"
                )
                continue
            shape = tuple(int(d) for d in detail["shape"])
            dtype = np.dtype(detail["dtype"]).name
            if shape != spec.shape or dtype != spec.dtype:
                problems.append(
                    f"{spec.name}: manifest says {spec.dtype} {list(spec.shape)}, "
                    f"the model has {dtype} {list(shape)}"
                )
                continue
            if check_quantization and spec.quantized:
                scale, zero_point = _detail_quantization(detail)
                if zero_point != spec.zero_point or not math.isclose(
                    scale, spec.scale, rel_tol=SCALE_RTOL
                ):
                    problems.append(
                        f"{spec.name}: manifest says scale {spec.scale:.9g} zero_point "
                        f"{spec.zero_point}, the model has scale {scale:.9g} "
                        f"zero_point {zero_point}"
                    )
        covered = set(spec.index for spec in specs)
        extra = sorted(set(details) - covered)
        if extra:
            names = [details[i].get("name", "?") for i in extra[:3]]
            more = f" and {len(extra) - 3} more" if len(extra) > 3 else ""
            problems.append(
                f"the model has {len(extra)} {kind}s the manifest does not list ({names}{more})"
            )
    if problems:
        shown = problems[:MAX_PROBLEMS_SHOWN]
        if len(problems) > MAX_PROBLEMS_SHOWN:
            shown.append(f"{len(problems) - MAX_PROBLEMS_SHOWN} more differences")
        raise BundleError(f"{bundle.manifest_path} does not match the model: " + "; ".join(shown))


def manifest_for_model(bundle: Bundle, interpreter, sha256: str, size: int) -> dict:
    """The bundle's manifest rewritten for another model with the same tensor layout.

    Used after an upload: sha256, size and every scale / zero point come from the new model;
    each state's requantize rule is recomputed. Raises BundleError if the layout differs.
    """
    check_model(bundle, interpreter, check_quantization=False)
    details = dict(
        (d["index"], d)
        for d in list(interpreter.get_input_details()) + list(interpreter.get_output_details())
    )
    manifest = json.loads(bundle.manifest_text)

    def update(entry):
        if entry.get("dtype") != "float32":
            scale, zero_point = _detail_quantization(details[entry["index"]])
            entry["scale"] = scale
            entry["zero_point"] = zero_point

    update(manifest["input"])
    update(manifest["output"])
    for entry in manifest.get("states", []):
        update(entry["input"])
        update(entry["output"])
        pair_in = TensorSpec.from_json(entry["input"], "state input")
        pair_out = TensorSpec.from_json(entry["output"], "state output")
        entry["requantize"] = state_rule(pair_in, pair_out)
    manifest["model"]["sha256"] = sha256
    manifest["model"]["bytes"] = int(size)
    # what the upload cannot vouch for: the C array beside it still holds the earlier model,
    # and the new model's float source and calibration are not known on the board
    files = manifest.get("files")
    if isinstance(files, dict):
        files.update(c_array_bytes=None, c_array_sha256=None,
                     c_array_form="stale: model_data.cc holds the model before an upload")
    for key in ("provenance", "calibration"):
        if key in manifest:
            manifest[key] = None
    return manifest
