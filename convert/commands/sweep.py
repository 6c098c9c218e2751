"""Sweep a grid: sparsity x quantization mode x calibration size (and channel widths).

Each cell reports model bytes, MACs per hop, host time per hop (one thread), SDR of the
float and of the converted model on held-out clips and their difference, per source.
Writes OUT/results.csv, .json, .md and .png (rebuilt after every cell). Killed, it
resumes from OUT without redoing finished cells or pruned models.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from tinysep.commands.common import seed_argument


def _floats(text: str, what: str) -> list[float]:
    from tinysep.commands.common import CliError

    try:
        return [float(x) for x in text.split(",") if x.strip()]
    except ValueError:
        raise CliError(f"{what} expects comma-separated numbers, got {text!r}") from None


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calibration.representative import DEFAULT_FRAMES

    parser.add_argument("model", type=Path, metavar="MODEL", help="saved model folder")
    parser.add_argument("--data", required=True, type=Path, help="dataset folder")
    parser.add_argument("--out", required=True, type=Path, help="sweep folder (resumable)")
    parser.add_argument("--sparsity", default="0", metavar="S,S,...",
                        help="magnitude sparsities (0 = the model as is; default 0)")
    parser.add_argument("--quant", default="int8,int16x8", metavar="MODE,MODE,...",
                        help="quantization modes (default int8,int16x8)")
    parser.add_argument("--calibration-frames", default=str(DEFAULT_FRAMES), metavar="N,N,...",
                        help=f"calibration sizes for int8/int16x8 (default {DEFAULT_FRAMES})")
    parser.add_argument("--widths", action="append", default=[], metavar="KEY=V[,KEY=V]",
                        help="a structured-pruning variant (repeatable), e.g. "
                             "residual=24,hidden=48")
    parser.add_argument("--frames-per-invoke", type=int, default=1, metavar="K",
                        help="STFT frames (8 ms hops) per model invoke (default 1)")
    parser.add_argument("--prune-steps", type=int, default=300,
                        help="fine-tuning batches per pruned variant (default 300)")
    parser.add_argument("--eval-clips", type=int, default=8,
                        help="test clips scored per cell (default 8)")
    parser.add_argument("--max-clips", type=int, default=64,
                        help="training clips loaded for calibration and fine-tuning (default 64)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="seed of calibration and fine-tuning (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from tinysep.commands.common import CliError
    from tinysep.commands.models import parse_options

    sparsities = _floats(args.sparsity, "--sparsity")
    sizes = [int(f) for f in _floats(args.calibration_frames, "--calibration-frames")]
    modes = [m.strip() for m in args.quant.split(",") if m.strip()]
    widths = [parse_options([p for p in w.split(",") if p]) for w in args.widths]
    if args.eval_clips < 1 or args.frames_per_invoke < 1 or args.prune_steps < 1:
        raise CliError("--eval-clips, --frames-per-invoke and --prune-steps must be >= 1")

    from convert.sweep import flat_rows, make_plan, markdown_table, run_sweep
    from tinysep.models import read_config

    read_config(args.model)
    plan = make_plan(sparsities, modes, sizes, widths, args.frames_per_invoke,
                     args.prune_steps, args.eval_clips)
    cells = run_sweep(args.model, args.data, args.out, plan, max_clips=args.max_clips,
                      seed=args.seed, progress=not args.no_progress)
    print(markdown_table(flat_rows(cells)), end="")
    print(f"{len(cells)}/{len(plan.cells)} cells; wrote {args.out}/results.csv, .json, .md, .png")
    return 0
