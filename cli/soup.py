"""Average the weights of several trained models of one graph into one model (a weight soup).

MODEL is a saved model folder (a training run's --out, or a shipped model); all must be the
same separator with the same options. By default the soup is the plain mean of all of them;
with ``--greedy`` each model is first scored alone on the valid split of ``--valid-data``
(as ``tinysep train`` scores its epochs), then the models are added best first and each is
kept only if the mean with it scores higher. The soup lands in ``--out`` as a model folder
(``tinysep eval --method model:OUT``, ``tinysep export OUT``) whose ``training.json`` names
the ingredients, the scores and every corpus the ingredients trained on, so ``tinysep eval
--by-engine`` still tells trained engines from held-out ones.
"""

from __future__ import annotations

import argparse
import json
import shlex
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("models", nargs="+", type=Path, metavar="MODEL",
                        help="saved model folders of one graph (at least two)")
    parser.add_argument("--out", required=True, type=Path, metavar="DIR",
                        help="folder for the soup (must not exist, or be empty)")
    parser.add_argument("--greedy", action="store_true",
                        help="keep a model only if it raises the selection score on "
                             "--valid-data (default: the mean of all)")
    parser.add_argument("--valid-data", type=Path, default=None, metavar="DIR",
                        help="corpus whose valid split scores the soups (needed by --greedy; "
                             "otherwise the soup is scored on it when given)")
    parser.add_argument("--valid-clips", type=int, default=24, metavar="N",
                        help="valid clips scored (default 24; tinysep train's default is 8)")
    parser.add_argument("--valid-levels-db", default="0", metavar="DB,...",
                        help="levels the valid clips play at, comma-separated (default 0)")


def _levels(text: str) -> list[float]:
    from cli.common import CliError
    from tinysep.training.config import check_valid_levels

    try:
        levels = [float(v) for v in text.split(",")]
    except ValueError:
        raise CliError(f"--valid-levels-db must be comma-separated numbers, got {text!r}") from None
    check_valid_levels(levels)
    return levels


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_folder
    from tinysep.folder_writes import check_apart_from
    from tinysep.methods import model_folder
    from tinysep.metrics.table import MODEL_PREFIX, short_labels
    from tinysep.model_record import TRAINING_FILE
    from tinysep.models import load_model, save_model
    from tinysep.models.registry import read_config
    from tinysep.training.soup import (
        check_finite_weights,
        check_same_graph,
        greedy_soup,
        ingredient_record,
        mean_weights,
        merged_corpora,
    )

    if len(args.models) < 2:
        raise CliError("a soup needs at least two models")
    if args.greedy and args.valid_data is None:
        raise CliError("--greedy scores the soups: give --valid-data DIR")
    if args.valid_clips < 1:
        raise CliError(f"--valid-clips must be at least 1, got {args.valid_clips}")
    levels = _levels(args.valid_levels_db)
    check_output_folder(args.out)
    if args.out.exists() and (not args.out.is_dir() or any(args.out.iterdir())):
        raise CliError(f"--out {args.out} exists and is not an empty folder")
    folders = [model_folder(m) for m in args.models]
    for folder in folders:
        check_apart_from(args.out, {"MODEL folder": folder})
    check_apart_from(args.out, {"--valid-data folder": args.valid_data})
    resolved = [f.resolve() for f in folders]
    repeated = sorted({str(f) for f in resolved if resolved.count(f) > 1})
    if repeated:
        raise CliError(f"a model is given twice: {', '.join(repeated)}")
    check_same_graph([read_config(f) for f in folders], folders)
    corpora = merged_corpora(folders)
    models = [load_model(f) for f in folders]
    try:
        check_finite_weights(models, folders)
    except ValueError as exc:
        raise CliError(str(exc)) from exc
    weights = {str(f.resolve()): m.get_weights() for f, m in zip(folders, models, strict=True)}
    soup = models[0]

    def mix(names):
        soup.set_weights(mean_weights([weights[n] for n in names]))

    valid = _valid_clips(args.valid_data, args.valid_clips, levels) if args.valid_data else None

    def score(names) -> float:
        from tinysep.training.validation import validation_sdr

        mix(names)
        return validation_sdr(soup, valid)["mean"]

    names = list(weights)
    # as many trailing folders as tell the models apart (runs/a/tcn, runs/b/tcn: a/tcn, b/tcn)
    shown = {n: label.removeprefix(MODEL_PREFIX) for n, label in
             short_labels([MODEL_PREFIX + n for n in names]).items()}

    def report(names, value) -> None:
        print(f"  {value:6.3f} dB  {' + '.join(shown[MODEL_PREFIX + n] for n in names)}",
              flush=True)

    single: dict[str, float] = {}
    if args.greedy:
        print(f"greedy soup of {len(names)} models, scored on {args.valid_data} (valid split, "
              f"{args.valid_clips} clips at {args.valid_levels_db} dB):", flush=True)
        kept, selection, single = greedy_soup(names, score, report)
    else:
        kept = names
        if valid is not None:
            print(f"soup of {len(names)} models, scored on {args.valid_data}", flush=True)
        selection = score(kept) if valid is not None else None
    mix(kept)
    save_model(soup, args.out)
    record = {
        "command": _command(args),
        "soup": {
            "greedy": bool(args.greedy),
            "kept": kept,
            "ingredients": [ingredient_record(f) for f in folders],
            "selection": None if valid is None else {
                "data": str(args.valid_data.resolve()), "clips": args.valid_clips,
                "levels_db": levels, "soup_mean_db": selection, "single_mean_db": single},
        },
        "corpora": corpora,
    }
    (args.out / TRAINING_FILE).write_text(json.dumps(record, indent=2) + "\n")
    print(f"soup of {len(kept)} of {len(names)} models -> {args.out}"
          + ("" if selection is None else f"; selection mean {selection:.3f} dB"))
    return 0


def _command(args: argparse.Namespace) -> str:
    """The command that makes this soup again, from its parsed arguments."""
    words = ["tinysep", "soup", *map(str, args.models), "--out", str(args.out)]
    if args.greedy:
        words.append("--greedy")
    if args.valid_data is not None:
        words += ["--valid-data", str(args.valid_data), "--valid-clips", str(args.valid_clips),
                  "--valid-levels-db", args.valid_levels_db]
    return shlex.join(words)


def _valid_clips(root: Path, count: int, levels: list[float]):
    from tinysep.data.loaders import find_clips
    from tinysep.training.config import TrainConfig
    from tinysep.training.data import load_split_clips, validation_clips

    found = find_clips(root, "auto", "valid")
    if not found:
        raise ValueError(f"{root}: no clips in its valid split to score the soups on")
    clips = load_split_clips(found, root, "valid", progress=False)
    return validation_clips(clips, count, TrainConfig().valid_seconds, levels)
