"""The ablation of ``unet-se-sru`` at a small scale: SE on/off, SRU vs LSTM vs GRU,
GroupNorm vs BatchNorm vs none, as in "Application of UNet-SE-BiSRU algorithm for music
signal processing in music source separation" (T. Zhang).

Trains every variant with the same recipe and number of steps into ``--out/VARIANT``
(an interrupted ablation resumes), scores all of them on the test split, and writes
``ablation.md`` (that paper's Table 4.1 layout: training time per epoch, SDR, SAR, SIR) and
``ablation.json`` into ``--out``.
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import finite_float, path_argument, seed_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tinysep.ablate import VARIANT_NAMES
    from tinysep.training.choices import SCHEDULES

    parser.add_argument("--data", required=True, type=path_argument, help="dataset folder")
    parser.add_argument("--out", required=True, type=Path, help="folder for the runs + report")
    parser.add_argument("--variants", default=None,
                        help=f"comma-separated subset of {','.join(VARIANT_NAMES)} (default all)")
    parser.add_argument("--preset", default="tiny", help="unet-se-sru size preset (default tiny)")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="model option for every variant, e.g. units=32; repeatable")
    parser.add_argument("--epochs", type=int, default=3, help="epochs per variant (default 3)")
    parser.add_argument("--steps-per-epoch", type=int, default=200,
                        help="steps per epoch (default 200)")
    parser.add_argument("--batch-size", type=int, default=8, help="chunks per batch (default 8)")
    parser.add_argument("--chunk-seconds", type=finite_float, default=1.5,
                        help="training chunk length (default 1.5)")
    parser.add_argument("--learning-rate", type=finite_float, default=1e-3,
                        help="peak Adam learning rate (default 1e-3)")
    parser.add_argument("--lr-schedule", choices=SCHEDULES, default="cosine",
                        help="learning-rate schedule (default cosine)")
    parser.add_argument("--warmup-steps", type=int, default=50,
                        help="linear learning-rate warm-up (default 50)")
    parser.add_argument("--seed", type=seed_argument, default=0, help="seed of weights and data")
    parser.add_argument("--max-minutes-each", type=finite_float, default=None,
                        help="wall-clock cap per variant (a guard; the step count is the budget)")
    parser.add_argument("--valid-clips", type=int, default=4,
                        help="valid clips scored after each epoch to pick the best (default 4)")
    parser.add_argument("--split", default="test", help="split scored at the end (default test)")
    parser.add_argument("--max-clips", type=int, default=None, metavar="N",
                        help="score only the first N clips of the split")
    parser.add_argument("--jobs", type=int, default=None, help="evaluation worker processes")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_folder
    from cli.train import parse_options
    from tinysep.ablate import (
        MODEL,
        OWNED_ENTRIES,
        SWITCHED_OPTIONS,
        format_markdown,
        run_ablation,
        select_variants,
    )
    from tinysep.folder_writes import check_apart_from, foreign_entries, holds_anything
    from tinysep.train import TrainConfig

    names = None
    if args.variants is not None:
        names = [v.strip() for v in args.variants.split(",") if v.strip()]
        if not names:
            raise CliError(f"--variants names no variant, got {args.variants!r}")
    variants = select_variants(names)
    switched = sorted(set(parse_options(args.option)) & SWITCHED_OPTIONS)
    if switched:
        raise CliError(f"--option {', '.join(switched)}: the ablation switches "
                       f"{'it' if len(switched) == 1 else 'them'} per variant; set only the "
                       f"other options of {MODEL}")
    check_output_folder(args.out)
    check_apart_from(args.out, {"--data folder": args.data})
    if holds_anything(args.out, "--out"):
        others = foreign_entries(args.out, OWNED_ENTRIES)
        if others:
            raise CliError(f"--out {args.out} holds {', '.join(others)}, which an ablation "
                           "does not write; name a new or empty folder (or an earlier "
                           "ablation's, to resume it)")
    base = TrainConfig(
        model=MODEL, preset=args.preset, options=parse_options(args.option),
        data=str(args.data), epochs=args.epochs, steps_per_epoch=args.steps_per_epoch,
        batch_size=args.batch_size, chunk_seconds=args.chunk_seconds,
        learning_rate=args.learning_rate, lr_schedule=args.lr_schedule,
        warmup_steps=args.warmup_steps, seed=args.seed, patience=0,
        valid_clips=args.valid_clips, valid_seconds=6.0,
        max_minutes=args.max_minutes_each,
    )
    base.validate()
    result = run_ablation(base, args.out, variants, split=args.split, max_clips=args.max_clips,
                          jobs=args.jobs, progress=not args.no_progress)
    print(format_markdown(result))
    print(f"wrote {args.out / 'ablation.md'} and {args.out / 'ablation.json'}")
    return 0
