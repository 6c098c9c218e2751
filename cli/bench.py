"""Measure the kit's speed: a list of named sections, each printed as a table and saved as JSON.

Sections so far: ``eval_speed`` (evaluation throughput of every baseline and of the metrics
alone, in clip-seconds per wall-second), ``train_data`` (how fast the training augmentation
makes batches: the shipped model's settings and each costly part alone), ``train_step``
(seconds per training step of the shipped graph, alone and fed by each way of making batches
beside it), ``hil_*`` (the board link over a pseudo-terminal), ``model_latency`` (host
TFLite time per hop of the shipped model, float32 vs int8), ``model_size`` (its default
export against the MCU budgets) and ``arm_emulated`` (invoke time on the emulated ARM boards
under qemu-user, labelled emulated: it measures the emulator, not a board; skipped with a
note without `make board-arm64`).
"""

from __future__ import annotations

import argparse
import contextlib
import sys
import time
from collections.abc import Callable
from pathlib import Path

from cli.common import path_argument
from convert import bench as model_bench
from hil import bench as hil_bench
from hil import emulated_arm

TRAIN_SECTIONS = ("train_data", "train_step")  # the sections --train-data feeds


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--json", type=Path, default=None, metavar="OUT.json",
                        help="write every section's results to this file")
    parser.add_argument("--quick", action="store_true",
                        help="fewer and shorter clips, fewer repeats (a smoke run)")
    parser.add_argument("--section", action="append", default=None, metavar="NAME",
                        help=f"run only this section (repeatable): {', '.join(_names())}")
    parser.add_argument("--train-data", type=path_argument, default=None, metavar="DIR",
                        help="the training sections (" + ", ".join(TRAIN_SECTIONS) + ") draw "
                             "their batches from this corpus's train split instead of a few "
                             "synthetic songs; the feeding cost grows with the corpus")


def _names() -> list[str]:
    return [name for name, _ in sections()]


def sections() -> list[tuple[str, Callable[..., dict]]]:
    """(name, function) of every section, in order. A section function takes ``quick: bool``
    and returns a dict with "title", "columns" ([key, header] pairs) and "rows" (dicts keyed
    by column key); any other keys go to the JSON as they are."""
    return [
        ("eval_speed", eval_speed_section),
        ("train_data", train_data_section),
        ("train_step", train_step_section),
        ("hil_throughput", hil_bench.throughput_section),
        ("hil_overhead", hil_bench.overhead_section),
        ("hil_baud", hil_bench.baud_section),
        ("model_latency", model_bench.model_latency_section),
        ("model_size", model_bench.model_size_section),
        ("arm_emulated", emulated_arm.bench_section),
    ]


def format_section(result: dict) -> str:
    """A section's rows as an aligned text table (floats with two decimals, None as '-')."""
    columns = result["columns"]

    def cell(value) -> str:
        if value is None:
            return "-"
        if isinstance(value, float):
            return f"{value:.2f}"
        return str(value)

    body = [[cell(row.get(key)) for key, _ in columns] for row in result["rows"]]
    widths = [max([len(header)] + [len(r[i]) for r in body]) for i, (_, header) in
              enumerate(columns)]
    # text columns (names) align left, numbers right
    left = [all(isinstance(row.get(key), str) for row in result["rows"]) for key, _ in columns]

    def join(cells: list[str]) -> str:
        return "  ".join(f"{c:<{w}}" if lft else f"{c:>{w}}"
                         for c, w, lft in zip(cells, widths, left, strict=True))

    line = join([header for _, header in columns])
    out = [result["title"], line, "-" * len(line)] + [join(r) for r in body]
    if result.get("note"):
        out.append(result["note"])
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_file
    from tinysep.jsonfile import write_json_atomic

    if args.json is not None:
        check_output_file(args.json, "--json", command="bench")
    wanted = args.section or _names()
    unknown = [name for name in wanted if name not in _names()]
    if unknown:
        raise CliError(f"unknown bench section {', '.join(unknown)}; "
                       f"expected one of {', '.join(_names())}")
    train_clips = None
    if args.train_data is not None and not set(wanted) & set(TRAIN_SECTIONS):
        raise CliError(f"--train-data feeds only the sections {', '.join(TRAIN_SECTIONS)}, "
                       f"and none of them is asked for")
    if args.train_data is not None:
        from tinysep.training.data import load_training_data

        train_clips = (args.train_data, load_training_data(args.train_data).train)
    results: dict[str, dict] = {}
    for name, section in sections():
        if name not in wanted:
            continue
        print(f"[bench] {name} ...", file=sys.stderr)
        start = time.perf_counter()
        extra = {"corpus": train_clips} if name in TRAIN_SECTIONS else {}
        result = section(quick=args.quick, **extra)
        result["section_seconds"] = time.perf_counter() - start
        results[name] = result
        print(format_section(result))
        print()
        if args.json is not None:  # written after every section: a later crash keeps these
            report = {"command": "bench", "quick": args.quick, "sections": results}
            write_json_atomic(args.json, report)
    if args.json is not None:
        print(f"wrote {args.json}")
    return 0


