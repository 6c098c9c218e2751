"""Paper 2's ablation (Table 4.1) at a small scale: train each ``unet-se-sru`` variant with
the same recipe and step count, then score all of them on one test split.

Variants: the full model (SE, SRU, GroupNorm), SE removed, SRU replaced by LSTM or GRU,
GroupNorm replaced by BatchNorm or removed. Every variant gets the same seed, data,
steps and learning rate, so the table differs only by the switch; training time per
epoch is measured on this machine (shared cores make it noisy). Runs that already
exist in the output folder are resumed (or reused when finished), so an interrupted
ablation picks up where it stopped.
"""

from __future__ import annotations

import json
import time
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from tinysep.data.clip import SOURCES
from tinysep.jsonfile import write_json_atomic
from tinysep.train import TrainConfig

MODEL = "unet-se-sru"


@dataclass(frozen=True)
class Variant:
    """One column of the ablation table."""

    name: str
    change: str  # what differs from the full model, in paper 2's words
    options: dict


VARIANTS = (
    Variant("unet-se-sru", "-", {}),
    Variant("no-se", "remove SE", {"se": False}),
    Variant("lstm", "replace SRU with LSTM", {"recurrent": "lstm"}),
    Variant("gru", "replace SRU with GRU", {"recurrent": "gru"}),
    Variant("batchnorm", "replace GN with BN", {"norm": "batch"}),
    Variant("no-norm", "remove GN", {"norm": "none"}),
)
VARIANT_NAMES = tuple(v.name for v in VARIANTS)
REPORT_JSON = "ablation.json"
REPORT_MD = "ablation.md"
EVAL_JSON = "ablation-eval.json"
# what an ablation writes into its folder (a folder holding only these is an earlier one's)
OWNED_ENTRIES = frozenset({*VARIANT_NAMES, REPORT_JSON, REPORT_MD, EVAL_JSON})
# the options a variant sets: a base option of the same key would relabel the table's columns
SWITCHED_OPTIONS = frozenset(key for v in VARIANTS for key in v.options)


def select_variants(names: list[str] | None) -> list[Variant]:
    """The variants called ``names`` (all of them for None), in table order."""
    if not names:
        return list(VARIANTS)
    unknown = sorted(set(names) - set(VARIANT_NAMES))
    if unknown:
        raise ValueError(f"unknown ablation variant(s) {unknown}; choose from {VARIANT_NAMES}")
    return [v for v in VARIANTS if v.name in names]


def _test_scores(summary: dict) -> dict:
    """Mean SDR / SIR / SAR per source and over both sources, from an eval summary."""
    out: dict = {}
    for source in SOURCES:
        block = summary["sources"][source]
        out[source] = {key: block[key]["mean"] for key in ("sdr", "sir", "sar")}
    out["mean"] = {
        key: (float(np.mean([out[s][key] for s in SOURCES]))
              if all(out[s][key] is not None for s in SOURCES) else None)
        for key in ("sdr", "sir", "sar")
    }
    return out


