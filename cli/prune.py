"""Prune a trained separator: magnitude pruning (tfmot) and/or structured channel pruning.

``--sparsity S --steps N`` zeroes the smallest weights of every conv / dense layer along a
polynomial schedule while fine-tuning N batches, strips the wrappers and reports the
sparsity per layer and the compressed (gzip) size. ``--narrow residual=24 --narrow
hidden=48`` rebuilds a narrower model that keeps the most important channels (MACs per
hop drop, not only the zipped size), then fine-tunes ``--steps`` batches. Both can be
combined (narrow first). Fine-tuning uses the loss the model was trained with (its
run.json from ``tinysep train``; L1 otherwise). The result is a model folder (plus
prune_report.json, and training.json: the command, the source's record and the corpora it has
heard, the source's and the fine-tuning data's) that ``tinysep export``, ``tinysep eval
--method model:OUT`` and ``tinysep train --init-from`` read.
"""

from __future__ import annotations

import argparse
import shlex
from pathlib import Path

from cli.common import (
    finite_float,
    path_argument,
    positive_float,
    seed_argument,
    whole_number,
)
from tinysep.training.config import MAX_BATCH_SIZE


def min_chunk_frames() -> int:
    """The fewest STFT frames a fine-tuning chunk holds: one frame's samples."""
    from tinysep.dsp import HOP_SAMPLES, N_FFT

    return N_FFT // HOP_SAMPLES


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=path_argument, metavar="MODEL", help="saved model folder")
    parser.add_argument("--out", required=True, type=path_argument,
                        help="pruned model folder to write")
    parser.add_argument("--data", required=True, type=path_argument,
                        help="dataset folder for fine-tuning (its train split)")
    parser.add_argument("--sparsity", type=finite_float, default=None, metavar="S",
                        help="magnitude pruning: final fraction of zero weights, in [0, 1)")
    parser.add_argument("--narrow", action="append", default=[], metavar="KEY=VALUE",
                        help="structured pruning: a narrower width option (repeatable; VALUE "
                             "is JSON), e.g. --narrow residual=24 --narrow hidden=48")
    parser.add_argument("--steps", type=whole_number(0), default=500, metavar="N",
                        help="fine-tuning batches (default 500)")
    parser.add_argument("--batch-size", type=whole_number(1, MAX_BATCH_SIZE), default=4,
                        help="chunks per fine-tuning batch (default 4)")
    parser.add_argument("--chunk-frames", type=whole_number(min_chunk_frames()), default=64,
                        help="STFT frames per training chunk (default 64)")
    parser.add_argument("--learning-rate", type=positive_float, default=3e-4,
                        help="fine-tuning learning rate (default 3e-4)")
    parser.add_argument("--min-weights", type=whole_number(0), default=1024,
                        help="leave layers with fewer weights dense (default 1024)")
    parser.add_argument("--max-clips", type=whole_number(1), default=64,
                        help="training clips loaded for fine-tuning (default 64)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="seed of the fine-tuning batches and calibration (default 0)")
    parser.add_argument("--force", action="store_true",
                        help="replace --out when it holds only what an earlier prune wrote")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def format_report(report: dict) -> str:
    from convert.sizes import size_text

    lines = []
    narrow = report.get("structured")
    if narrow:
        lines.append(
            f"structured: {narrow['widths']} -> params {narrow['params_before']:,} -> "
            f"{narrow['params_after']:,}, MACs/hop {narrow['macs_per_hop_before']:,} -> "
            f"{narrow['macs_per_hop_after']:,}"
        )
    magnitude = report.get("magnitude")
    if magnitude:
        lines.append(f"magnitude: {100 * magnitude['sparsity']:.1f}% zeros over "
                     f"{magnitude['weights']:,} weights (target "
                     f"{100 * magnitude['target_sparsity']:.0f}%)")
        width = max(len(r["layer"]) for r in magnitude["layers"]) if magnitude["layers"] else 5
        lines.append(f"  {'layer'.ljust(width)}  {'weights':>8}  sparsity")
        for row in magnitude["layers"]:
            lines.append(f"  {row['layer'].ljust(width)}  {row['weights']:>8,}  "
                         f"{100 * row['sparsity']:6.1f}%")
    for label, sizes in (("before", report["sizes_before"]), ("after", report["sizes_after"])):
        text = ", ".join(f"{k.replace('_bytes', '')} {size_text(v)}" for k, v in sizes.items())
        lines.append(f"size {label}: {text}")
    return "\n".join(lines)


def parse_widths(items: list[str], option: str) -> dict:
    """``["key=value", ...]`` of ``option`` as a dict (values parsed as JSON when they parse);
    an item without ``=`` or a key is refused naming ``option``."""
    from cli.common import CliError
    from cli.models import parse_options

    for item in items:
        key, sep, _ = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{option} expects KEY=VALUE, got {item!r}")
    return parse_options(items)


def require_clips(data: Path, config: dict, split: str) -> None:
    """Refuse, before any work, a --data folder without clips of ``split`` for the model of
    ``config`` (an unreadable one is named by the loader)."""
    from cli.common import CliError
    from tinysep.data.loaders import find_clips
    from tinysep.models.registry import model_sources

    if not find_clips(data, split=split, sources=model_sources(config)):
        raise CliError(f"--data {data}: the {split!r} split holds no clips")


def _check_out(args: argparse.Namespace) -> None:
    """Refuse, before any work, an --out that is MODEL (or inside or around it), a file, a
    folder holding anything prune does not write, or an earlier result without --force."""
    from cli.common import CliError
    from convert.prune import PRUNED_FILES
    from tinysep.folder_writes import check_apart_from, check_own_output

    check_apart_from(args.out, {"--data folder": args.data})
    if check_own_output(args.out, args.model, PRUNED_FILES, "prune",
                        what="model folder") and not args.force:
        raise CliError(f"--out {args.out} already exists; pass --force to overwrite it")


def _check_options(args: argparse.Namespace) -> dict:
    """Check what the options ask for before any work; the --narrow widths, checked
    against MODEL's config ({} without --narrow)."""
    from cli.common import CliError
    from convert.prune import check_widths
    from tinysep.models import read_config

    if args.sparsity is None and not args.narrow:
        raise CliError("give --sparsity S and/or --narrow KEY=VALUE")
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        raise CliError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.sparsity is not None and args.steps < 1:
        raise CliError(f"--steps must be at least 1 for magnitude pruning, got {args.steps}")
    widths = parse_widths(args.narrow, "--narrow")
    _check_out(args)
    config = read_config(args.model)  # not a model folder: said before any work
    if widths:
        try:
            check_widths(config, widths)
        except ValueError as exc:
            raise CliError(f"--narrow: {exc}") from None
    require_clips(args.data, config, "train")
    return widths


def run(args: argparse.Namespace) -> int:
    widths = _check_options(args)

    from calibration.representative import build_representative_set, load_calibration_clips
    from convert.finetune import fine_tune, fine_tuned_record, training_loss_of
    from convert.prune import (
        compressed_sizes,
        magnitude_prune,
        narrow_model,
        save_pruned,
    )
    from tinysep.models import load_model, make_streaming_model

    original = model = load_model(args.model)
    loss, sdr_weight = training_loss_of(args.model)
    structured = None
    if widths:  # before the clips load: a width the model's channels cannot take is said now
        model, structured = narrow_model(model, **widths)
    clips = load_calibration_clips(args.data, "train", max_clips=args.max_clips, seed=args.seed,
                                   progress=not args.no_progress)
    rep = build_representative_set(make_streaming_model(original, 1), clips, 256,
                                   progress=False)
    report: dict = {"source": str(args.model), "sizes_before": compressed_sizes(original, rep)}
    if structured is not None:
        report["structured"] = structured
    if widths and args.sparsity is None and args.steps:
        losses = fine_tune(model, clips, args.steps, loss=loss, sdr_weight=sdr_weight,
                           batch_size=args.batch_size,
                           chunk_frames=args.chunk_frames, learning_rate=args.learning_rate,
                           seed=args.seed, progress=not args.no_progress)
        report["structured"]["loss_last"] = losses[-1]
    if args.sparsity is not None:
        model, report["magnitude"] = magnitude_prune(
            model, clips, args.sparsity, args.steps, min_weights=args.min_weights,
            loss=loss, sdr_weight=sdr_weight,
            batch_size=args.batch_size, chunk_frames=args.chunk_frames,
            learning_rate=args.learning_rate, seed=args.seed, progress=not args.no_progress,
        )
    rep = build_representative_set(make_streaming_model(model, 1), clips, 256, progress=False)
    report["sizes_after"] = compressed_sizes(model, rep)
    record = fine_tuned_record(args.model, args.data, _command(args), "pruned_from")
    save_pruned(model, args.out, report, record)
    print(format_report(report))
    print(f"wrote {args.out} (config.json, weights, prune_report.json, training.json)")
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command that prunes this model again, from its parsed arguments."""
    words = ["tinysep", "prune", str(args.model), "--out", str(args.out), "--data",
             str(args.data)]
    if args.sparsity is not None:
        words += ["--sparsity", str(args.sparsity), "--min-weights", str(args.min_weights)]
    for item in args.narrow:
        words += ["--narrow", item]
    words += ["--steps", str(args.steps), "--batch-size", str(args.batch_size),
              "--chunk-frames", str(args.chunk_frames), "--learning-rate",
              str(args.learning_rate), "--max-clips", str(args.max_clips), "--seed",
              str(args.seed)]
    return shlex.join(words)
