"""Quantization sweeps: a grid of model variants x quantization modes x calibration sizes.

Variants are the base model, magnitude-pruned copies (one per sparsity) and narrower
copies from structured pruning (one per width set); each is fine-tuned once and saved
under ``OUT/models/``. Every cell converts one variant, measures its size, MACs per hop,
host time per hop (one thread) and the SDR of the float and the converted model on the
same held-out clips, and is written to ``OUT/cells/<cell>.json`` the moment it finishes.
A killed sweep resumes where it stopped: finished variants and cells are never redone.
The tables (CSV, JSON, Markdown) and the plot are rebuilt from the cell files.
"""

from __future__ import annotations

import csv
import json
import os
import shutil
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from calibration.representative import DEFAULT_FRAMES
from convert.sizes import KIB
from tinysep.data.clip import SOURCES
from tinysep.jsonfile import (
    is_finite_number,
    is_whole_number,
    read_json,
    write_json_atomic,
    write_text_atomic,
)

DONE_FILE = "done.json"
PLAN_FILE = "plan.json"
CELLS_DIR = "cells"
MODELS_DIR = "models"
RESULT_FILES = ("results.csv", "results.json", "results.md", "results.png")
CSV_TMP = "results.csv.tmp"
# every entry a sweep writes into its folder (plan.json marks one)
SWEEP_FILES = frozenset({PLAN_FILE, CELLS_DIR, MODELS_DIR, *RESULT_FILES, CSV_TMP})
# what a sweep compares with the plan.json of an earlier sweep in the same folder
PLAN_KEYS = ("model", "frames_per_invoke", "prune_steps", "eval_clips")
SCORE_KEYS = ("sdr_reference", "sdr", "drop_db")  # what a cell holds per source


@dataclass(frozen=True)
class Variant:
    """A model variant: ``base``, ``s0.5`` (magnitude sparsity) or ``w-residual24-hidden48``."""

    name: str
    sparsity: float = 0.0
    widths: tuple = ()

    def to_json(self) -> dict:
        return {"name": self.name, "sparsity": self.sparsity, "widths": dict(self.widths)}


@dataclass
class SweepPlan:
    variants: list[Variant]
    modes: list[str]
    calibration_frames: list[int]
    frames_per_invoke: int = 1
    prune_steps: int = 300
    eval_clips: int = 8
    cells: list[dict] = field(default_factory=list)
    loss: tuple = ("l1", 0.01)  # fine-tuning loss and SDR weight (the model's own)


def variant_for_widths(widths: dict) -> Variant:
    tag = "-".join(f"{k}{'x'.join(map(str, v)) if isinstance(v, list) else v}"
                   for k, v in sorted(widths.items()))
    return Variant(f"w-{tag}", 0.0, tuple(sorted((k, tuple(v) if isinstance(v, list) else v)
                                                 for k, v in widths.items())))


def check_widths(config: dict, widths: Sequence[dict], label: str = "widths") -> None:
    """Refuse a width set the model of ``config`` cannot be narrowed to (an option it does not
    have, a value it refuses, a width above its own), naming the set after ``label``."""
    from convert.prune import check_widths as check_one

    for width in widths:
        try:
            check_one(config, dict(width))
        except ValueError as exc:
            raise ValueError(f"{label} {_width_text(width)}: {exc}") from None


def _width_text(widths: dict) -> str:
    """A width set as the command line spells it: ``residual=24,hidden=48``."""
    return ",".join(f"{k}={json.dumps(v)}" for k, v in widths.items())