def run_ablation(base: TrainConfig, out: str | Path, variants: list[Variant], *,
                 split: str = "test", max_clips: int | None = None, jobs: int | None = None,
                 progress: bool = True, in_process: bool = False) -> dict:
    """Train every variant into ``out/NAME`` (``base`` + the variant's options), evaluate
    all of them on ``split`` of ``base.data`` and write ``ablation.json`` + ``ablation.md``.
    ``jobs`` / ``in_process`` are those of :func:`tinysep.evaluate.evaluate`.
    """
    from tinysep.data.loaders import find_clips
    from tinysep.evaluate import evaluate
    from tinysep.models.registry import make_config
    from tinysep.train import train
    from tinysep.training.run_folder import has_run

    if base.model != MODEL:
        raise ValueError(f"the ablation switches belong to {MODEL!r}, not {base.model!r}")
    if max_clips is not None and max_clips < 1:
        raise ValueError(f"max_clips must be at least 1, got {max_clips}")
    if jobs is not None and jobs < 1:
        raise ValueError(f"jobs must be at least 1, got {jobs}")
    for variant in variants:  # every graph is valid before the first one trains
        make_config(base.model, base.preset, **{**base.options, **variant.options})
    if not find_clips(base.data, base.dataset, split):  # the clips scored at the end
        raise ValueError(f"{base.data} has no clips in its {split!r} split to score the "
                         "variants on")
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    rows = []
    for variant in variants:
        config = base.replace(options={**base.options, **variant.options})
        folder = out / variant.name
        resume = has_run(folder)
        print(f"ablation: {variant.name} ({variant.change}) -> {folder}", flush=True)
        result = train(config, folder, resume=resume, progress=progress)
        history = result.history
        epoch_seconds = [h["train_seconds"] for h in history
                         if h["steps"] == config.steps_per_epoch]
        steps = sum(h["steps"] for h in history)
        run = json.loads((folder / "run.json").read_text())
        rows.append({
            "variant": variant.name,
            "change": variant.change,
            "options": config.options,
            "run": str(folder),
            "parameters": run["model"]["parameters"],
            "macs_per_hop": run["model"]["macs_per_hop"],
            "status": result.status,
            "epochs": result.epochs,
            "steps": result.steps,
            "train_seconds": result.train_seconds,
            "seconds_per_epoch": float(np.median(epoch_seconds)) if epoch_seconds else None,
            "steps_per_second": steps / sum(h["train_seconds"] for h in history),
            "best_epoch": result.best_epoch,
            "valid_sdr": result.best_sdr,
        })

    sources = find_clips(base.data, base.dataset, split)
    if max_clips is not None:
        sources = sources[:max_clips]
    methods = [f"model:{row['run']}" for row in rows]
    start = time.perf_counter()
    meta = {"command": "ablate", "data": base.data, "split": split, "max_clips": max_clips}
    report = evaluate(sources, methods, jobs=jobs, json_path=out / "ablation-eval.json",
                      progress=progress, in_process=in_process, meta=meta)
    for row, method in zip(rows, methods, strict=True):
        row["test"] = _test_scores(report["summary"][method])
    result = {
        "model": MODEL,
        "base_config": base.to_json(),
        "eval": {"data": base.data, "split": split, "clips": report["clips_done"],
                 "failed": report["clips_failed"], "seconds": time.perf_counter() - start,
                 "report": str(out / "ablation-eval.json")},
        "variants": rows,
    }
    write_json_atomic(out / REPORT_JSON, result, indent=2)
    (out / REPORT_MD).write_text(format_markdown(result))
    return result


def format_markdown(result: dict) -> str:
    """Paper 2's Table 4.1 layout, one column per variant, as measured."""
    rows = result["variants"]
    base = result["base_config"]

    def num(value, digits=2):
        return "n/a" if value is None else f"{value:.{digits}f}"

    header = "| | " + " | ".join(r["variant"] for r in rows) + " |"
    lines = [
        f"# {MODEL} ablation ({result['eval']['split']} split of {result['eval']['data']}, "
        f"{result['eval']['clips']} clips)",
        "",
        f"Each variant: {base['epochs']} epochs x {base['steps_per_epoch']} steps, batch "
        f"{base['batch_size']} x {base['chunk_seconds']} s, Adam {base['learning_rate']:g} "
        f"({base['lr_schedule']}), loss {base['loss']}, seed {base['seed']}, base options "
        f"{json.dumps(base['options'])}"
        + (f", at most {base['max_minutes']:g} min" if base.get("max_minutes") else "") + ".",
        "",
        header,
        "|" + "---|" * (len(rows) + 1),
        "| difference | " + " | ".join(r["change"] for r in rows) + " |",
        "| parameters | " + " | ".join(f"{r['parameters']:,}" for r in rows) + " |",
        "| MACs / hop | " + " | ".join(f"{r['macs_per_hop']:,}" for r in rows) + " |",
        "| steps trained | " + " | ".join(str(r["steps"]) for r in rows) + " |",
        "| training time / epoch (s) | " + " | ".join(num(r["seconds_per_epoch"], 1)
                                                     for r in rows) + " |",
        "| steps / s | " + " | ".join(num(r["steps_per_second"]) for r in rows) + " |",
    ]
    for key, label in (("sdr", "SDR"), ("sar", "SAR"), ("sir", "SIR")):
        lines.append(f"| {label} mean (dB) | "
                     + " | ".join(num(r["test"]["mean"][key]) for r in rows) + " |")
    for source in SOURCES:
        lines.append(f"| SDR {source} (dB) | "
                     + " | ".join(num(r["test"][source]["sdr"]) for r in rows) + " |")
    lines += ["", "Test scores: BSS-eval v3 whole-clip means; `mean` averages vocals and "
              "accompaniment. Training time is wall-clock on shared CPU cores.", ""]
    return "\n".join(lines)
