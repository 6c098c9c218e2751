"""`tinysep bench` sections for the shipped default model: host TFLite latency per hop
(float32 vs int8, measured side by side in one run) and the default export's size
against the microcontroller budgets.

Bundles are made by :func:`convert.export.export_bundle` (calibrated on synthetic songs
rendered in memory, so no corpus is needed) once per process, into a temporary folder
removed at exit, and run through :class:`convert.runtime.BundleRunner` on one thread.
"""

from __future__ import annotations

import os
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

from convert.sizes import KIB

TARGET_HOP_US = 80.0  # the speed goal: host int8 inference of one hop >= 100x real time
QUANTS = ("float32", "int8")
BLOCK_INVOKES = 8  # consecutive invokes of one bundle before the loop moves to the next
CALIBRATION_SONGS = 8  # short songs rendered in memory; segments cycle through them
CALIBRATION_SECONDS = 3.0

_cache: dict = {}



def model_description() -> str:
    """``name preset`` of the shipped default model, from its config."""
    from tinysep.models import read_config
    from tinysep.pretrained import default_model_path

    config = read_config(default_model_path())
    return f"{config['name']} {config['preset']} (shipped, trained)"


def exported_bundle(quant: str = "int8", frames_per_invoke: int = 1) -> tuple[Path, dict]:
    """(bundle folder, export summary) of the shipped default model in ``quant`` at
    ``frames_per_invoke``, exported once per process with every other argument left at
    its default (int8 K=1 is then exactly what ``tinysep export`` writes by default)."""
    from convert.export import export_bundle
    from convert.quantize import FULL_INTEGER
    from tinysep.data.synth import synthetic_clips
    from tinysep.pretrained import default_model_path

    key = (quant, frames_per_invoke)
    if key not in _cache:
        if "root" not in _cache:  # removed when the process exits
            _cache["root"] = tempfile.TemporaryDirectory(prefix="tinysep-bench-model-")
        calibration = None
        if quant in FULL_INTEGER:
            if "calibration" not in _cache:
                _cache["calibration"] = synthetic_clips(CALIBRATION_SONGS, CALIBRATION_SECONDS,
                                                         seed=7)
            calibration = _cache["calibration"]
        out = Path(_cache["root"].name) / f"{quant}-k{frames_per_invoke}"
        print(f"[bench] exporting {quant}, {frames_per_invoke} frame(s) per invoke ...",
              file=sys.stderr)
        summary = export_bundle(default_model_path(), out, quant=quant,
                                frames_per_invoke=frames_per_invoke, calibration=calibration,
                                progress=False)
        _cache[key] = (out, summary)
    return _cache[key]


class TimedInterpreter:
    """Stands in for a LiteRT interpreter and records how long each ``invoke()`` takes
    (nanoseconds), so :meth:`BundleRunner.invoke` runs unchanged and only the model's own
    work is timed, not quantization or state feedback."""

    def __init__(self, interpreter):
        self._interpreter = interpreter
        self.last_ns = 0

    def invoke(self) -> None:
        start = time.perf_counter_ns()
        self._interpreter.invoke()
        self.last_ns = time.perf_counter_ns() - start

    def __getattr__(self, name: str):
        return getattr(self._interpreter, name)


def _load() -> float:
    try:
        return os.getloadavg()[0]
    except OSError:
        return 0.0