def make_plan(sparsities: Sequence[float], modes: Sequence[str], calibration_frames:
              Sequence[int], widths: Sequence[dict] = (), frames_per_invoke: int = 1,
              prune_steps: int = 300, eval_clips: int = 8,
              config: dict | None = None) -> SweepPlan:
    """The grid; full-integer modes get one cell per calibration size, others one cell.
    With the model's ``config`` the width sets are checked against it too, so that a bad
    one is refused before any cell runs (:func:`run_sweep` checks them against the model
    it loads either way)."""
    from convert.export import MAX_FRAMES_PER_INVOKE
    from convert.prune import check_sparsity
    from convert.quantize import FULL_INTEGER, QUANT_MODES

    for mode in modes:
        if mode not in QUANT_MODES:
            raise ValueError(f"unknown quantization {mode!r}; choose from {', '.join(QUANT_MODES)}")
    if not modes:
        raise ValueError("a sweep needs at least one quantization mode")
    for frames in calibration_frames:
        if not is_whole_number(frames) or frames < 1:
            raise ValueError(f"calibration frames must be whole numbers >= 1, got {frames!r}")
    if not (is_whole_number(frames_per_invoke)
            and 1 <= frames_per_invoke <= MAX_FRAMES_PER_INVOKE):
        raise ValueError(f"frames per invoke must be a whole number from 1 to "
                         f"{MAX_FRAMES_PER_INVOKE}, got {frames_per_invoke!r}")
    if config is not None:
        check_widths(config, widths)
    variants = []
    for s in sparsities:
        s = check_sparsity(float(s))
        variants.append(Variant("base") if s == 0 else Variant(f"s{s:g}", s))
    variants += [variant_for_widths(w) for w in widths]
    if not variants:
        variants = [Variant("base")]
    plan = SweepPlan(list(dict.fromkeys(variants)), list(modes),
                     sorted({int(f) for f in calibration_frames}) or [DEFAULT_FRAMES],
                     int(frames_per_invoke), prune_steps, eval_clips)
    for variant in plan.variants:
        for mode in plan.modes:
            sizes = plan.calibration_frames if mode in FULL_INTEGER else [0]
            for frames in sizes:
                cal = f"-cal{frames}" if frames else ""
                plan.cells.append({"id": f"{variant.name}-{mode}{cal}", "variant": variant,
                                   "mode": mode, "calibration_frames": frames})
    return plan


def check_sweep_folder(out: str | Path, model_folder: str | Path,
                       label: str = "sweep folder") -> None:
    """Refuse a sweep folder that is the model folder (or inside or around it), a file, or
    a folder that is not empty and is no sweep's (no plan.json, or entries a sweep does not
    write); ``label`` names the folder in the error."""
    from tinysep.folder_writes import check_own_output

    check_own_output(out, model_folder, SWEEP_FILES, "a sweep", marker=PLAN_FILE, label=label)


def _variant_model(variant: Variant, base, clips, out: Path, plan: SweepPlan, seed: int):
    """The variant's model, from ``OUT/models/<name>`` when a finished copy exists."""
    from convert.finetune import fine_tune
    from convert.prune import magnitude_prune, narrow_model
    from tinysep.models import load_model, save_model

    if variant.name == "base":
        return base
    folder = out / MODELS_DIR / variant.name
    if (folder / DONE_FILE).is_file():
        return load_model(folder)
    start = time.perf_counter()
    report: dict = {"variant": variant.to_json()}
    loss, sdr_weight = plan.loss
    if variant.widths:
        model, report["structured"] = narrow_model(base, **{k: list(v) if isinstance(v, tuple)
                                                          else v for k, v in variant.widths})
        report["losses"] = fine_tune(model, clips, plan.prune_steps, loss=loss,
                                     sdr_weight=sdr_weight, learning_rate=3e-4,
                                     seed=seed)[-5:]
    else:
        model, report["magnitude"] = magnitude_prune(base, clips, variant.sparsity,
                                                     plan.prune_steps, loss=loss,
                                                     sdr_weight=sdr_weight, seed=seed)
    tmp = folder.with_name(folder.name + f".partial-{os.getpid()}")
    if tmp.exists():
        shutil.rmtree(tmp)
    save_model(model, tmp)
    report["seconds"] = time.perf_counter() - start
    write_json_atomic(tmp / DONE_FILE, report)
    if folder.exists():
        shutil.rmtree(folder)
    os.replace(tmp, folder)
    return model


def _float_scores(variant: Variant, model, eval_clips, out: Path) -> list[dict]:
    from convert.quality import float_records

    path = out / MODELS_DIR / f"{variant.name}.float_scores.json"
    if path.is_file():
        return _read_records(path)
    records = float_records(model, eval_clips)
    write_json_atomic(path, records)
    return records


def _read_records(path: Path) -> list[dict]:
    """The float-model scores saved at ``path``: a JSON list of objects (errors name it)."""
    try:
        records = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # undecodable bytes too
        raise ValueError(f"{path} is not readable JSON ({exc})") from exc
    if not isinstance(records, list) or not all(isinstance(r, dict) for r in records):
        raise ValueError(f"{path}: expected a JSON list of score objects")
    return records


