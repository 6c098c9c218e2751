"""Export a trained separator as a deploy bundle (docs/bundle.md).

:func:`export_bundle` builds the streaming form, calibrates it on real audio, quantizes it,
and writes ``model.tflite`` (16-byte-aligned buffers, internal tensor names stripped),
``model_data.cc/.h``, ``micro_ops.txt``, ``edgetpu_report.json``, ``calibration.json`` and,
last, ``manifest.json`` into a hidden temporary folder beside the target, which is then
renamed into place. A crash leaves no folder that looks like a bundle; an existing bundle
is replaced only with ``force`` (and only if it is a bundle or empty).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import time
from collections.abc import Sequence
from pathlib import Path

from calibration.representative import DEFAULT_FRAMES
from convert.manifest import build_manifest, calibration_digest, float_model_digest, sha256_of
from convert.quantize import QUANT_MODES, check_keep_float, quantize_stream
from firmware_host.bundle.layout import (
    BUNDLE_FILES,
    C_HEADER_FILE,
    C_SOURCE_FILE,
    CALIBRATION_FILE,
    EDGETPU_REPORT,
    FORMAT,
    FULL_INTEGER,
    MANIFEST_FILE,
    MICRO_OPS_FILE,
    MODEL_FILE,
)
from tinysep.folder_writes import clean_abandoned_writes

# The microcontroller budgets a default bundle is held to: flash for the model,
# TFLite Micro tensor arena, multiply-accumulates per 8 ms hop.
BUDGET_MODEL_BYTES = 256 * 1024
BUDGET_ARENA_BYTES = 64 * 1024
BUDGET_MACS_PER_HOP = 1_000_000
DEFAULT_SYMBOL = "g_tinysep_model"
# the most STFT frames one invoke takes: 64 hops are 512 ms of audio, beyond any streaming use,
# and the graph and its arena grow with the block
MAX_FRAMES_PER_INVOKE = 64


def _json(path: Path, data: dict) -> None:
    path.write_text(json.dumps(data, indent=1, allow_nan=False) + "\n")


def check_destination(out: Path, force: bool) -> None:
    """Refuse an existing folder unless ``force`` and it is a bundle holding nothing but
    :data:`BUNDLE_FILES` (or empty); first
    finish what an export killed mid-way left there (`clean_abandoned_writes`)."""
    clean_abandoned_writes(out)
    if not out.exists():
        return
    if not out.is_dir():
        raise ValueError(f"{out} exists and is not a folder")
    if not force:
        raise ValueError(f"bundle folder {out} already exists; pass --force to replace it")
    manifest = out / MANIFEST_FILE
    is_bundle = False
    if manifest.is_file():
        try:
            is_bundle = json.loads(manifest.read_text()).get("format") == FORMAT
        except (OSError, ValueError, AttributeError):
            is_bundle = False
    if not is_bundle and any(out.iterdir()):
        raise ValueError(f"{out} is not a tinysep bundle and not empty; refusing to replace it")
    others = sorted(entry.name for entry in out.iterdir() if entry.name not in BUNDLE_FILES)
    if others:
        raise ValueError(f"bundle folder {out} also holds {', '.join(others)}, which an export "
                         "does not write; move them out before replacing the bundle")


def _load(model):
    from tinysep.models import load_model, model_config

    if isinstance(model, (str, Path)):
        model = load_model(model)
    model_config(model)  # a clear error if it carries no tinysep config
    return model


def _representative(stream, calibration, frames: int, split: str, seed: int, progress: bool,
                    gains_db=None):
    from calibration.representative import (
        DEFAULT_GAINS_DB,
        RepresentativeSet,
        build_representative_set,
        load_calibration_clips,
        segments_needed,
    )

    if calibration is None:
        raise ValueError("full-integer export needs calibration audio (--calibration DATA: a "
                         "dataset folder, e.g. the training corpus)")
    if isinstance(calibration, RepresentativeSet):
        return calibration
    if isinstance(calibration, (str, Path)):
        calibration = load_calibration_clips(calibration, split=split, seed=seed,
                                             max_clips=segments_needed(frames),
                                             progress=progress)
    return build_representative_set(stream, list(calibration), frames, seed=seed,
                                    gains_db=DEFAULT_GAINS_DB if gains_db is None else gains_db,
                                    progress=progress)


def export_bundle(
    model,
    out: str | Path,
    *,
    quant: str = "int8",
    frames_per_invoke: int = 1,
    calibration=None,
    calibration_frames: int = DEFAULT_FRAMES,
    calibration_split: str = "train",
    calibration_gains: Sequence[float] | None = None,
    force: bool = False,
    keep_float: Sequence[str] = (),
    per_channel: bool = False,
    keep_tensor_names: bool = False,
    micro_compact: bool = False,
    edgetpu_compile: bool = True,
    symbol: str = DEFAULT_SYMBOL,
    seed: int = 0,
    progress: bool = True,
) -> dict:
    """Write the bundle of ``model`` (a saved model folder or a Keras model built by
    :mod:`tinysep.models`) to ``out``; returns a summary (paths, sizes, checks).

    ``calibration``: a dataset folder, a list of clips, or a ready
    :class:`calibration.representative.RepresentativeSet` (int8 / int16x8 only);
    ``calibration_gains``: the levels (dB) its segments are replayed at (None: the default
    of :func:`calibration.representative.build_representative_set`).
    ``micro_compact``: the C array gets all-zero per-channel zero-point vectors shortened
    to one value (TFLite Micro reads them so; ~8 B per output channel saved), so it is no
    longer byte-identical to ``model.tflite``.
    """
    from convert.edgetpu import edgetpu_report
    from convert.micro import (
        c_source,
        compact_zero_points,
        estimate_arena,
        measure_arena,
        resolver_source,
        unsupported_micro_ops,
    )
    from convert.tflite_model import TfliteModel
    from tinysep.metrics.by_engine import recorded_corpora
    from tinysep.models import count_params, macs_per_hop, make_streaming_model, model_config
    from tinysep.models.streaming import streaming_spec

    begin = time.perf_counter()
    out = Path(out)
    if quant not in QUANT_MODES:
        raise ValueError(f"unknown quantization {quant!r}; choose from {', '.join(QUANT_MODES)}")
    if (not isinstance(frames_per_invoke, int)
            or not 1 <= frames_per_invoke <= MAX_FRAMES_PER_INVOKE):
        raise ValueError(f"frames per invoke must be a whole number from 1 to "
                         f"{MAX_FRAMES_PER_INVOKE}, got {frames_per_invoke!r}")
    check_destination(out, force)
    keras_model = _load(model)
    # what the float model trained and was selected on, so that per-engine tables of the
    # bundle tell the engines it trained on from the held-out ones
    corpora = recorded_corpora(model) if isinstance(model, (str, Path)) else None
    config = model_config(keras_model)
    stream = make_streaming_model(keras_model, frames_per_invoke)
    check_keep_float(stream, keep_float, quant)  # before the (slow) calibration
    rep = None
    if quant in FULL_INTEGER:
        rep = _representative(stream, calibration, calibration_frames, calibration_split, seed,
                              progress, calibration_gains)
    quantized = quantize_stream(stream, quant, rep, keep_float=keep_float,
                                per_channel=per_channel)
    tflite = TfliteModel(quantized.content)
    if not keep_tensor_names:
        tflite.strip_internal_names()
    content = tflite.to_bytes()
    tflite = TfliteModel(content)
    arena = estimate_arena(tflite)
    ops = tflite.op_names
    integer = quant in FULL_INTEGER
    c_array = content
    if micro_compact:
        compact = TfliteModel(content)
        compact_zero_points(compact)
        c_array = compact.to_bytes()
    try:
        arena_tflm = measure_arena(c_array)  # None without the tflite-micro package
    except (RuntimeError, subprocess.TimeoutExpired) as exc:
        arena_tflm = {"bytes": None, "error": str(exc)}
    calibration_info = rep.summary() if rep is not None else None
    provenance = {
        "float_model": float_model_digest(keras_model),
        "calibration": calibration_digest(rep) if rep is not None else None,
        "corpora": corpora,
    }
    extra = {
        "provenance": provenance,
        "arena_tflite_micro": arena_tflm,
        "export": {
            "seconds": None,
            "tied_states": quantized.tied_states,
            "keep_float": list(quantized.keep_float),
            "per_channel": per_channel,
            "tensor_names": "kept" if keep_tensor_names else "inputs and outputs only",
            "weight_bytes": tflite.weight_bytes,
            "micro_unsupported_ops": unsupported_micro_ops(tflite, integer),
        },
        "calibration": None if calibration_info is None else {
            k: v for k, v in calibration_info.items() if k != "clips"
        },
        "files": {
            "model": MODEL_FILE,
            "c_source": C_SOURCE_FILE,
            "c_header": C_HEADER_FILE,
            "c_symbol": f"{symbol}_data",
            "c_array_bytes": len(c_array),
            "c_array_sha256": sha256_of(c_array),
            "c_array_form": "zero points compacted for TFLite Micro" if micro_compact
            else "identical to model.tflite",
            "micro_ops": MICRO_OPS_FILE,
            "edgetpu_report": EDGETPU_REPORT,
        },
    }
    manifest = build_manifest(
        content, streaming_spec(stream), config, quant,
        params=count_params(keras_model), macs_per_hop=macs_per_hop(stream), arena=arena,
        micro_ops=ops, extra=extra,
    )

    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.parent / f".{out.name}.partial-{os.getpid()}"
    if tmp.exists():
        shutil.rmtree(tmp)
    tmp.mkdir()
    try:
        (tmp / MODEL_FILE).write_bytes(content)
        source, header = c_source(c_array, symbol)
        (tmp / C_SOURCE_FILE).write_text(source)
        (tmp / C_HEADER_FILE).write_text(header)
        (tmp / MICRO_OPS_FILE).write_text(resolver_source(ops))
        report = edgetpu_report(tflite, tmp / MODEL_FILE, compile=edgetpu_compile and integer)
        _json(tmp / EDGETPU_REPORT, report)
        if calibration_info is not None:
            _json(tmp / CALIBRATION_FILE, {**calibration_info, "segments": rep.segments})
        manifest["edgetpu_compatible"] = report["compatible"]
        manifest["export"]["seconds"] = round(time.perf_counter() - begin, 2)
        _json(tmp / MANIFEST_FILE, manifest)  # last: its presence marks a complete bundle
        _replace(tmp, out, force)
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return {
        "bundle": str(out),
        "quantization": quant,
        "frames_per_invoke": frames_per_invoke,
        "model_bytes": len(content),
        "c_array_bytes": len(c_array),
        "weight_bytes": tflite.weight_bytes,
        "arena_bytes_estimate": arena["bytes"],
        "arena_estimate": arena,
        "arena_bytes_tflm": None if arena_tflm is None else arena_tflm["bytes"],
        "arena_tflite_micro": arena_tflm,
        "macs_per_hop": manifest["model"]["macs_per_hop"],
        "params": manifest["model"]["params"],
        "state_bytes": manifest["state_bytes"],
        "states": len(manifest["states"]),
        "states_copied": sum(s["requantize"] == "copy" for s in manifest["states"]),
        "micro_ops": ops,
        "micro_unsupported_ops": extra["export"]["micro_unsupported_ops"],
        "edgetpu": {"compatible": report["compatible"], "compiler": report["compiler"]},
        "calibration": extra["calibration"],
        "provenance": provenance,
        "seconds": manifest["export"]["seconds"],
    }


def _replace(tmp: Path, out: Path, force: bool) -> None:
    """Move the finished ``tmp`` folder to ``out`` (the old bundle is removed after)."""
    old = None
    if out.exists():
        check_destination(out, force)
        old = out.parent / f".{out.name}.old-{os.getpid()}"
        if old.exists():
            shutil.rmtree(old)
        os.replace(out, old)
    os.replace(tmp, out)
    if old is not None:
        shutil.rmtree(old, ignore_errors=True)