def model_latency_section(quick: bool = False) -> dict:
    """Per-hop host inference time of the shipped model, float32 vs int8 at K = 1 and 8
    frames per invoke, one thread. All bundles stream the STFT features of one synthetic
    song through their states in the same loop (each round runs every bundle for
    ``BLOCK_INVOKES`` invokes, in a shuffled order) so that load from other processes hits
    all of them alike, while each still runs a few hops in a row as it would on a board."""
    from convert.runtime import HOP_SECONDS, BundleRunner
    from tinysep.data.synth import synthetic_clips
    from tinysep.dsp import magnitude, stft
    from tinysep.progress import Progress

    ks = (1,) if quick else (1, 8)
    warmup, rounds = (10, 40) if quick else (50, 500)
    seconds = 4.0 if quick else 10.0
    mixture = synthetic_clips(1, seconds, seed=29)[0].mixture

    entries = []
    for k in ks:
        for quant in QUANTS:
            folder, summary = exported_bundle(quant, k)
            runner = BundleRunner(folder, num_threads=1)
            timer = TimedInterpreter(runner.interpreter)
            runner.interpreter = timer
            # the song's STFT at the bundle's own framing, as its board computes it
            framing = runner.bundle.framing.name
            features = runner.features(magnitude(stft(mixture, framing=framing)))
            usable = len(features) // k * k
            entries.append({"quant": quant, "k": k, "runner": runner, "timer": timer,
                            "chunks": features[:usable].reshape(-1, k, features.shape[1]),
                            "next": 0, "invoke_ns": [], "step_ns": [],
                            "model_bytes": runner.bundle.model_bytes})

    order_rng = np.random.default_rng(0)
    bar = Progress(warmup + rounds, "model latency", unit="round")
    for round_index in range(warmup + rounds):
        bar.update(1)
        for i in order_rng.permutation(len(entries)):
            entry = entries[i]
            for _ in range(BLOCK_INVOKES):
                if entry["next"] == len(entry["chunks"]):  # end of the song: a new stream
                    entry["runner"].reset()
                    entry["next"] = 0
                start = time.perf_counter_ns()
                entry["runner"].invoke(entry["chunks"][entry["next"]])
                step = time.perf_counter_ns() - start
                entry["next"] += 1
                if round_index >= warmup:
                    entry["invoke_ns"].append(entry["timer"].last_ns)
                    entry["step_ns"].append(step)
    bar.close()

    rows = []
    for entry in entries:
        k = entry["k"]
        invoke_us = np.asarray(entry["invoke_ns"], np.float64) / 1e3
        median, p99 = float(np.median(invoke_us)), float(np.percentile(invoke_us, 99))
        rows.append({
            "quant": entry["quant"],
            "frames_per_invoke": k,
            "invoke_us_median": median,
            "invoke_us_p99": p99,
            "hop_us_median": median / k,
            "hop_us_p99": p99 / k,
            "realtime_factor": HOP_SECONDS * 1e6 / (median / k),
            "step_us_per_hop_median": float(np.median(entry["step_ns"])) / 1e3 / k,
            "model_bytes": entry["model_bytes"],
            "model_kib": entry["model_bytes"] / KIB,  # the table shows KiB, JSON keeps bytes
            "int8_speedup": None,
            "invokes": len(invoke_us),
        })
    speedup = {}
    for k in ks:
        by_quant = {r["quant"]: r for r in rows if r["frames_per_invoke"] == k}
        ratio = by_quant["float32"]["invoke_us_median"] / by_quant["int8"]["invoke_us_median"]
        by_quant["int8"]["int8_speedup"] = ratio
        speedup[str(k)] = ratio

    default = next(r for r in rows if r["quant"] == "int8" and r["frames_per_invoke"] == 1)
    met = default["hop_us_median"] < TARGET_HOP_US
    ratios = ", ".join(f"K={k}: {speedup[str(k)]:.2f}x" for k in ks)
    return {
        "title": (f"Host inference per hop: {model_description()}, streaming TFLite, LiteRT "
                  f"interpreter, one thread, {rounds * BLOCK_INVOKES} invokes per bundle "
                  f"interleaved in blocks of {BLOCK_INVOKES}, median and p99"),
        "columns": [
            ["quant", "quant"],
            ["frames_per_invoke", "K"],
            ["invoke_us_median", "invoke us p50"],
            ["invoke_us_p99", "invoke us p99"],
            ["hop_us_median", "us/hop p50"],
            ["hop_us_p99", "us/hop p99"],
            ["realtime_factor", "x real time"],
            ["step_us_per_hop_median", "Python step us/hop"],
            ["model_kib", "model KiB"],
            ["int8_speedup", "int8 speed-up"],
        ],
        "rows": rows,
        "int8_speedup_by_k": speedup,
        "target_hop_us": TARGET_HOP_US,
        "meets_target": met,
        "load_average": _load(),
        "note": (
            f"speed goal: host int8, one hop per invoke, under {TARGET_HOP_US:.0f} us "
            f"(>= 100x real time): {default['hop_us_median']:.1f} us = "
            f"{default['realtime_factor']:.0f}x, {'met' if met else 'NOT met'}. int8 speed-up "
            f"over float32 (ratio of medians, same run): {ratios}. Invoke = "
            "interpreter.invoke() alone (what a C runtime pays); Python step adds input "
            "quantization and state feedback. Load average "
            f"{_load():.1f} on {os.cpu_count()} cores."
        ),
    }