def run_cell(cell: dict, model, calibration_clips, eval_clips, float_scores: list[dict],
             frames_per_invoke: int, seed: int = 0) -> dict:
    """Convert ``model`` as the cell says and measure it (see the module doc)."""
    from calibration.representative import build_representative_set
    from convert.micro import compact_zero_points, measure_arena
    from convert.prune import gzip_size
    from convert.quality import quantized_records, runner_for, sdr_delta
    from convert.quantize import quantize_stream
    from convert.runtime import measure_latency
    from convert.tflite_model import TfliteModel
    from tinysep.models import count_params, macs_per_hop, make_streaming_model

    start = time.perf_counter()
    stream = make_streaming_model(model, frames_per_invoke)
    rep = None
    if cell["calibration_frames"]:
        rep = build_representative_set(stream, calibration_clips, cell["calibration_frames"],
                                       seed=seed, progress=False)
    quantized = quantize_stream(stream, cell["mode"], rep)
    latency = measure_latency(runner_for(quantized, stream), invokes=100, warmup=10)
    bundle_model = TfliteModel(quantized.content)
    bundle_model.strip_internal_names()  # as `tinysep export` writes it
    bundle_bytes = bundle_model.to_bytes()
    compact_zero_points(bundle_model)
    try:
        arena = measure_arena(bundle_bytes)
    except RuntimeError:  # e.g. an op TFLite Micro has no kernel for (dynamic, float16)
        arena = None
    delta = sdr_delta(float_scores, quantized_records(quantized, stream, eval_clips))
    return {
        "id": cell["id"],
        "variant": cell["variant"].to_json(),
        "mode": cell["mode"],
        "calibration_frames": cell["calibration_frames"],
        "frames_per_invoke": frames_per_invoke,
        "bytes": len(bundle_bytes),
        "micro_bytes": len(bundle_model.to_bytes()),
        "weight_bytes": TfliteModel(quantized.content).weight_bytes,
        "gzip_bytes": gzip_size(bundle_bytes),
        "arena_tflm": None if arena is None else arena["bytes"],
        "params": count_params(model),
        "macs_per_hop": macs_per_hop(stream),
        "host_us_per_hop": latency["invoke_us_per_hop"],
        "states_tied": len(quantized.tied_states),
        "sources": delta,
        "eval_clips": len(eval_clips),
        "seconds": time.perf_counter() - start,
    }


def _plan_json(model_folder, data, plan: SweepPlan) -> dict:
    """What plan.json records of a sweep."""
    return {"model": str(model_folder), "data": str(data),
            "variants": [v.to_json() for v in plan.variants], "modes": plan.modes,
            "calibration_frames": plan.calibration_frames,
            "frames_per_invoke": plan.frames_per_invoke, "prune_steps": plan.prune_steps,
            "eval_clips": plan.eval_clips}


def check_resumable(out: Path, plan_json: dict) -> None:
    """Refuse to add to the sweep in ``out`` when its plan.json says it measured another
    model or settings (its finished cells would not compare)."""
    path = out / PLAN_FILE
    if not path.is_file():
        return
    previous = read_json(path, "the plan of the sweep in this folder")
    for key in PLAN_KEYS:
        if previous.get(key) != plan_json[key]:
            raise ValueError(f"{out} holds a sweep with {key}={previous.get(key)!r}, not "
                             f"{plan_json[key]!r}; use another --out or the same settings")


def _check_variants(plan: SweepPlan, base, out: Path) -> None:
    """Narrow the base model to every width variant not yet saved, before any cell runs:
    a width its channels cannot take is refused now, not after the base cells."""
    from convert.prune import narrow_model

    for variant in plan.variants:
        if variant.widths and not (out / MODELS_DIR / variant.name / DONE_FILE).is_file():
            try:
                narrow_model(base, **{k: list(v) if isinstance(v, tuple) else v
                                      for k, v in variant.widths})
            except ValueError as exc:
                raise ValueError(f"widths {_width_text(dict(variant.widths))}: {exc}") from None


