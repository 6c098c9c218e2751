"""Prune a trained separator: magnitude pruning (tfmot) and/or structured channel pruning.

``--sparsity S --steps N`` zeroes the smallest weights of every conv / dense layer along a
polynomial schedule while fine-tuning N batches, strips the wrappers and reports the
sparsity per layer and the compressed (gzip) size. ``--narrow residual=24 --narrow
hidden=48`` rebuilds a narrower model that keeps the most important channels (MACs per
hop drop, not only the zipped size), then fine-tunes ``--steps`` batches. Both can be
combined (narrow first). Fine-tuning uses the loss the model was trained with (its
run.json from ``tinysep train``; L1 otherwise). The result is a model folder (plus
prune_report.json) that ``tinysep export`` and ``tinysep eval --method model:OUT`` read.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinysep.commands.common import seed_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("model", type=Path, metavar="MODEL", help="saved model folder")
    parser.add_argument("--out", required=True, type=Path, help="pruned model folder to write")
    parser.add_argument("--data", required=True, type=Path,
                        help="dataset folder for fine-tuning (its train split)")
    parser.add_argument("--sparsity", type=float, default=None, metavar="S",
                        help="magnitude pruning: final fraction of zero weights, in [0, 1)")
    parser.add_argument("--narrow", action="append", default=[], metavar="KEY=VALUE",
                        help="structured pruning: a narrower width option (repeatable; VALUE "
                             "is JSON), e.g. --narrow residual=24 --narrow hidden=48")
    parser.add_argument("--steps", type=int, default=500, metavar="N",
                        help="fine-tuning batches (default 500)")
    parser.add_argument("--batch-size", type=int, default=4,
                        help="chunks per fine-tuning batch (default 4)")
    parser.add_argument("--chunk-frames", type=int, default=64,
                        help="STFT frames per training chunk (default 64)")
    parser.add_argument("--learning-rate", type=float, default=3e-4,
                        help="fine-tuning learning rate (default 3e-4)")
    parser.add_argument("--min-weights", type=int, default=1024,
                        help="leave layers with fewer weights dense (default 1024)")
    parser.add_argument("--max-clips", type=int, default=64,
                        help="training clips loaded for fine-tuning (default 64)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="seed of the fine-tuning batches and calibration (default 0)")
    parser.add_argument("--force", action="store_true", help="overwrite --out")
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


def run(args: argparse.Namespace) -> int:
    from tinysep.commands.common import CliError

    if args.sparsity is None and not args.narrow:
        raise CliError("give --sparsity S and/or --narrow KEY=VALUE")
    if args.sparsity is not None and not 0.0 <= args.sparsity < 1.0:
        raise CliError(f"--sparsity must be in [0, 1), got {args.sparsity}")
    if args.steps < 0 or (args.sparsity is not None and args.steps < 1):
        raise CliError(f"--steps must be at least 1 for magnitude pruning, got {args.steps}")
    if args.out.exists() and any(args.out.iterdir()):
        if not args.force:
            raise CliError(f"{args.out} already exists; pass --force to overwrite it")
        if not (args.out / "config.json").is_file():
            raise CliError(f"{args.out} is not a model folder and not empty; refusing to "
                           "replace it")

    from calibration.representative import build_representative_set, load_calibration_clips
    from convert.finetune import fine_tune, training_loss_of
    from convert.prune import compressed_sizes, magnitude_prune, narrow_model, save_pruned
    from tinysep.commands.models import parse_options
    from tinysep.models import load_model, make_streaming_model

    model = load_model(args.model)
    loss, sdr_weight = training_loss_of(args.model)
    clips = load_calibration_clips(args.data, "train", max_clips=args.max_clips, seed=args.seed,
                                   progress=not args.no_progress)
    rep = build_representative_set(make_streaming_model(model, 1), clips, 256,
                                   progress=False)
    report: dict = {"source": str(args.model), "sizes_before": compressed_sizes(model, rep)}
    if args.narrow:
        model, report["structured"] = narrow_model(model, **parse_options(args.narrow))
        if args.sparsity is None and args.steps:
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
    save_pruned(model, args.out, report)
    print(format_report(report))
    print(f"wrote {args.out} (config.json, weights, prune_report.json)")
    return 0
