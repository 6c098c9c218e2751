"""Evaluate separation methods on a dataset: BSS-eval table, JSON, PNG.

The table follows the layout of Tables 3-4 of "Real-time audio source separation in live
music performances using edge AI technology" (J. Yang).

`--method` takes one name or a comma-separated list (mix, hpss, repet, repet-sim,
repet-mfcc, irm, model:PATH) so one call prints a whole comparison; ``model:PATH`` is a
saved model folder (float Keras) or a deploy bundle (its TFLite model, streamed on the
host exactly as a board runs it). Clips are evaluated in
parallel worker processes; the JSON report is kept up to date while the run goes, so
an interrupted run keeps what finished. A bar chart lands next to the JSON.

``--data`` is a dataset (MIR-1K, MUSDB18-HQ or a ``tinysep synth`` corpus) or your own
audio: one mixture file or a folder of them, ``.wav`` (any rate and channel count) or
``.npy`` (1-D, 16 kHz), each with its references when present beside it as
``NAME.vocals.wav`` and ``NAME.accompaniment.wav`` (or ``.npy``). Mixtures without
references are separated but not scored. ``--save-audio DIR`` keeps, per clip,
``DIR/CLIP/mixture.wav``, ``reference/`` and one folder of sources per method.
``--silence vocals`` leaves the voice out of every mixture: what each method still calls
vocals in a band alone is scored as leak. ``--tags TAGS.json`` groups your own clips (genre,
singer, take...) and prints a row per tag value, as ``--by-engine`` does per engine.
The first ``model:PATH`` (else the first method) is compared with every other method clip by
clip: the mean difference and a 95 % interval from resampling whole songs (clips of
one song are not independent), as the per-engine and per-tag margins are.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.common import add_audio_input_arguments
    parser.add_argument("--method", required=True,
                        help="method name or comma-separated list, e.g. mix,hpss,repet,irm,"
                             "model:PATH (PATH: saved model folder or deploy bundle)")
    add_audio_input_arguments(parser)
    parser.add_argument("--split", default="test", help="split to evaluate (default: test)")
    parser.add_argument("--sources", default="vocals,accompaniment", metavar="NAMES",
                        help="sources to score: vocals,accompaniment or the four stems "
                             "vocals,drums,bass,other (a synth corpus's Stems/ or MUSDB18-HQ; "
                             "adds BSS-eval v4 on 1 s windows, the MUSDB18 convention, and "
                             "the references irm, hpss-drums, lowpass-bass) (default: "
                             "vocals,accompaniment)")
    parser.add_argument("--max-clips", type=int, default=None, metavar="N",
                        help="evaluate only the first N clips")
    parser.add_argument("--jobs", type=int, default=None, metavar="N",
                        help="worker processes (default: the available cores)")
    parser.add_argument("--json", required=True, type=Path, metavar="OUT.json",
                        help="report with per-clip values and summaries; the PNG goes beside it")
    parser.add_argument("--level-db", type=float, default=0.0, metavar="DB",
                        help="play every clip DB dB louder (negative: quieter), its references "
                             "alike, e.g. -20 to see how the methods hold up on a quiet "
                             "recording; no clipping is added (default: 0, the files' level)")
    parser.add_argument("--silence", default=None, metavar="SOURCE",
                        help="leave one of --sources out of every mixture, e.g. vocals: each "
                             "method then separates the rest (a band alone), and its estimate "
                             "of SOURCE is scored as leak, its power against the mixture's in "
                             "dB (lower is better) (default: the whole mixture)")
    parser.add_argument("--engines", default=None, metavar="ROLE=ENGINE,...",
                        help="synthetic corpora only: evaluate only the clips whose vocal "
                             "engine, accompaniment engine or sound font is one of these, e.g. "
                             "vocals=choir,accompaniment=physical (default: every clip)")
    parser.add_argument("--by-engine", action="store_true",
                        help="also print (and plot, and write to the JSON) the scores per "
                             "music engine (the model's SDR, SIR and SAR, the best classic "
                             "method, the IRM), marked trained / held out for the first "
                             "model:PATH "
                             "(a bundle: as its float model's record says)")
    parser.add_argument("--tags", type=Path, default=None, metavar="TAGS.json",
                        help="also print (and plot, and write to the JSON) the scores per tag "
                             "of your own clips, as --by-engine does per engine: a JSON object "
                             "mapping clip names (file names without .wav) to {tag: value}, "
                             'e.g. {"song01": {"genre": "rock", "singers": 2}}; a clip is '
                             "counted once per tag, under its value (default: no tags)")
    parser.add_argument("--save-audio", type=Path, metavar="DIR",
                        help="keep every clip's mixture, references and each method's separated "
                             "sources as wav files under DIR/CLIP/ (default: not kept); DIR is "
                             "new, empty or an earlier --save-audio's (it holds "
                             "saved-audio.json), apart from the data and the models")
    parser.add_argument("--reuse", type=Path, metavar="EARLIER.json",
                        help="take the scores of methods that an earlier report holds for "
                             "every selected clip from it instead of running them again, e.g. "
                             "the classic methods when a new model is added; a model is taken "
                             "only if the report ran the same files (default: run all)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_save_audio(args, methods: list[str]) -> None:
    """Refuse a ``--save-audio`` folder that could replace the data, a model or a user's
    files (:func:`tinysep.folder_writes.check_audio_folder`)."""
    from tinysep.folder_writes import check_audio_folder
    from tinysep.metrics.table import MODEL_PREFIX

    inputs = {"--data": args.data}
    for method in methods:
        if method.startswith(MODEL_PREFIX):
            inputs[method] = method.removeprefix(MODEL_PREFIX)
    check_audio_folder(args.save_audio, inputs)


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_file
    from convert.runtime import separator_for_path
    from tinysep.data.clip import LEVEL_LIMITS_DB
    from tinysep.evaluate import PlayedSource, evaluate
    from tinysep.folder_writes import mark_audio_folder
    from tinysep.methods import method_fingerprint, parse_methods, register_separator_factory
    from tinysep.metrics import format_table, plot_summary
    from tinysep.metrics.by_engine import clip_engines, matches, parse_engine_filter

    # The CLI is the top layer: let `model:PATH` also run deploy bundles (convert/).
    register_separator_factory("model", separator_for_path)
    methods = parse_methods(args.method)
    if args.max_clips is not None and args.max_clips < 1:
        raise CliError(f"--max-clips must be at least 1, got {args.max_clips}")
    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs must be at least 1, got {args.jobs}")
    low, high = LEVEL_LIMITS_DB
    if not low <= args.level_db <= high:
        raise CliError(f"--level-db must be between {low:g} and {high:g} dB, got "
                       f"{args.level_db:g}")
    check_output_file(args.json, "--json")
    _check_report_files(args)
    sources, files = _sources(args)
    if files and (args.engines or args.by_engine):
        raise CliError("--engines and --by-engine need a synthetic corpus written by "
                       f"`tinysep synth`, not mixture files ({args.data})")
    clip_tags = _clip_tags(args.tags, sources) if args.tags is not None else {}
    engines_of = clip_engines(args.data) if (args.engines or args.by_engine) else {}
    if (args.engines or args.by_engine) and not engines_of:
        raise CliError(f"{args.data} names no music engines per clip (only a synthetic corpus "
                       f"written by `tinysep synth` does): --engines and --by-engine need them")
    # the model whose engines the per-engine table marks, read before anything is scored
    engine_model, seen = _engine_model(methods) if args.by_engine else ("", {})
    if args.engines:
        wanted = parse_engine_filter(args.engines)
        split_sources = sources
        sources = [s for s in sources if matches(engines_of.get(s.name, {}), wanted)]
        if split_sources and not sources:
            heard = {role: sorted({str(engines_of.get(s.name, {}).get(role))
                                   for s in split_sources} - {"None"}) for role in wanted}
            raise CliError(f"--engines {args.engines}: no clip of split {args.split!r} under "
                           f"{args.data} matches; its clips play "
                           + "; ".join(f"{role}: {', '.join(names) or 'none'}"
                                       for role, names in heard.items()))
    if args.max_clips is not None:
        sources = sources[: args.max_clips]
    if not sources:
        raise CliError(f"no clips in split {args.split!r} under {args.data}")
    if args.level_db or args.silence is not None:
        sources = [PlayedSource(s, args.level_db, args.silence) for s in sources]
    if args.save_audio is not None:
        _check_save_audio(args, methods)

    meta = {
        "command": "eval",
        "data": str(args.data),
        "dataset": "files" if files else args.dataset,
        "split": None if files else args.split,
        "save_audio": None if args.save_audio is None else str(args.save_audio),
        "max_clips": args.max_clips,
        "engines": args.engines,
        "tags": None if args.tags is None else str(args.tags),
        "level_db": args.level_db,
        "silence": args.silence,
        # which weights each model method ran: --reuse takes a score only for the same ones
        "model_fingerprints": {m: fp for m in methods
                               if (fp := method_fingerprint(m)) is not None},
    }
    reused = (_reusable(args.reuse, sources, methods, args.level_db,
                        meta["model_fingerprints"], args.silence)
              if args.reuse is not None else {})
    to_run = [m for m in methods if m not in reused.get("methods", ())]
    if args.save_audio is not None:
        mark_audio_folder(args.save_audio, "eval")
    try:
        report = evaluate(sources, to_run, jobs=args.jobs, json_path=args.json,
                          progress=not args.no_progress, meta=meta, save_audio=args.save_audio)
        if reused:
            report = _merge_reused(report, reused, methods, args.json)
    except KeyboardInterrupt:
        print(f"partial results (the clips that finished) are in {args.json}", file=sys.stderr)
        raise

    timing = report["timing"]
    title = (
        f"{report['clips_done']} clips ({timing['audio_seconds']:.0f} s of audio) from "
        f"{args.data}{'' if files else f' [{args.split}]'}"
        f"{f', played {args.level_db:+g} dB' if args.level_db else ''}"
        f"{f', {args.silence} left out' if args.silence else ''}, BSS-eval v3 whole-clip "
        "(fast_bss_eval)"
    )
    print(format_table(report["summary"], title))
    unscored = [c["name"] for c in report["clips"] if c.get("references") is False]
    if unscored:
        print(f"\n{len(unscored)} clip(s) without references, separated but not scored: "
              + ", ".join(unscored[:5]) + (" ..." if len(unscored) > 5 else ""))
    if args.save_audio is not None:
        print(f"separated audio: {args.save_audio}/CLIP/ (mixture.wav, reference/, one folder "
              "per method)")
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
    png = plot_summary(report["summary"], summary_plot(args.json), title=str(args.data))
    _paired_report(args, report, _first_model(methods) or methods[0])
    print(f"wrote {args.json} and {png}")
    if args.by_engine:
        _engine_report(args, report, engine_model, seen, engines_of)
    if clip_tags:
        _tag_report(args, report, _first_model(methods), clip_tags)
    failed = report["clips_failed"] + sum(s["failed"] for s in report["summary"].values())
    return 1 if failed else 0


def summary_plot(json_path: Path) -> Path:
    """The plot of the scores, written beside the report."""
    return json_path.with_suffix(".png")


def engine_plot(json_path: Path) -> Path:
    """The per-engine plot (``--by-engine``), written beside the report."""
    return json_path.with_name(json_path.stem + "-engines.png")


def tag_plot(json_path: Path) -> Path:
    """The per-tag plot (``--tags``), written beside the report."""
    return json_path.with_name(json_path.stem + "-tags.png")


def _clip_tags(path: Path, sources: list) -> dict:
    """The tags file read and checked against every clip ``--data`` holds."""
    from cli.common import CliError
    from tinysep.metrics.tags import check_tagged_clips, read_clip_tags

    try:
        tags = read_clip_tags(path)
        check_tagged_clips(tags, [s.name for s in sources], path)
    except ValueError as exc:
        raise CliError(f"--tags {exc}") from None
    return tags


def _paired_report(args: argparse.Namespace, report: dict, model: str) -> None:
    """``model`` (the first ``model:PATH``, else the first method) minus every other method,
    clip by clip, with its interval over songs: printed, and in the report under ``paired``."""
    from tinysep.metrics.paired import format_paired_table, paired_rows

    if not model or len(report["methods"]) < 2:
        return
    sources = list(next(iter(report["summary"].values()))["sources"])
    rows = paired_rows(report, model, sources)
    print()
    print(format_paired_table(rows, model, sources))
    _add_to_report(args.json, "paired", {"model": model, "rows": rows})


def _tag_report(args: argparse.Namespace, report: dict, model: str, clip_tags: dict) -> None:
    """Per-tag table, plot and JSON section for ``model`` (the first ``model:PATH``)."""
    from tinysep.metrics.by_engine import by_engine
    from tinysep.metrics.tags import tag_names

    rows = by_engine(report, clip_tags, model, roles=tag_names(clip_tags), status="")
    _write_grouped(args, model, rows, "tag", tag_plot(args.json), "by_tag")


def _check_report_files(args: argparse.Namespace) -> None:
    """Refuse to replace files that an earlier report did not write: an existing ``--json``
    that is not a report of this command, or a picture beside a ``--json`` not yet written."""
    import json

    from cli.common import CliError

    if args.json.is_file():
        try:
            earlier = json.loads(args.json.read_text())
        except (OSError, ValueError):
            earlier = None
        if not (isinstance(earlier, dict) and {"methods", "summary"} <= earlier.keys()):
            raise CliError(f"--json {args.json} exists and is not a report of `tinysep eval`; "
                           "choose another name")
        return
    plots = [summary_plot(args.json)]
    if args.by_engine:
        plots.append(engine_plot(args.json))
    if args.tags is not None:
        plots.append(tag_plot(args.json))
    for plot in plots:
        if plot.exists():
            raise CliError(f"{plot} exists and was not written with {args.json}; the report's "
                           "plot would replace it: choose another --json name")


def _sources(args: argparse.Namespace) -> tuple[list, bool]:
    """The clips ``--data`` names and whether they are mixture files (not a dataset); a
    ``--silence`` source must be one they are scored on, and mixture files need references."""
    from cli.common import CliError
    from tinysep.data.loaders import SPLITS_FILE, detect_dataset, find_clips
    from tinysep.data.sources import parse_sources
    from tinysep.eval_inputs import input_sources, is_input_folder

    try:
        names = parse_sources(getattr(args, "sources", "vocals,accompaniment"))
    except ValueError as exc:
        raise CliError(str(exc)) from None
    silence = getattr(args, "silence", None)
    if silence is not None and silence not in names:
        raise CliError(f"--silence {silence!r}: expected one of the scored sources "
                       f"({', '.join(names)})")
    data = args.data
    if not data.exists():
        raise CliError(f"--data {data}: no such file or folder")
    files = args.dataset == "files" or data.is_file()
    if not files and args.dataset == "auto":
        try:
            detect_dataset(data)
        except ValueError as exc:
            if not is_input_folder(data):
                if (data / SPLITS_FILE).exists():  # a corpus whose splits.json is broken
                    raise CliError(f"--data {data}: {exc}") from None
                raise CliError(f"--data {data}: neither a dataset (MIR-1K, MUSDB18-HQ, a synth "
                               "corpus) nor a folder of mixture files (.wav / .npy)") from None
            files = True
    if files:
        if data.is_file() and args.dataset not in ("auto", "files"):
            raise CliError(f"--data {data} is a file; --dataset {args.dataset} needs a folder")
        if set(names) != {"vocals", "accompaniment"}:
            raise CliError("--sources: mixture files carry vocals and accompaniment references "
                           "only; four stems need a dataset folder (synth corpus or MUSDB18-HQ)")
        found = input_sources(data)
        bare = [s for s in found if not s.references]
        if silence is not None and bare:
            raise CliError(f"--silence {silence}: {bare[0].mixture} has no reference files "
                           "beside it (NAME.vocals.wav, NAME.accompaniment.wav); leaving a "
                           "source out needs the sources apart")
        return found, True
    return find_clips(data, dataset=args.dataset, split=args.split, sources=names), False


def _first_model(methods: list[str]) -> str:
    """The first ``model:PATH`` method, whose rows the per-engine and per-tag tables show;
    "" without one."""
    return next((m for m in methods if m.startswith("model:")), "")


def _engine_model(methods: list[str]) -> tuple[str, dict]:
    """The first ``model:PATH`` method and the engines its folder records it trained and was
    selected on (a deploy bundle: its float model's record); ``("", {})`` without one."""
    from cli.common import CliError
    from tinysep.metrics.by_engine import model_engines

    model = _first_model(methods)
    if not model:
        print("--by-engine: no model:PATH among the methods; per-engine rows show the "
              "classic methods only")
        return "", {}
    try:
        return model, model_engines(model.split(":", 1)[1])
    except ValueError as exc:
        raise CliError(f"--by-engine: {exc}") from None


def _engine_report(args: argparse.Namespace, report: dict, model: str, seen: dict,
                   engines_of: dict) -> None:
    """Per-engine table, plot and JSON section for ``model`` (the first ``model:PATH``)."""
    from tinysep.metrics.by_engine import by_engine

    rows = by_engine(report, engines_of, model, seen)
    _write_grouped(args, model, rows, "engine", engine_plot(args.json), "by_engine")


def _write_grouped(args: argparse.Namespace, model: str, rows: list, what: str, png: Path,
                   section: str) -> None:
    """Print the rows of one grouping (per engine or per tag), plot them to ``png`` and add
    them to the report under ``section``."""
    from tinysep.metrics.by_engine import format_engine_table, plot_engines

    print()
    print(format_engine_table(rows, f"per {what}: {model or 'no model'} vs the best classic "
                                    f"method on the same clips (means in dB; SIR and SAR: the "
                                    f"model's)", what=what))
    plot_engines(rows, png, title=f"{model} per {what}")
    _add_to_report(args.json, section, {"model": model, "rows": rows})
    print(f"wrote {png}")


def _add_to_report(path: Path, section: str, value: dict) -> None:
    """Write ``value`` into the JSON report at ``path`` under ``section``."""
    import json

    from tinysep.jsonfile import write_json_atomic

    full = json.loads(path.read_text())
    full[section] = value
    write_json_atomic(path, full)


def _reusable(path: Path, sources, methods: list[str], level_db: float = 0.0,
              fingerprints: dict[str, str] | None = None, silence: str | None = None) -> dict:
    """The methods (and their per-clip records) an earlier report holds for every clip in
    ``sources``: ``{"methods": [...], "clips": {name: {method: entry}}, "from": path}``.
    The earlier report must have played the clips at the same ``level_db`` with the same
    source left out (``silence``); a model method
    is taken only if the report ran the same files (``fingerprints``, method -> digest)."""
    from cli.common import CliError
    from tinysep.jsonfile import read_json

    try:
        earlier = read_json(Path(path), "an earlier `tinysep eval --json` report")
    except (OSError, ValueError) as exc:
        raise CliError(f"--reuse {exc}") from None
    clips = earlier.get("clips")
    if not isinstance(clips, list) or not all(
        isinstance(c, dict) and isinstance(c.get("name"), str)
        and isinstance(c.get("methods", {}), dict) for c in clips
    ):
        raise CliError(f"--reuse {path}: not a `tinysep eval` report (expected \"clips\": a "
                       "list of objects, each with a \"name\" and a \"methods\" object)")
    records = {c["name"]: c for c in clips if "error" not in c}
    earlier_level = earlier.get("level_db") or 0.0
    if not isinstance(earlier_level, (int, float)) or isinstance(earlier_level, bool):
        raise CliError(f"--reuse {path}: level_db should be a number of dB, got "
                       f"{earlier_level!r}")
    if earlier_level != level_db:
        raise CliError(f"--reuse {path}: its clips were played at {earlier_level:+g} dB, this "
                       f"run plays them at {level_db:+g} dB (--level-db); scores at other "
                       "levels cannot be mixed")
    earlier_silence = earlier.get("silence")
    if earlier_silence != silence:
        def said(name) -> str:
            return "the whole mixtures" if name is None else f"the mixtures less {name!r}"
        raise CliError(f"--reuse {path}: it separated {said(earlier_silence)}, this run "
                       f"separates {said(silence)} (--silence); their scores cannot be mixed")
    names = [s.name for s in sources]
    found = [m for m in methods if all(
        isinstance(entry := records.get(n, {}).get("methods", {}).get(m), dict)
        and "sources" in entry for n in names)]
    earlier_prints = earlier.get("model_fingerprints")
    earlier_prints = earlier_prints if isinstance(earlier_prints, dict) else {}
    changed = [m for m in found if m in (fingerprints or {})
               and earlier_prints.get(m) != fingerprints[m]]
    if changed:
        print(f"scoring {', '.join(changed)} again: {path} "
              + ("ran other files under that name" if all(m in earlier_prints for m in changed)
                 else "does not record which files it ran"))
    found = [m for m in found if m not in changed]
    if not found:
        return {}
    print(f"reusing {', '.join(found)} from {path} ({len(names)} clips)")
    return {"methods": found, "from": str(path),
            "clips": {n: {m: records[n]["methods"][m] for m in found} for n in names}}


def _merge_reused(report: dict, reused: dict, methods: list[str], json_path: Path) -> dict:
    """``report`` with the reused methods' records put back beside the new ones, summaries
    recomputed over all of them, written to ``json_path``."""
    from tinysep.jsonfile import write_json_atomic
    from tinysep.metrics.summary import summarize_methods

    for clip in report["clips"]:
        if "error" not in clip:
            clip.setdefault("methods", {}).update(reused["clips"].get(clip["name"], {}))
    done = [c for c in report["clips"] if "error" not in c]
    report["methods"] = list(methods)
    report["reused"] = {"from": reused["from"], "methods": reused["methods"]}
    report["summary"] = summarize_methods(done, methods)
    write_json_atomic(json_path, report)
    return report