def run_sweep(model_folder: str | Path, data: str | Path, out: str | Path, plan: SweepPlan,
              *, max_clips: int = 64, seed: int = 0, progress: bool = True) -> list[dict]:
    """Run every unfinished cell of ``plan``; returns all finished cells (old and new).
    Nothing is written into ``out`` until the model and the clips have loaded."""
    from calibration.representative import load_calibration_clips
    from convert.finetune import training_loss_of
    from tinysep.data.loaders import find_clips, load_clips
    from tinysep.models import load_model
    from tinysep.models.registry import model_sources

    out = Path(out)
    check_sweep_folder(out, model_folder)
    plan_json = _plan_json(model_folder, data, plan)
    check_resumable(out, plan_json)
    finished_cells(out)  # a damaged cell file is named now, not after the new cells ran
    plan.loss = training_loss_of(model_folder)
    todo = [c for c in plan.cells if not (out / CELLS_DIR / f"{c['id']}.json").is_file()]
    if not todo:
        write_json_atomic(out / PLAN_FILE, plan_json)
        write_tables(out, plan)
        return finished_cells(out, plan)
    base = load_model(model_folder)
    _check_variants(plan, base, out)
    clips = load_calibration_clips(data, "train", max_clips=max_clips, seed=seed,
                                   progress=progress)
    sources = find_clips(data, split="test", sources=model_sources(base))[: plan.eval_clips]
    if not sources:
        raise ValueError(f"no clips in the test split of {data}")
    eval_clips = load_clips(sources)
    write_json_atomic(out / PLAN_FILE, plan_json)  # the folder is a sweep's from here on
    from tinysep.progress import Progress

    bar = Progress(len(todo), "sweep", unit="cell", enabled=progress)
    for cell in todo:
        bar.postfix(cell["id"])
        model = _variant_model(cell["variant"], base, clips, out, plan, seed)
        scores = _float_scores(cell["variant"], model, eval_clips, out)
        result = run_cell(cell, model, clips, eval_clips, scores, plan.frames_per_invoke,
                          seed)
        write_json_atomic(out / CELLS_DIR / f"{cell['id']}.json", result)
        write_tables(out, plan)
        bar.update(1)
    bar.close()
    write_tables(out, plan)
    return finished_cells(out, plan)


def read_cell(path: Path) -> dict:
    """A finished cell from ``path`` (``cells/<id>.json``), checked to hold what the tables
    read; errors name the file and the field."""
    cell = read_json(path, "a finished sweep cell")
    if cell.get("id") != path.stem:
        raise ValueError(f"{path}: 'id' must be {path.stem!r}, the file's name, got "
                         f"{cell.get('id')!r}")
    variant = cell.get("variant")
    if not isinstance(variant, dict) or not isinstance(variant.get("name"), str):
        raise ValueError(f"{path}: 'variant' must be an object with a 'name'")
    if not isinstance(cell.get("mode"), str):
        raise ValueError(f"{path}: 'mode' must be a quantization name")
    for key in ("bytes", "macs_per_hop", "host_us_per_hop"):
        if not is_finite_number(cell.get(key)):
            raise ValueError(f"{path}: {key!r} must be a number, got {cell.get(key)!r}")
    sources = cell.get("sources")
    if not isinstance(sources, dict):
        raise ValueError(f"{path}: 'sources' must be an object of per-source scores")
    for source, row in sources.items():
        if not isinstance(row, dict) or not all(
                k in row and (row[k] is None or is_finite_number(row[k])) for k in SCORE_KEYS):
            raise ValueError(f"{path}: 'sources' {source!r} must hold the numbers "
                             f"{', '.join(SCORE_KEYS)}")
    return cell


def finished_cells(out: Path, plan: SweepPlan | None = None) -> list[dict]:
    """The cells finished in ``out`` (those of ``plan`` only, in its order, when given)."""
    cells = [read_cell(p) for p in sorted((Path(out) / CELLS_DIR).glob("*.json"))]
    if plan is not None:
        order = {c["id"]: i for i, c in enumerate(plan.cells)}
        cells = [c for c in cells if c["id"] in order]
        cells.sort(key=lambda c: order[c["id"]])
    return cells


COLUMNS = ["id", "variant", "mode", "calibration_frames", "bytes", "micro_bytes",
           "gzip_bytes", "arena_tflm", "params", "macs_per_hop", "host_us_per_hop"]


def row_sources(row: dict) -> list[str]:
    """The sources of a flat row, in the order its cell was scored on."""
    return [k[: -len("_sdr_float")] for k in row if k.endswith("_sdr_float")]


def flat_rows(cells: list[dict]) -> list[dict]:
    """One flat row per cell. ``drop_db`` is against the variant's own float model (the
    cost of quantizing); ``vs_base_db`` against the unpruned float model (pruning and
    quantization together), when the sweep has the base variant."""
    base = next((c for c in cells if c["variant"]["name"] == "base"), None)
    rows = []
    for c in cells:
        row = {k: c.get(k) for k in COLUMNS if k != "variant"}
        row["variant"] = c["variant"]["name"]
        for source in c["sources"]:
            s = c["sources"][source]
            row[f"{source}_sdr_float"] = s["sdr_reference"]
            row[f"{source}_sdr_quant"] = s["sdr"]
            row[f"{source}_drop_db"] = s["drop_db"]
            reference = base["sources"][source]["sdr_reference"] if base else None
            row[f"{source}_vs_base_db"] = (
                s["sdr"] - reference if s["sdr"] is not None and reference is not None
                else None)
        rows.append(row)
    return rows


