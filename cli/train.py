"""Train a separator on a dataset folder; checkpoints, validation SDR, TensorBoard logs.

A fresh run: ``tinysep train --model dualgate-tcn --preset tiny --data DIR --out
runs/NAME``, into a new or empty folder apart from the data and models it reads.
``--resume`` continues the run in ``--out`` from its last complete epoch; settings not
given are taken from the run, settings given must match it (except ``--epochs``,
``--max-minutes`` and ``--data``). ``--like RUN`` starts a new run with all the settings
of an earlier one (its ``run.json``), so a run can be repeated from its folder alone. The
best weights land in ``--out`` as a model folder that ``tinysep eval --method model:OUT``
reads, and the last epoch's in ``OUT/last`` (``model:OUT/last``).
"""

from __future__ import annotations

import argparse
import json
import shlex
import sys
from pathlib import Path

from cli.common import finite_float, path_argument, seed_argument

# CLI flag -> TrainConfig field, for the plain value flags.
_FIELDS = {
    "model": "model",
    "preset": "preset",
    "dataset": "dataset",
    "epochs": "epochs",
    "steps_per_epoch": "steps_per_epoch",
    "batch_size": "batch_size",
    "chunk_seconds": "chunk_seconds",
    "learning_rate": "learning_rate",
    "lr_schedule": "lr_schedule",
    "warmup_steps": "warmup_steps",
    "final_lr_fraction": "final_lr_fraction",
    "loss": "loss",
    "sdr_weight": "sdr_weight",
    "seed": "seed",
    "patience": "patience",
    "valid_clips": "valid_clips",
    "valid_seconds": "valid_seconds",
    "max_minutes": "max_minutes",
    "weight_average": "weight_average",
    "teacher_weight": "teacher_weight",
    "teacher_skip": "teacher_skip",
    "oversample": "oversample",
    "oversample_factor": "oversample_factor",
}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from tinysep.train import TrainConfig
    from tinysep.training.choices import LOSSES, SCHEDULES

    d = TrainConfig()
    parser.add_argument("--model", help=f"separator: dualgate-tcn or unet-se-sru "
                                        f"(default {d.model})")
    parser.add_argument("--preset", help=f"size preset (default {d.preset})")
    parser.add_argument("--option", action="append", default=[], metavar="KEY=VALUE",
                        help="model option overriding the preset (value parsed as JSON if it "
                             "can be, e.g. norm=group, channels=[8,16]); repeatable")
    parser.add_argument("--sources", metavar="NAMES",
                        help="comma-separated sources the model separates, one mask each: "
                             "vocals,accompaniment or vocals,drums,bass,other (default: the "
                             "preset's, vocals,accompaniment except the tiny4 presets)")
    parser.add_argument("--augment", action="append", default=[], metavar="KEY=VALUE",
                        help="training augmentation setting (value parsed as JSON), e.g. "
                             "eq_probability=0.5 gives half the sources a random EQ, "
                             f"remix=false; repeatable; keys: {', '.join(d.augment)}")
    parser.add_argument("--data", type=path_argument,
                        help="dataset folder (synth, mir1k or musdb layout)")
    parser.add_argument("--dataset", choices=("auto", "mir1k", "musdb", "synth"),
                        help="dataset layout (default: detect)")
    parser.add_argument("--valid-data", type=path_argument, metavar="DIR",
                        help="take the validation clips (model selection) from this dataset's "
                             "valid split, e.g. a corpus of engines held out from training "
                             "(default: --data's valid split)")
    parser.add_argument("--init-from", type=path_argument, metavar="MODEL",
                        help="start from the weights of this saved model (same model and "
                             "options; default: random initialization)")
    parser.add_argument("--init-matching", action="store_true", default=None,
                        help="with --init-from a model of other options: copy its layers "
                             "whose names match and whose weights are the same shape or fit "
                             "into wider ones (the new channels start so that the model "
                             "computes what the smaller one did); the rest start fresh (e.g. "
                             "a model grown by an encoder, a refiner, wider blocks or more "
                             "blocks per stack, whose output projections start at zero). "
                             "A model on another framing or pooling of the bins gets the "
                             "input and mask projections read off at its own bins, and its "
                             "input normalisation measured on the training mixtures")
    parser.add_argument("--teacher", type=path_argument, metavar="MODEL",
                        help="distil this saved model (e.g. a wider one) into the trained one: "
                             "the loss also compares with the teacher's separations of each "
                             "mixture; the run records the teacher's corpora as heard")
    parser.add_argument("--teacher-weight", type=finite_float, metavar="W",
                        help="share of the loss against the teacher's separations, the rest "
                             f"against the true sources (default {d.teacher_weight})")
    parser.add_argument("--teacher-skip", metavar="ROLE=ENGINE[,...]",
                        help="chunks with a source made by one of these engines (roles as "
                             "eval's --engines, by the corpus's splits.json) learn from the "
                             "true sources alone, e.g. accompaniment=recorded where the "
                             "teacher separates real recordings worse than their stems")
    parser.add_argument("--oversample", metavar="ROLE=ENGINE[,...]",
                        help="draw the train clips with a source made by one of these engines "
                             "(roles as eval's --engines) more often than the others, e.g. "
                             "accompaniment=recorded when the corpus holds few recordings")
    parser.add_argument("--oversample-factor", type=finite_float, metavar="X",
                        help="how many times as often those clips are drawn (default "
                             f"{d.oversample_factor:g})")
    parser.add_argument("--out", required=True, type=path_argument,
                        help="run folder, e.g. runs/NAME: new or empty for a new run")
    parser.add_argument("--epochs", type=int, help=f"epochs (default {d.epochs})")
    parser.add_argument("--steps-per-epoch", type=int,
                        help=f"optimizer steps per epoch (default {d.steps_per_epoch})")
    parser.add_argument("--batch-size", type=int, help=f"chunks per batch (default {d.batch_size})")
    parser.add_argument("--chunk-seconds", type=finite_float,
                        help=f"training chunk length (default {d.chunk_seconds})")
    parser.add_argument("--learning-rate", type=finite_float,
                        help=f"Adam learning rate (default {d.learning_rate}, as in the "
                             "UNet-SE-BiSRU paper)")
    parser.add_argument("--lr-schedule", choices=SCHEDULES,
                        help=f"learning-rate schedule: constant, cosine over all steps, or "
                             f"cosine-budget: over the steps or --max-minutes, whichever ends "
                             f"first (default {d.lr_schedule})")
    parser.add_argument("--warmup-steps", type=int,
                        help=f"linear learning-rate warm-up (default {d.warmup_steps})")
    parser.add_argument("--final-lr-fraction", type=finite_float,
                        help=f"cosine: final rate / peak rate (default {d.final_lr_fraction})")
    parser.add_argument("--loss", choices=LOSSES,
                        help=f"l1: masked-magnitude L1 (the UNet-SE-BiSRU paper's loss); "
                             f"sdr: negative waveform SDR; l1+sdr: both; bss-sdr: negative "
                             f"BSS-eval SDR, as evaluation scores (default {d.loss})")
    parser.add_argument("--sdr-weight", type=finite_float,
                        help=f"weight of the SDR term in l1+sdr (default {d.sdr_weight})")
    parser.add_argument("--weight-average", type=finite_float, metavar="DECAY",
                        help="keep an exponential moving average of the weights with this "
                             "decay per step (e.g. 0.999); validation, model selection and the "
                             "saved model use the average (default 0: off)")
    parser.add_argument("--seed", type=seed_argument,
                        help=f"seed of weights and data (default {d.seed})")
    parser.add_argument("--patience", type=int,
                        help=f"early stopping: epochs without a better validation SDR "
                             f"(0 = never stop early; default {d.patience})")
    parser.add_argument("--valid-clips", type=int,
                        help=f"valid clips scored each epoch (default {d.valid_clips})")
    parser.add_argument("--valid-seconds", type=finite_float,
                        help=f"longest part of a valid clip scored (default {d.valid_seconds})")
    parser.add_argument("--valid-levels-db", metavar="DB,...",
                        help="comma-separated levels the valid clips are also played at, the "
                             "SDR averaged over all, e.g. 0,-20 to choose a model that holds up "
                             "on quiet recordings (default "
                             f"{','.join(f'{v:g}' for v in d.valid_levels_db)})")
    parser.add_argument("--max-minutes", type=finite_float,
                        help="wall-clock budget of the whole run, resumes included")
    parser.add_argument("--resume", action="store_true",
                        help="continue the run in --out from its last complete epoch")
    parser.add_argument("--allow-config-change", action="store_true",
                        help="with --resume: accept settings that differ from the stored run "
                             "(recorded in run.json), e.g. a lower --learning-rate after a NaN")
    parser.add_argument("--like", type=path_argument, metavar="RUN",
                        help="start from the settings of the run folder RUN (new --out)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


def parse_options(items: list[str], flag: str = "--option") -> dict:
    """``["key=value", ...]`` -> dict; values parsed as JSON when possible, else strings."""
    from cli.common import CliError

    options = {}
    for item in items:
        key, sep, text = item.partition("=")
        if not sep or not key.strip():
            raise CliError(f"{flag} expects KEY=VALUE, got {item!r}")
        try:
            value = json.loads(text)
        except json.JSONDecodeError:
            value = text
        options[key.strip()] = value
    return options


def build_config(args: argparse.Namespace):
    """The TrainConfig of this call: defaults (or ``--like`` / the resumed run) + the flags."""
    from cli.common import CliError
    from tinysep.train import TrainConfig
    from tinysep.training.run_folder import stored_config

    if args.resume and args.like:
        raise CliError("--resume continues --out's own run; --like starts a new one: pick one")
    given = {field: getattr(args, flag) for flag, field in _FIELDS.items()
             if getattr(args, flag) is not None}
    if args.data is not None:
        given["data"] = str(args.data)
    if args.valid_data is not None:
        given["valid_data"] = str(args.valid_data)
    if args.init_from is not None:
        given["init_from"] = str(args.init_from)
    if args.init_matching:
        given["init_matching"] = True
    if args.teacher is not None:
        given["teacher"] = str(args.teacher)
    if args.valid_levels_db is not None:
        try:
            given["valid_levels_db"] = [float(v) for v in args.valid_levels_db.split(",")]
        except ValueError:
            raise CliError("--valid-levels-db expects comma-separated numbers of dB, got "
                           f"{args.valid_levels_db!r}") from None
    options = parse_options(args.option)
    if getattr(args, "sources", None) is not None:
        from tinysep.data.sources import parse_sources

        try:
            options["sources"] = list(parse_sources(args.sources))
        except ValueError as exc:
            raise CliError(str(exc)) from None
    augment = parse_options(args.augment, "--augment")
    if args.resume:
        base = stored_config(args.out)
    elif args.like:
        base = stored_config(args.like)
    else:
        base = TrainConfig()
        if "model" in given and given["model"] != base.model:
            base = base.replace(options={})
    if options:
        given["options"] = {**(base.options if given.get("model", base.model) == base.model
                               else {}), **options}
    if augment:
        given["augment"] = {**base.augment, **augment}
    config = base.replace(**given)
    if args.teacher_weight is not None and not config.teacher:
        raise CliError("--teacher-weight weighs the loss against a teacher: give --teacher too")
    if args.teacher_skip is not None and not config.teacher:
        raise CliError("--teacher-skip names songs a teacher does not teach: give --teacher too")
    if args.oversample_factor is not None and not config.oversample:
        raise CliError("--oversample-factor weighs the clips --oversample names: give "
                       "--oversample too")
    if not config.data:
        raise CliError("--data is required (the dataset folder to train on)")
    return config


def _invoked_as_train() -> bool:
    """True when this process is the ``tinysep train ...`` command itself."""
    program = Path(sys.argv[0])
    as_tinysep = program.name == "tinysep" or program.parts[-2:] == ("cli", "main.py")
    return len(sys.argv) > 1 and as_tinysep and sys.argv[1] == "train"


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_writable
    from tinysep.train import TrainingError, TrainingInterrupted, train

    config = build_config(args)
    check_output_writable(args.out)
    command = shlex.join(["tinysep", "train", *sys.argv[2:]]) if _invoked_as_train() else None
    try:
        result = train(config, args.out, resume=args.resume,
                       allow_changes=args.allow_config_change, progress=not args.no_progress,
                       command=command)
    except TrainingInterrupted as exc:  # a stop, not an error: the exit status of Ctrl-C
        print(f"tinysep train: interrupted: {exc}", file=sys.stderr)
        return 130
    except TrainingError as exc:
        raise CliError(str(exc)) from exc
    best = result.best_sdr or {}

    def fmt(value):
        return "n/a" if value is None else f"{value:.2f} dB"

    print(f"run {result.out}: {result.status} after {result.epochs} epoch(s), {result.steps} "
          f"steps, {result.train_seconds / 60:.1f} min of training")
    print(f"best epoch {result.best_epoch}: validation SDR "
          + "".join(f"{k} {fmt(v)}, " for k, v in best.items() if k != "mean")
          + f"mean {fmt(best.get('mean'))}")
    print(f"best weights: {result.out}/config.json + model.weights.h5; "
          f"TensorBoard: tensorboard --logdir {result.out}/logs")
    return 0