# --- sections -------------------------------------------------------------------------


def eval_speed_section(quick: bool = False) -> dict:
    """Serial evaluation throughput of each baseline and of the metrics, on synthetic songs."""
    from tinysep.baselines import METHODS
    from tinysep.evaluate import available_cores, measure_speed

    # MIR-1K and the synthetic corpus have 4-13 s clips; REPET-SIM's cost grows with length^2
    count, seconds, repeats = (1, 3.0, 3) if quick else (4, 8.0, 3)
    from tinysep.data.synth import synthetic_clips

    clips = synthetic_clips(count, seconds, seed=1234)
    result = measure_speed(clips, list(METHODS), repeats=repeats)
    result.update(
        title=(f"Evaluation speed: {count} synthetic songs x {seconds:.0f} s, one process, "
               f"median of {repeats} repeats (clip-seconds per wall-second)"),
        columns=[["method", "method"], ["separate_x", "separate"], ["score_x", "metrics"],
                 ["total_x", "separate+metrics"], ["total_seconds_median", "wall s"]],
        note=(f"`tinysep eval` runs one such process per core ({available_cores()} here), "
              "scoring the mixture once per clip on top."),
    )
    return result


def _train_clips(quick: bool, corpus) -> tuple[list, str]:
    """The clips a training section draws from and how to name them: ``corpus`` (folder,
    its train clips) when given, else a few synthetic songs."""
    from tinysep.data.synth import synthetic_clips

    if corpus is not None:
        folder, clips = corpus
        return list(clips), f"the {len(clips)} train clips of {folder}"
    count, seconds = (3, 6.0) if quick else (8, 12.0)
    return synthetic_clips(count, seconds, seed=1234), f"{count} synthetic songs"


def train_data_section(quick: bool = False, corpus=None) -> dict:
    """Batches per second of the training augmentation (numpy, one thread): it runs beside
    the model's steps on the same cores, so its cost is training time lost. ``corpus``:
    (folder, clips) to draw from instead of synthetic songs."""
    import numpy as np

    from tinysep.pretrained import training_settings
    from tinysep.training.data import chunk_samples, time_batches

    stored = training_settings()
    shipped = stored["augment"]
    batch_size, chunk_seconds = stored["batch_size"], stored["chunk_seconds"]
    batches = 4 if quick else 40
    clips, drawn_from = _train_clips(quick, corpus)
    settings = [
        ("basic (offsets, gains, signs, remix)", {}),
        ("speed on every clip", {"speed_probability": 1.0,
                                 "speed_range": shipped["speed_range"]}),
        ("EQ on every source", {"eq_probability": 1.0}),
        ("the shipped model's", shipped),
    ]
    rows = []
    for name, augment in settings:
        times = np.asarray(time_batches(clips, augment, batch_size,
                                        chunk_samples(chunk_seconds), batches))
        median = float(np.median(times))
        rows.append({"augmentation": name, "batch_ms_median": 1000.0 * median,
                     "batch_ms_p90": 1000.0 * float(np.percentile(times, 90)),
                     "audio_x": batch_size * chunk_seconds / median})
    return {
        "title": (f"Training batches: {batch_size} chunks of {chunk_seconds:g} s from "
                  f"{drawn_from}, {batches} batches per setting, one thread"),
        "columns": [["augmentation", "augmentation"], ["batch_ms_median", "ms per batch"],
                    ["batch_ms_p90", "p90 ms"], ["audio_x", "audio s per wall s"]],
        "rows": rows, "batch_size": batch_size, "chunk_seconds": chunk_seconds,
    }