def _fmt(value) -> str:
    if value is None:
        return "-"
    if isinstance(value, float):
        return f"{value:.3f}" if abs(value) < 100 else f"{value:,.0f}"
    if isinstance(value, int):
        return f"{value:,}"
    return str(value)


def _kib(n_bytes: int | None) -> str:
    """A size for the table in KiB (the rows and the JSON keep exact bytes)."""
    return "-" if n_bytes is None else f"{n_bytes / KIB:,.1f}"


def markdown_table(rows: list[dict]) -> str:
    header = ["cell", "KiB", "gzip KiB", "arena KiB (TFLM)", "MACs/hop", "us/hop"]
    sources = row_sources(rows[0]) if rows else list(SOURCES)
    for source in sources:
        header += [f"{source} float", f"{source} quant", f"{source} drop",
                   f"{source} vs base"]
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    for r in rows:
        cells = [r["id"], _kib(r["bytes"]), _kib(r.get("gzip_bytes")), _kib(r.get("arena_tflm")),
                 _fmt(r["macs_per_hop"]), _fmt(r["host_us_per_hop"])]
        for source in sources:
            cells += [_fmt(r[f"{source}_sdr_float"]), _fmt(r[f"{source}_sdr_quant"]),
                      _fmt(r[f"{source}_drop_db"]), _fmt(r[f"{source}_vs_base_db"])]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_tables(out: Path, plan: SweepPlan | None = None) -> list[Path]:
    """``results.csv``, ``results.json``, ``results.md`` and ``results.png`` from the cells;
    while cells of the plan are missing (a sweep stopped or still running) the JSON and the
    Markdown say how many of how many finished."""
    out = Path(out)
    cells = finished_cells(out, plan)
    rows = flat_rows(cells)
    planned = len(plan.cells) if plan is not None else len(cells)
    status = {"cells_planned": planned, "cells_finished": len(cells),
              "complete": len(cells) >= planned}
    partial = "" if status["complete"] else (
        f"\nPartial: {len(cells)} of {planned} cells finished; the same command again runs "
        "the others.\n")
    paths = [out / name for name in RESULT_FILES]
    fields = list(rows[0]) if rows else COLUMNS
    tmp = out / CSV_TMP
    with tmp.open("w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=fields)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, paths[0])
    write_json_atomic(paths[1], {**status, "cells": cells, "rows": rows})
    write_text_atomic(paths[2], markdown_table(rows) + partial)
    plot_sweep(rows, paths[3])
    return paths


def plot_sweep(rows: list[dict], path: Path) -> Path:
    """SDR against model bytes and host time, one marker per mode: the quantization cost
    (vs the variant's float) on the left, the total cost (vs the unpruned float) in the
    middle, and host time on the right."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 3, figsize=(15, 4))
    markers = {"int8": "o", "int16x8": "s", "dynamic": "^", "float16": "D", "float32": "x"}
    panels = (("drop_db", "bytes", "model size (KiB)", "SDR drop vs own float (dB)"),
              ("vs_base_db", "bytes", "model size (KiB)", "SDR vs unpruned float (dB)"),
              ("vs_base_db", "host_us_per_hop", "host time per hop (us, 1 thread)",
               "SDR vs unpruned float (dB)"))
    for ax, (key, x_key, x_label, y_label) in zip(axes, panels, strict=True):
        for mode in sorted({r["mode"] for r in rows}):
            sel = [r for r in rows if r["mode"] == mode]
            xs = [r[x_key] / (KIB if x_key == "bytes" else 1) for r in sel]
            ys = [_mean(r, key) for r in sel]
            ax.scatter(xs, ys, marker=markers.get(mode, "o"), label=mode)
            for r, x, y in zip(sel, xs, ys, strict=True):
                if np.isfinite(y):
                    ax.annotate(r["variant"], (x, y), fontsize=7)
        ax.axhline(0.0, color="k", linewidth=0.8)
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label + ", mean of sources")
        ax.legend()
    fig.suptitle("tinysep sweep")
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)
    return path


def _mean(row: dict, key: str) -> float:
    values = [row[f"{s}_{key}"] for s in row_sources(row) if row[f"{s}_{key}"] is not None]
    return float(sum(values) / len(values)) if values else float("nan")
