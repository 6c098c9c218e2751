"""Sweep a grid: sparsity x quantization mode x calibration size (and channel widths).

Each cell reports model bytes, MACs per hop, host time per hop (one thread), SDR of the
float and of the converted model on held-out clips and their difference, per source.
Writes OUT/results.csv, .json, .md and .png (rebuilt after every cell). Killed, it
resumes from OUT without redoing finished cells or pruned models.
"""

from __future__ import annotations

import argparse

from cli.common import path_argument, seed_argument, whole_number
from cli.prune import parse_widths, require_clips


def _items(text: str) -> list[str]:
    return [item.strip() for item in text.split(",") if item.strip()]


def _sparsities(text: str) -> list[float]:
    """--sparsity: comma-separated fractions of zero weights, each in [0, 1)."""
    from cli.common import CliError, finite_float
    from convert.prune import check_sparsity

    try:
        return [check_sparsity(finite_float(item)) for item in _items(text)]
    except (argparse.ArgumentTypeError, ValueError):
        raise CliError(f"--sparsity expects comma-separated numbers in [0, 1), got "
                       f"{text!r}") from None


def _calibration_sizes(text: str) -> list[int]:
    """--calibration-frames: comma-separated whole numbers >= 1."""
    from cli.common import CliError

    parse = whole_number(1)
    try:
        return [parse(item) for item in _items(text)]
    except argparse.ArgumentTypeError:
        raise CliError(f"--calibration-frames expects comma-separated whole numbers >= 1, got "
                       f"{text!r}") from None


def _modes(text: str) -> list[str]:
    """--quant: comma-separated quantization modes, at least one."""
    from cli.common import CliError
    from convert.quantize import QUANT_MODES

    modes = _items(text)
    unknown = [m for m in modes if m not in QUANT_MODES]
    if unknown or not modes:
        raise CliError(f"--quant expects comma-separated modes from {', '.join(QUANT_MODES)}, "
                       f"got {text!r}")
    return modes


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calibration.representative import DEFAULT_FRAMES
    from convert.export import MAX_FRAMES_PER_INVOKE

    parser.add_argument("model", type=path_argument, metavar="MODEL", help="saved model folder")
    parser.add_argument("--data", required=True, type=path_argument, help="dataset folder")
    parser.add_argument("--out", required=True, type=path_argument,
                        help="sweep folder (new, empty, or an earlier sweep's, which resumes)")
    parser.add_argument("--sparsity", default="0", metavar="S,S,...",
                        help="magnitude sparsities (0 = the model as is; default 0)")
    parser.add_argument("--quant", default="int8,int16x8", metavar="MODE,MODE,...",
                        help="quantization modes (default int8,int16x8)")
    parser.add_argument("--calibration-frames", default=str(DEFAULT_FRAMES), metavar="N,N,...",
                        help=f"calibration sizes for int8/int16x8 (default {DEFAULT_FRAMES})")
    parser.add_argument("--widths", action="append", default=[], metavar="KEY=V[,KEY=V]",
                        help="a structured-pruning variant (repeatable), e.g. "
                             "residual=24,hidden=48")
    parser.add_argument("--frames-per-invoke", type=whole_number(1, MAX_FRAMES_PER_INVOKE),
                        default=1, metavar="K",
                        help="STFT frames (8 ms hops) per model invoke, at most "
                             f"{MAX_FRAMES_PER_INVOKE} (default 1)")
    parser.add_argument("--prune-steps", type=whole_number(1), default=300,
                        help="fine-tuning batches per pruned variant (default 300)")
    parser.add_argument("--eval-clips", type=whole_number(1), default=8,
                        help="test clips scored per cell (default 8)")
    parser.add_argument("--max-clips", type=whole_number(1), default=64,
                        help="training clips loaded for calibration and fine-tuning (default 64)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="seed of calibration and fine-tuning (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def _plan(args: argparse.Namespace):
    """The sweep's plan from the options, each checked (the widths against MODEL's config)
    before any work; then --out, which must be new, empty or this sweep's."""
    from cli.common import CliError
    from convert.sweep import check_sweep_folder, make_plan
    from convert.sweep import check_widths as check_width_sets
    from tinysep.models import read_config

    sparsities = _sparsities(args.sparsity)
    sizes = _calibration_sizes(args.calibration_frames)
    modes = _modes(args.quant)
    widths = [parse_widths(_items(w), "--widths") for w in args.widths]
    config = read_config(args.model)  # not a model folder: said before any work
    try:
        check_width_sets(config, widths, "--widths")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    plan = make_plan(sparsities, modes, sizes, widths, args.frames_per_invoke,
                     args.prune_steps, args.eval_clips, config=config)
    from tinysep.folder_writes import check_apart_from

    check_apart_from(args.out, {"--data folder": args.data})
    try:
        check_sweep_folder(args.out, args.model, "--out")
    except ValueError as exc:
        raise CliError(str(exc)) from None
    for split in ("train", "test"):  # calibration and fine-tuning; the scores
        require_clips(args.data, config, split)
    return plan




def run(args: argparse.Namespace) -> int:
    from convert.sweep import flat_rows, markdown_table, run_sweep

    plan = _plan(args)
    cells = run_sweep(args.model, args.data, args.out, plan, max_clips=args.max_clips,
                      seed=args.seed, progress=not args.no_progress)
    print(markdown_table(flat_rows(cells)), end="")
    print(f"{len(cells)}/{len(plan.cells)} cells; wrote {args.out}/results.csv, .json, .md, .png")
    return 0