def _fits(value: int | None, budget: int | None) -> str | None:
    if value is None or budget is None:
        return None
    return "ok" if value <= budget else "OVER"


def model_size_section(quick: bool = False) -> dict:
    """The default export of the shipped model (int8, 1 frame per invoke, as ``tinysep
    export`` writes it) against the MCU budgets: model bytes, arena, MACs per hop."""
    from convert.export import BUDGET_ARENA_BYTES, BUDGET_MACS_PER_HOP, BUDGET_MODEL_BYTES
    from convert.sizes import kib
    from firmware_host.bundle.layout import MODEL_FILE

    def shown(value: int | None, in_bytes: bool) -> str | None:
        if value is None:
            return None
        return kib(value) if in_bytes else f"{value:,}"

    folder, summary = exported_bundle("int8", 1)
    tflm = summary.get("arena_bytes_tflm")
    quantities = [
        ("params", "parameters", summary["params"], None),
        ("macs_per_hop", "MACs per hop", summary["macs_per_hop"], BUDGET_MACS_PER_HOP),
        ("model_bytes", MODEL_FILE, summary["model_bytes"], BUDGET_MODEL_BYTES),
        ("c_array_bytes", "C array", summary["c_array_bytes"], BUDGET_MODEL_BYTES),
        ("arena_bytes_estimate", "arena estimate", summary["arena_bytes_estimate"],
         BUDGET_ARENA_BYTES),
        ("arena_bytes_tflm", "arena TFLite Micro", tflm, BUDGET_ARENA_BYTES),
    ]
    # value and budget stay exact (bytes for sizes) in the JSON; the table shows KiB
    rows = [{"key": key, "quantity": label, "value": value, "budget": budget,
             "value_shown": shown(value, key.endswith("_bytes") or "_bytes_" in key),
             "budget_shown": shown(budget, key.endswith("_bytes") or "_bytes_" in key),
             "fits": _fits(value, budget)} for key, label, value, budget in quantities]
    over = [row["quantity"] for row in rows if row["fits"] == "OVER"]
    return {
        "title": (f"Default export of {model_description()}: "
                  f"{summary['quantization']}, {summary['frames_per_invoke']} frame(s) per "
                  "invoke, against the MCU budgets"),
        "columns": [["quantity", "quantity"], ["value_shown", "value"],
                    ["budget_shown", "budget"], ["fits", "fits"]],
        "rows": rows,
        **{key: value for key, _, value, _ in quantities},
        "weight_bytes": summary["weight_bytes"],
        "arena_estimate": summary["arena_estimate"],
        "micro_unsupported_ops": summary["micro_unsupported_ops"],
        "within_budgets": not over,
        "note": (
            f"budgets: {kib(BUDGET_MODEL_BYTES)} model ({BUDGET_MODEL_BYTES:,} B), "
            f"{kib(BUDGET_ARENA_BYTES)} tensor arena ({BUDGET_ARENA_BYTES:,} B), 1 M MACs per "
            "hop; " + (f"OVER: {', '.join(over)}" if over else "all within budget")
            + ("" if tflm is not None else
               "; TFLite Micro arena not measured by this export ('-')")
            + f". Calibrated on {CALIBRATION_SONGS} synthetic songs of "
            f"{CALIBRATION_SECONDS:.0f} s."
        ),
    }
