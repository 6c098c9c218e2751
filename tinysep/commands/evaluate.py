"""Evaluate separation methods on a dataset: BSS-eval table (paper 1 Tables 3-4), JSON, PNG.

`--method` takes one name or a comma-separated list (mix, hpss, repet, repet-sim,
repet-mfcc, irm, model:PATH) so one call prints a whole comparison; ``model:PATH`` is a
saved model folder (float Keras) or a deploy bundle (its TFLite model, streamed on the
host exactly as a board runs it). Clips are evaluated in
parallel worker processes; the JSON report is kept up to date while the run goes, so
an interrupted run keeps what finished. A bar chart lands next to the JSON.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--method", required=True,
                        help="method name or comma-separated list, e.g. mix,hpss,repet,irm,"
                             "model:PATH (PATH: saved model folder or deploy bundle)")
    parser.add_argument("--data", required=True, type=Path, help="dataset root folder")
    parser.add_argument("--dataset", default="auto", choices=("auto", "mir1k", "musdb", "synth"),
                        help="dataset layout (default: detect)")
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--max-clips", type=int, default=None, metavar="N",
                        help="evaluate only the first N clips")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes (default: the available cores)")
    parser.add_argument("--json", required=True, type=Path, metavar="OUT.json",
                        help="report with per-clip values and summaries; the PNG goes beside it")
    parser.add_argument("--engines", default=None, metavar="ROLE=ENGINE,...",
                        help="synthetic corpora only: evaluate only the clips whose vocal "
                             "engine, accompaniment engine or sound font is one of these, e.g. "
                             "vocals=choir,accompaniment=physical (default: every clip)")
    parser.add_argument("--by-engine", action="store_true",
                        help="also print (and plot, and write to the JSON) the scores per "
                             "music engine, marked trained / held out for the first model:PATH")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from tinysep.cli import CliError
    from tinysep.data.loaders import find_clips
    from tinysep.evaluate import evaluate, parse_methods, register_separator_factory
    from tinysep.metrics import format_table, plot_summary
    from tinysep.metrics.by_engine import clip_engines, matches, parse_engine_filter

    # The CLI is the top layer: let `model:PATH` also run deploy bundles (convert/).
    register_separator_factory("model", "convert.runtime:separator_for_path")
    methods = parse_methods(args.method)
    if args.max_clips is not None and args.max_clips < 1:
        raise CliError(f"--max-clips must be at least 1, got {args.max_clips}")
    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs must be at least 1, got {args.jobs}")
    if args.json.suffix.lower() != ".json":
        raise CliError(f"--json must name a .json file, got {args.json}")
    sources = find_clips(args.data, dataset=args.dataset, split=args.split)
    engines_of = clip_engines(args.data) if (args.engines or args.by_engine) else {}
    if (args.engines or args.by_engine) and not engines_of:
        raise CliError(f"{args.data} names no music engines per clip (only a synthetic corpus "
                       f"written by `tinysep synth` does): --engines and --by-engine need them")
    if args.engines:
        wanted = parse_engine_filter(args.engines)
        sources = [s for s in sources if matches(engines_of.get(s.name, {}), wanted)]
    if args.max_clips is not None:
        sources = sources[: args.max_clips]
    if not sources:
        raise CliError(f"no clips in split {args.split!r} under {args.data}")

    meta = {
        "command": "eval",
        "data": str(args.data),
        "dataset": args.dataset,
        "split": args.split,
        "max_clips": args.max_clips,
        "engines": args.engines,
    }
    try:
        report = evaluate(sources, methods, jobs=args.jobs, json_path=args.json,
                          progress=not args.no_progress, meta=meta)
    except KeyboardInterrupt:
        print(f"partial results (the clips that finished) are in {args.json}", file=sys.stderr)
        raise

    timing = report["timing"]
    title = (
        f"{report['clips_done']} clips ({timing['audio_seconds']:.0f} s of audio) from "
        f"{args.data} [{args.split}], BSS-eval v3 whole-clip (fast_bss_eval)"
    )
    print(format_table(report["summary"], title))
    print()
    print(
        f"wall time {timing['wall_seconds']:.1f} s with {report['jobs']} worker(s): "
        f"{timing['clip_seconds_per_wall_second']:.2f} clip-seconds per wall-second "
        f"({len(methods)} method(s) per clip)"
    )
    for failure in report["failures"]:
        print(f"FAILED {failure['name']}: {failure['error']}", file=sys.stderr)
    for method in report["summary"]:
        errors = [
            (clip["name"], clip["methods"][method]["error"])
            for clip in report["clips"]
            if "error" in clip.get("methods", {}).get(method, {})
        ]
        for name, error in errors:
            print(f"FAILED {method} on {name}: {error}", file=sys.stderr)
    png = plot_summary(report["summary"], args.json.with_suffix(".png"), title=str(args.data))
    print(f"wrote {args.json} and {png}")
    if args.by_engine:
        _engine_report(args, report, methods, engines_of)
    failed = report["clips_failed"] + sum(s["failed"] for s in report["summary"].values())
    return 1 if failed else 0


def _engine_report(args: argparse.Namespace, report: dict, methods: list[str],
                   engines_of: dict) -> None:
    """Per-engine table, plot and JSON section for the first ``model:PATH`` method."""
    import json

    from tinysep.metrics.by_engine import (
        by_engine,
        format_engine_table,
        model_engines,
        plot_engines,
    )

    models = [m for m in methods if m.startswith("model:")]
    if not models:
        print("--by-engine: no model:PATH among the methods; per-engine rows show the "
              "classic methods only")
    model = models[0] if models else ""
    seen = model_engines(model.split(":", 1)[1]) if model else {}
    rows = by_engine(report, engines_of, model, seen)
    print()
    print(format_engine_table(rows, f"per engine: {model or 'no model'} vs the best classic "
                                    f"method on the same clips (SDR mean, dB)"))
    png = plot_engines(rows, args.json.with_name(args.json.stem + "-engines.png"),
                       title=f"{model} per engine")
    full = json.loads(args.json.read_text())
    full["by_engine"] = {"model": model, "rows": rows}
    tmp = args.json.with_name(args.json.name + ".tmp")
    tmp.write_text(json.dumps(full, indent=1, allow_nan=False))
    tmp.replace(args.json)
    print(f"wrote {png}")
