"""The main job end to end on the embedded default, with no board attached.

Synthesize a small test set, take the shipped ``tiny`` dualgate-tcn (or train one with
``--train``), compare it with the classic baselines, quantize and export an int8 deploy
bundle, start the emulated board (the board agent on a pseudo-terminal), run the
hardware-in-the-loop test over it and print one table: SDR for float, int8 on the host
and int8 on the board per source, the drop, bit-exactness, invoke latency, model bytes
and MACs per hop. Every step is the same code as its own subcommand; the reports land
in ``--out``.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from cli import evaluate, export, hil_run, train
from cli.common import (
    add_command,
    check_output_writable,
    finite_float,
    run_command,
    seed_argument,
)
from firmware_host.bundle.layout import MANIFEST_FILE

# The subcommands the demo chains, by their command-line names.
STEPS = {"train": train, "eval": evaluate, "export": export, "hil": hil_run}
BASELINES = "repet,repet-mfcc,hpss,mix,irm"
TRAIN_SONG_SECONDS = 30.0  # length of the songs --train trains on
OUT_MARKER = ".tinysep-demo"  # the file that marks --out as a folder the demo writes
# what the demo writes into --out (a folder holding only these is an earlier demo's)
OUT_ENTRIES = frozenset({"data", "train-data", "run", "eval.json", "eval.png", "bundle",
                         "export.json", "hil"})


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", type=Path, default=Path("out/demo"),
                        help="folder for the corpus, bundle and reports (default: out/demo)")
    parser.add_argument("--songs", type=int, default=15, help="songs to synthesize (default 15)")
    parser.add_argument("--seconds", type=finite_float, default=20.0,
                        help="seconds per song (default 20)")
    parser.add_argument("--seed", type=seed_argument, default=2026,
                        help="corpus seed (default 2026)")
    parser.add_argument("--model", type=Path, default=None,
                        help="saved Keras model folder (default: the shipped tiny dualgate-tcn)")
    parser.add_argument("--train", action="store_true",
                        help="train the model first instead of taking the shipped one")
    parser.add_argument("--train-minutes", type=finite_float, default=20.0,
                        help="with --train: the training budget in minutes (default 20)")
    parser.add_argument("--train-songs", type=int, default=60,
                        help="with --train: songs in the training corpus (default 60)")
    parser.add_argument("--baselines", default=BASELINES,
                        help=f"methods to compare with (default {BASELINES}; '' for none)")
    parser.add_argument("--quant", default="int8", help="bundle quantization (default int8)")
    parser.add_argument("--max-sdr-drop", type=finite_float, default=0.5,
                        help="HIL threshold: largest SDR drop board vs float (default 0.5 dB)")
    parser.add_argument("--jobs", type=int, default=None, help="evaluation worker processes")


def _step(number: int, total: int, text: str) -> float:
    print(f"\n[{number}/{total}] {text}", flush=True)
    return time.perf_counter()


def _cli(argv: list[str]) -> int:
    """Run one step as ``tinysep ARGV`` would (same parsing, errors and exit status)."""
    name, module = argv[0], STEPS[argv[0]]
    parser = argparse.ArgumentParser(prog="tinysep")
    add_command(parser.add_subparsers(dest="command"), name, module, "")
    return run_command(name, module, parser.parse_args(argv))


def _check_args(args: argparse.Namespace) -> None:
    """Every option checked before the first step, so a bad one costs no synthesis."""
    from cli.common import CliError
    from convert.quantize import QUANT_MODES
    from tinysep.data.synth import MAX_SONG_SECONDS, MAX_SONGS
    from tinysep.methods import parse_methods

    for option, count in (("--songs", args.songs), ("--train-songs", args.train_songs)):
        # 2 songs at least: the test split takes the first, export calibrates on the train split
        if not 2 <= count <= MAX_SONGS:
            raise CliError(f"{option} must be a whole number from 2 to {MAX_SONGS}, got {count}")
    if args.model is not None:
        from tinysep.models.registry import read_config

        if args.train:
            raise CliError("--model and --train exclude each other: --train trains the model "
                           "the demo uses")
        try:
            read_config(args.model)
        except (OSError, ValueError) as exc:
            raise CliError(f"--model: {exc}") from None
    if not 1.0 <= args.seconds <= MAX_SONG_SECONDS:
        raise CliError(f"--seconds must be between 1 and {MAX_SONG_SECONDS:g}, got "
                       f"{args.seconds}")
    if args.baselines.strip():
        try:
            parse_methods(args.baselines)
        except ValueError as exc:
            raise CliError(f"--baselines: {exc}") from None
    if args.train_minutes <= 0:
        raise CliError(f"--train-minutes must be a positive number, got {args.train_minutes}")
    if args.quant not in QUANT_MODES:
        raise CliError(f"--quant must be one of {', '.join(QUANT_MODES)}, got {args.quant!r}")
    if args.max_sdr_drop < 0:
        raise CliError(f"--max-sdr-drop must be a number >= 0, got {args.max_sdr_drop}")
    if args.jobs is not None and args.jobs < 1:
        raise CliError(f"--jobs must be at least 1, got {args.jobs}")


def _claim_out(out: Path) -> None:
    """Make ``out`` the demo's folder: new, empty or written by an earlier demo (it holds
    :data:`OUT_MARKER`, or its report and nothing but :data:`OUT_ENTRIES`); a folder of
    other files is refused, as the demo replaces its bundle and reports."""
    from cli.common import CliError, check_output_folder
    from tinysep.folder_writes import written_by

    if out.exists() and not out.is_dir():
        raise CliError(f"--out {out} exists and is not a folder")
    check_output_folder(out)  # a file among its parents, or a folder nothing is written in
    names = {entry.name for entry in out.iterdir()} if out.is_dir() else set()
    # before the marker existed: the corpus, the eval report and nothing the demo does not write
    earlier = OUT_MARKER in names or ({"data", "eval.json"} <= names <= OUT_ENTRIES
                                      and written_by(out / "eval.json", "eval"))
    if names and not earlier:
        raise CliError(f"--out {out} holds files an earlier demo did not write; choose a new "
                       "or empty folder")
    check_output_writable(out)
    out.mkdir(parents=True, exist_ok=True)
    (out / OUT_MARKER).write_text("written by `tinysep demo`: its steps may replace what is "
                                  "in this folder\n")


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError
    from tinysep.data.synth import write_corpus
    from tinysep.folder_writes import check_apart_from
    from tinysep.pretrained import default_model_path

    _check_args(args)
    total = 5 + int(args.train)
    out: Path = args.out
    shipped = None if args.train or args.model is not None else default_model_path()
    check_apart_from(out, {"--model folder": args.model, "shipped model folder": shipped})
    _claim_out(out)
    data_dir = out / "data"
    step = 1
    _step(step, total, f"synthesizing {args.songs} songs x {args.seconds:g} s into {data_dir}")
    write_corpus(data_dir, songs=args.songs, seconds=args.seconds, seed=args.seed)

    model = args.model
    if args.train:
        step += 1
        train_data = out / "train-data"
        run_dir = out / "run"
        _step(step, total, f"training a tiny dualgate-tcn for {args.train_minutes:g} min "
              f"on {args.train_songs} songs")
        write_corpus(train_data, songs=args.train_songs, seconds=TRAIN_SONG_SECONDS,
                     seed=args.seed + 1)
        code = _cli(["train", "--model", "dualgate-tcn", "--preset", "tiny",
                     "--data", str(train_data), "--out", str(run_dir),
                     "--max-minutes", str(args.train_minutes)]
                    + (["--resume"] if (run_dir / "state.json").is_file() else []))
        if code:
            raise CliError(f"training failed (exit {code}); see {run_dir}")
        model = run_dir
    elif model is None:
        model = default_model_path()
    print(f"model: {model}")

    step += 1
    _step(step, total, "float model vs classic baselines on the test split (BSS-eval)")
    methods = ",".join([f"model:{model}"] + [m for m in args.baselines.split(",") if m])
    eval_argv = ["eval", "--method", methods, "--data", str(data_dir),
                 "--json", str(out / "eval.json")]
    if args.jobs:
        eval_argv += ["--jobs", str(args.jobs)]
    if _cli(eval_argv):
        raise CliError(f"evaluation failed; see {out / 'eval.json'}")

    step += 1
    bundle = out / "bundle"
    _step(step, total, f"{args.quant} export of the streaming model to {bundle}")
    code = _cli(["export", str(model), "--out", str(bundle), "--force", "--quant", args.quant,
                 "--calibration", str(data_dir), "--json", str(out / "export.json")])
    if code:
        raise CliError(f"export failed (exit {code})")

    step += 1
    report_dir = out / "hil"
    _step(step, total, "hardware-in-the-loop test on the emulated board (agent on a pty)")
    hil_code = _cli(["hil", "--emulate", "--bundle", str(bundle), "--float", str(model),
                     "--data", str(data_dir), "--max-sdr-drop", str(args.max_sdr_drop),
                     "--report", str(report_dir)])

    step += 1
    _step(step, total, "summary")
    print(summary_table(bundle, report_dir / "hil.json"))
    print(f"\nreports: {out / 'eval.json'} (+ .png), {report_dir}/hil.md, "
          f"{report_dir}/hil.junit.xml, {report_dir}/figures/")
    return hil_code


def summary_table(bundle: Path, hil_json: Path) -> str:
    """The demo's closing table from the bundle manifest and the HIL report."""
    from convert.sizes import size_text

    manifest = json.loads((bundle / MANIFEST_FILE).read_text())
    report = json.loads(hil_json.read_text())
    summary = report["summary"]
    scores, drop = summary["scores"], summary["drop"]
    lines = [
        f"{'source':<14} {'SDR float':>10} {'SDR int8 host':>14} {'SDR int8 board':>15} "
        f"{'drop board':>11}",
    ]
    for source in manifest["sources"]:
        lines.append(
            f"{source:<14} {scores['float'][source]['sdr']:>10.2f} "
            f"{scores['int8_host'][source]['sdr']:>14.2f} "
            f"{scores['int8_board'][source]['sdr']:>15.2f} "
            f"{drop['int8_board'][source]:>11.3f}"
        )
    lsb = summary["lsb"]
    invoke = summary["invoke_us"]
    model = manifest["model"]
    lines += [
        "",
        f"clips {summary['clips_ok']}/{summary['clips']}, {summary['audio_seconds']:.1f} s of "
        f"audio; HIL {'PASSED' if report['passed'] else 'FAILED'}",
        f"board vs host int8: max {lsb['max_abs']} LSB, {lsb['differing_samples']} of "
        f"{lsb['samples']} samples differ"
        + (" (bit-exact)" if lsb["max_abs"] == 0 else ""),
        f"on-board invoke time per chunk: p50 {invoke['p50']:.0f} us, p99 {invoke['p99']:.0f} us;"
        f" streaming {summary['realtime_factor']:.1f}x real time, "
        f"{summary['link']['resends']} frames resent",
        f"model: {model['name']} {model['preset']} {model['quantization']}, "
        f"{size_text(model['bytes'])}, {model['macs_per_hop']:,} MACs per hop, "
        f"arena estimate {size_text(manifest.get('arena_bytes_estimate', 0))}"
        + _measured_arena(manifest.get("arena_tflite_micro")),
        "drop = SDR float - SDR int8 on the board (positive: the board loses SDR)",
    ]
    return "\n".join(lines)


def _measured_arena(measured: dict | None) -> str:
    """", TFLite Micro arena N KiB (N B)" when the export measured it."""
    from convert.sizes import size_text

    if not measured or measured.get("bytes") is None:
        return ""
    return f", TFLite Micro arena {size_text(measured['bytes'])} (64-bit host)"
