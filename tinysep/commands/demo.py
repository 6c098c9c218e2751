"""The main job on its embedded default: synthesize a small test set and evaluate on it.

With no board attached this runs everything on this machine: it writes a fresh
synthetic corpus, separates its test split with every method and prints the BSS-eval
table (SDR / SIR / SAR per source, NSDR). Results land in ``--out`` as JSON and PNG.
"""

from __future__ import annotations

import argparse
from pathlib import Path

DEFAULT_METHODS = "mix,hpss,repet,repet-sim,repet-mfcc,irm"


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="folder for the corpus and the reports (default: out/demo)")
    parser.add_argument("--songs", type=int, default=15, help="songs to synthesize (default 15)")
    parser.add_argument("--seconds", type=float, default=20.0,
                        help="seconds per song (default 20)")
    parser.add_argument("--seed", type=int, default=2026, help="corpus seed (default 2026)")
    parser.add_argument("--methods", default=DEFAULT_METHODS,
                        help=f"methods to compare (default {DEFAULT_METHODS})")
    parser.add_argument("--jobs", type=int, default=None, help="worker processes")


def run(args: argparse.Namespace) -> int:
    from tinysep.data.loaders import find_clips
    from tinysep.data.synth import write_corpus
    from tinysep.evaluate import evaluate, parse_methods
    from tinysep.metrics import format_table, plot_summary

    data_dir = args.out / "data"
    print(f"[1/2] synthesizing {args.songs} songs x {args.seconds:g} s into {data_dir}")
    write_corpus(data_dir, songs=args.songs, seconds=args.seconds, seed=args.seed)
    sources = find_clips(data_dir, dataset="synth", split="test")
    methods = parse_methods(args.methods)
    json_path = args.out / "baselines.json"
    print(f"[2/2] evaluating {len(methods)} methods on {len(sources)} test clips")
    report = evaluate(sources, methods, jobs=args.jobs, json_path=json_path,
                      meta={"command": "demo", "data": str(data_dir), "split": "test"})
    title = f"{report['clips_done']} synthetic test clips, BSS-eval v3 whole-clip"
    print(format_table(report["summary"], title))
    plot_path = json_path.with_suffix(".png")
    plot_summary(report["summary"], plot_path)
    print(f"\nreport: {json_path}\nplot:   {plot_path}")
    return 1 if report["failures"] else 0