def train_step_section(quick: bool = False, corpus=None) -> dict:
    """Seconds per training step of the shipped model's graph (its batch size, chunk length,
    loss and augmentation; random weights): the step on one batch held in memory, then fed
    by the worker thread training uses, then by a ``tf.data`` generator dataset.
    ``corpus``: (folder, clips) to draw from instead of synthetic songs."""
    import numpy as np
    import tensorflow as tf
    import tf_keras as keras

    from tinysep.models import model_from_config
    from tinysep.pretrained import training_settings
    from tinysep.train import train_step_function
    from tinysep.training.config import TrainConfig
    from tinysep.training.data import batches_from, chunk_samples
    from tinysep.training.prefetch import PrefetchedBatches

    config = TrainConfig.from_json(training_settings(), where="the shipped training settings")
    config.teacher = ""
    samples = chunk_samples(config.chunk_seconds)
    steps = 4 if quick else 30
    clips, drawn_from = _train_clips(quick, corpus)
    model = model_from_config(config.model_config())
    optimizer = keras.optimizers.Adam(learning_rate=1e-5)
    optimizer.build(model.trainable_variables)
    step = train_step_function(model, optimizer, config)

    def made():
        return batches_from(clips, 0, 1234, config.batch_size, samples, config.augment)

    held = next(made())
    step(*held)  # traces the graph: not timed
    signature = (tf.TensorSpec((config.batch_size, samples), tf.float32),
                 tf.TensorSpec((config.batch_size, held[1].shape[1], samples), tf.float32),
                 tf.TensorSpec((config.batch_size,), tf.float32))
    feeds = [
        ("one batch held in memory", lambda: iter(lambda: held, None)),
        ("a worker thread (training)", lambda: PrefetchedBatches(made())),
        ("a tf.data generator dataset",
         lambda: iter(tf.data.Dataset.from_generator(made, output_signature=signature)
                      .prefetch(2))),
    ]
    rows = []
    for name, feed in feeds:
        with contextlib.ExitStack() as stack:
            batches = feed()
            if hasattr(batches, "close"):  # a worker thread stops with the feeding
                stack.callback(batches.close)
            float(step(*next(batches))[0])  # the feed's first batch, made before timing
            seconds = []
            for _ in range(steps):
                start = time.perf_counter()
                float(step(*next(batches))[0])
                seconds.append(time.perf_counter() - start)
        rows.append({"feeding": name, "step_ms_median": 1000.0 * float(np.median(seconds)),
                     "step_ms_p90": 1000.0 * float(np.percentile(seconds, 90))})
    alone = rows[0]["step_ms_median"]
    for row in rows:
        row["vs_alone"] = row["step_ms_median"] / alone
    return {
        "title": (f"Training steps of the shipped graph: {config.batch_size} chunks of "
                  f"{config.chunk_seconds:g} s from {drawn_from}, {steps} steps per feeding"),
        "columns": [["feeding", "batches from"], ["step_ms_median", "ms per step"],
                    ["step_ms_p90", "p90 ms"], ["vs_alone", "x the step alone"]],
        "rows": rows, "batch_size": config.batch_size, "chunk_seconds": config.chunk_seconds,
    }
