"""Quantize a trained separator and measure what it costs: bytes, and SDR against float.

Converts the streaming model (``--quant int8``, ``int16x8``, ``dynamic``, ``float16``,
``float32``) after optional quantization-aware training (``--qat-steps N``, with
``--preserve-sparsity`` for a pruned model), and scores the float and the converted model
on held-out clips (``--eval-clips``). ``--layer-errors`` adds the per-layer report of
TFLite's quantization debugger (worst layers named); ``--keep-float`` leaves named layers
in float to see what they cost; ``--study-sizes 16,64,256`` runs the calibration-size
study and ``--study-levels "0;0,-30"`` the calibration-level study (int8 against float
with the clips played back at each ``--study-playback`` level). ``--calibration-gains``
sets the levels the representative set replays its segments at. Writes OUT/model.tflite,
OUT/quantize.json and the optional reports and plots.
"""

from __future__ import annotations

import argparse
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

from cli.common import path_argument, positive_float, seed_argument, whole_number
from cli.prune import min_chunk_frames, require_clips
from convert.layer_errors import LAYER_ERROR_FILES
from convert.qat import QAT_TARGETS
from firmware_host.bundle.layout import MODEL_FILE
from tinysep.training.config import MAX_BATCH_SIZE

REPORT_FILE = "quantize.json"
QAT_MODEL = "qat_model"
STUDY_FILES = ("calibration_study.json", "calibration_study.png")
LEVEL_FILES = ("calibration_levels.json", "calibration_levels.md", "calibration_levels.png")
# every entry a quantize writes into its --out folder
QUANTIZE_FILES = frozenset({MODEL_FILE, REPORT_FILE, QAT_MODEL, *STUDY_FILES, *LEVEL_FILES,
                            *LAYER_ERROR_FILES})


def _comma_list(parse):
    """An argument type: comma-separated values, each read by the argument type ``parse``
    (empty items skipped), so that a bad item is refused at parsing naming the option."""

    def parse_list(text: str) -> list:
        try:
            return [parse(item.strip()) for item in text.split(",") if item.strip()]
        except argparse.ArgumentTypeError as exc:
            raise argparse.ArgumentTypeError(f"in {text!r}: {exc}") from None

    return parse_list


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calibration.representative import DEFAULT_FRAMES, DEFAULT_GAINS_DB, format_gains
    from convert.export import MAX_FRAMES_PER_INVOKE
    from convert.quantize import QUANT_MODES
    from tinysep.data.loaders import SPLITS

    parser.add_argument("model", type=path_argument, metavar="MODEL", help="saved model folder")
    parser.add_argument("--data", required=True, type=path_argument,
                        help="dataset folder: train split calibrates (and trains QAT), the "
                             "--eval-split scores")
    parser.add_argument("--out", required=True, type=path_argument,
                        help="output folder (new, empty, or an earlier quantize output, which "
                             "is replaced)")
    parser.add_argument("--quant", default="int8", choices=tuple(QUANT_MODES),
                        help="quantization (default int8, the deploy form)")
    parser.add_argument("--mode", dest="quant", choices=tuple(QUANT_MODES),
                        default=argparse.SUPPRESS, help=argparse.SUPPRESS)  # the old name
    parser.add_argument("--frames-per-invoke", type=whole_number(1, MAX_FRAMES_PER_INVOKE),
                        default=1, metavar="K",
                        help="STFT frames (8 ms hops) per model invoke, at most "
                             f"{MAX_FRAMES_PER_INVOKE} (default 1)")
    parser.add_argument("--calibration-frames", type=whole_number(1), default=DEFAULT_FRAMES,
                        metavar="N",
                        help=f"frames in the representative dataset (default {DEFAULT_FRAMES})")
    parser.add_argument("--calibration-gains", default=format_gains(DEFAULT_GAINS_DB),
                        metavar="DB[,DB]",
                        help="levels (dB) the calibration segments are replayed at, in turn "
                             f"(default {format_gains(DEFAULT_GAINS_DB)})")
    parser.add_argument("--qat-steps", type=whole_number(0), default=0, metavar="N",
                        help="quantization-aware fine-tuning batches before converting")
    parser.add_argument("--qat-learning-rate", type=positive_float, default=1e-5,
                        help="QAT learning rate (default 1e-5: a trained model needs only a "
                             "nudge); the loss is the model's own (run.json of tinysep train, "
                             "or training.json of a shipped model, else L1)")
    parser.add_argument("--qat-batch-size", type=whole_number(1, MAX_BATCH_SIZE), default=8,
                        help="QAT chunks per batch (default 8)")
    parser.add_argument("--qat-target", choices=QAT_TARGETS, default="stems",
                        help="what QAT learns to give: the clips' true sources (stems, the "
                             "default) or the float model's own separation of them (float: "
                             "tunes for the int8 rounding and keeps the model's behaviour)")
    parser.add_argument("--qat-chunk-frames", type=whole_number(min_chunk_frames()), default=250,
                        help="STFT frames per QAT training chunk (default 250 = 2 s, the "
                             "shipped model's training chunk; short chunks move the float "
                             "model with an SDR loss)")
    parser.add_argument("--preserve-sparsity", action="store_true",
                        help="QAT keeps pruned (zero) weights at zero")
    parser.add_argument("--per-channel", action="store_true",
                        help="per-channel weight scales (default per-tensor: as accurate here, a "
                             "smaller file, and no per-channel buffers for TFLite Micro's "
                             "FULLY_CONNECTED)")
    parser.add_argument("--keep-float", default="", metavar="LAYER[,LAYER]",
                        help="Keras layers left in float (int8 only; default none)")
    parser.add_argument("--eval-split", default="test", choices=SPLITS,
                        help="split of --data the SDR is measured on (default test)")
    parser.add_argument("--eval-clips", type=whole_number(0), default=8, metavar="N",
                        help="held-out clips scored (0: skip scoring; default 8)")
    parser.add_argument("--layer-errors", action="store_true",
                        help="per-layer error report from the quantization debugger")
    parser.add_argument("--study-sizes", type=_comma_list(whole_number(1)), default="",
                        metavar="N,N,...",
                        help="calibration-size study over these frame counts (default: no study)")
    parser.add_argument("--study-levels", default="", metavar="DB[,DB][;DB[,DB]]",
                        help="calibration-level study over these sets of calibration gains, "
                             "';'-separated (e.g. \"0;0,-30;0,-20,-40\")")
    parser.add_argument("--study-playback", default="0,-30", metavar="DB[,DB]",
                        help="playback levels (dB) of the held-out clips in the level study "
                             "(default 0,-30); its clips are spread over the --eval-split")
    parser.add_argument("--study-seeds", type=whole_number(1), default=3,
                        help="calibration draws per study cell (default 3)")
    parser.add_argument("--max-clips", type=whole_number(1), default=64,
                        help="training clips loaded (calibration, QAT; default 64)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="calibration sampling seed (default 0)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")


@dataclass(frozen=True)
class Checked:
    """The options that need more than argparse, read and checked before any work."""

    gains: tuple[float, ...]
    level_sets: list[tuple[float, ...]]
    playback: tuple[float, ...]
    keep_float: list[str]

    def scores(self, args: argparse.Namespace) -> bool:
        """Whether the run reads clips of the --eval-split (scoring or a study)."""
        return bool(args.eval_clips or args.study_sizes or self.level_sets)


def _check_options(args: argparse.Namespace) -> Checked:
    """Refuse option values and combinations that cannot work, naming the option."""
    from calibration.representative import parse_gains
    from cli.common import CliError

    if args.preserve_sparsity and not args.qat_steps:
        raise CliError("--preserve-sparsity applies to QAT: give --qat-steps N")
    if args.qat_target != "stems" and not args.qat_steps:
        raise CliError("--qat-target applies to QAT: give --qat-steps N")
    try:
        gains = parse_gains(args.calibration_gains)
        level_sets = [parse_gains(part) for part in args.study_levels.split(";") if part.strip()]
        playback = parse_gains(args.study_playback) if level_sets else ()
    except ValueError as exc:
        raise CliError(f"--calibration-gains / --study-levels / --study-playback: {exc}") from None
    keep = [n.strip() for n in args.keep_float.split(",") if n.strip()]
    if keep and args.quant != "int8":
        raise CliError(f"--keep-float applies to --quant int8 only, not {args.quant}")
    return Checked(gains, level_sets, playback, keep)


def check_out(out: Path, model: Path) -> None:
    """Refuse an --out that is MODEL (or inside or around it), a file, or a folder holding
    anything but an earlier quantize's output (marked by its quantize.json)."""
    from tinysep.folder_writes import check_own_output

    check_own_output(out, model, QUANTIZE_FILES, "quantize", marker=REPORT_FILE,
                     marker_command="quantize")


def _check_inputs(args: argparse.Namespace, checked: Checked) -> None:
    """MODEL is a saved model and --data holds train clips and, when the run scores, clips
    of the --eval-split: said before any work."""
    from cli.common import CliError
    from tinysep.data.loaders import find_clips
    from tinysep.models import read_config
    from tinysep.models.registry import model_sources

    config = read_config(args.model)
    require_clips(args.data, config, "train")
    if checked.scores(args) and not find_clips(args.data, split=args.eval_split,
                                               sources=model_sources(config)):
        raise CliError(f"--eval-split {args.eval_split}: no clips in that split of --data "
                       f"{args.data}")


def run(args: argparse.Namespace) -> int:
    from tinysep.folder_writes import check_apart_from, staged_folder

    checked = _check_options(args)
    check_apart_from(args.out, {"--data folder": args.data})
    check_out(args.out, args.model)
    _check_inputs(args, checked)
    with staged_folder(args.out, QUANTIZE_FILES) as folder:
        _quantize(args, checked, folder)
    print(f"wrote {args.out / REPORT_FILE}")
    return 0


def _quantize(args: argparse.Namespace, checked: Checked, folder: Path) -> None:
    """Convert, score and study as the options say, writing into ``folder`` (renamed to
    --out once complete; the messages name the files as they will be there)."""
    from calibration.representative import (
        build_representative_set,
        format_coverage,
        load_calibration_clips,
    )
    from convert.quantize import FULL_INTEGER, check_keep_float, quantize_stream
    from convert.sizes import deploy_form, size_text
    from tinysep.models import load_model, make_streaming_model, save_model

    progress = not args.no_progress
    model = original = load_model(args.model)
    if checked.keep_float:  # a misspelt layer fails here, not after calibration and QAT
        check_keep_float(make_streaming_model(model, args.frames_per_invoke), checked.keep_float)
    train = load_calibration_clips(args.data, "train", max_clips=args.max_clips,
                                   seed=args.seed, progress=progress)
    report: dict = {"command": "quantize", "model": str(args.model), "mode": args.quant,
                    "frames_per_invoke": args.frames_per_invoke}
    if args.qat_steps:
        from convert.finetune import training_loss_of
        from convert.qat import qat_fine_tune

        loss, sdr_weight = training_loss_of(args.model)
        model, report["qat"] = qat_fine_tune(model, train, args.qat_steps,
                                             preserve_sparsity=args.preserve_sparsity,
                                             loss=loss, sdr_weight=sdr_weight,
                                             learning_rate=args.qat_learning_rate,
                                             batch_size=args.qat_batch_size,
                                             chunk_frames=args.qat_chunk_frames,
                                             target=args.qat_target,
                                             per_channel=args.per_channel,
                                             seed=args.seed, progress=progress)
        from convert.finetune import fine_tuned_record
        from tinysep.jsonfile import write_json_atomic
        from tinysep.model_record import TRAINING_FILE

        save_model(model, folder / QAT_MODEL)
        record = fine_tuned_record(args.model, args.data, qat_command(args), "qat_from")
        record["qat"] = report["qat"]
        write_json_atomic(folder / QAT_MODEL / TRAINING_FILE, record, indent=1)
        print(f"QAT: {args.qat_steps} steps, loss {report['qat']['loss_first']:.4f} -> "
              f"{report['qat']['loss_last']:.4f}; weights in {args.out / QAT_MODEL}")
    stream = make_streaming_model(model, args.frames_per_invoke)
    rep = None
    if args.quant in FULL_INTEGER or args.layer_errors:
        rep = build_representative_set(stream, train, args.calibration_frames, seed=args.seed,
                                       gains_db=checked.gains, progress=progress)
        print(format_coverage(rep))
        report["calibration"] = rep.summary()
    keep = checked.keep_float
    quantized = quantize_stream(stream, args.quant, rep, keep_float=keep,
                                per_channel=args.per_channel)
    deployed = deploy_form(quantized.content)  # the bytes a bundle ships, as export sizes it
    (folder / MODEL_FILE).write_bytes(deployed)
    report.update({"bytes": len(deployed), "keep_float": keep,
                   "per_channel": args.per_channel,
                   "states_tied": len(quantized.tied_states)})
    print(f"{args.quant}: {size_text(len(deployed))} -> {args.out / MODEL_FILE} (internal "
          "tensor names stripped, as in a bundle)")
    if args.eval_clips:
        _score(args, report, model, original, quantized, stream, progress)
    if args.layer_errors:
        from convert.layer_errors import (
            format_layer_report,
            layer_error_report,
            write_layer_report,
        )

        layers = layer_error_report(stream, rep, keep_float=keep)
        write_layer_report(layers, folder)
        report["worst_layers"] = layers["worst_layers"]
        print(format_layer_report(layers))
    if args.study_sizes:
        report["calibration_study"] = _size_study(args, model, train, folder, progress)
    if checked.level_sets:
        report["calibration_levels"] = _level_study(args, model, train, checked, folder,
                                                    progress)
    (folder / REPORT_FILE).write_text(json.dumps(report, indent=1) + "\n")


def qat_command(args: argparse.Namespace) -> str:
    """The command that trains this model aware of int8 again (the options that shape the
    weights; the reports it also asked for are left out)."""
    words = ["tinysep", "quantize", str(args.model), "--data", str(args.data), "--out",
             str(args.out), "--qat-steps", str(args.qat_steps), "--qat-learning-rate",
             str(args.qat_learning_rate), "--qat-batch-size", str(args.qat_batch_size),
             "--qat-chunk-frames", str(args.qat_chunk_frames), "--qat-target",
             args.qat_target, "--max-clips",
             str(args.max_clips), "--seed", str(args.seed)]
    if args.preserve_sparsity:
        words.append("--preserve-sparsity")
    if args.per_channel:
        words.append("--per-channel")
    return shlex.join(words)


def _eval_sources(args: argparse.Namespace, model) -> list:
    """The clips of the --eval-split, in order (checked to exist before the work began)."""
    from convert.finetune import sources_of
    from tinysep.data.loaders import find_clips

    return find_clips(args.data, split=args.eval_split, sources=sources_of(model))


def _score(args, report: dict, model, original, quantized, stream, progress: bool) -> None:
    """SDR of the float and the converted model on --eval-clips clips, into ``report``."""
    from convert.quality import float_records, quantized_records, sdr_delta
    from tinysep.data.loaders import load_clips

    clips = load_clips(_eval_sources(args, model)[: args.eval_clips])
    converted = quantized_records(quantized, stream, clips, progress)
    delta = sdr_delta(float_records(model, clips, progress), converted)
    report["sdr"] = delta
    for source, row in delta.items():
        print(f"{source:<14} SDR float {row['sdr_reference']:6.2f} dB, {args.quant} "
              f"{row['sdr']:6.2f} dB, drop {row['drop_db']:+.3f} dB (float - {args.quant}; "
              f"{row['clips']} clips)")
    if model is not original:  # QAT: also against the model before fine-tuning
        report["sdr_vs_original"] = sdr_delta(float_records(original, clips, progress),
                                              converted)
        for source, row in report["sdr_vs_original"].items():
            print(f"{source:<14} vs the model before QAT ({row['sdr_reference']:6.2f} dB): "
                  f"drop {row['drop_db']:+.3f} dB")


def _size_study(args, model, train, folder: Path, progress: bool) -> list[dict]:
    """Run the calibration-size study; write calibration_study.json / .png."""
    from convert.calibration_study import calibration_size_study, plot_study
    from tinysep.data.loaders import load_clips

    eval_clips = load_clips(_eval_sources(args, model)[: max(1, args.eval_clips)])
    study = calibration_size_study(model, train, eval_clips, args.study_sizes,
                                   range(args.study_seeds), args.frames_per_invoke,
                                   progress)
    data_file, plot_file = STUDY_FILES
    (folder / data_file).write_text(json.dumps(study, indent=1) + "\n")
    plot_study(study, folder / plot_file)
    for row in study["summary"]:
        print(f"calibration {row['frames']:>6} frames: " + ", ".join(
            f"{s} drop {row[s]['drop_db_mean']:+.3f} +- {row[s]['drop_db_std']:.3f} dB"
            for s in study["sources"] if row[s]["drop_db_mean"] is not None))
    return study["summary"]


def _spread(items: list, count: int) -> list:
    """``count`` items evenly spread over ``items`` (all of them when there are fewer)."""
    import numpy as np

    if count >= len(items):
        return list(items)
    return [items[i] for i in sorted({int(i) for i in np.linspace(0, len(items) - 1, count)})]


def _level_study(args, model, train, checked: Checked, folder: Path,
                 progress: bool) -> list[dict]:
    """Run the calibration-level study; write calibration_levels.json / .md / .png."""
    from convert.calibration_study import (
        calibration_level_study,
        format_level_table,
        plot_level_study,
    )
    from tinysep.data.loaders import load_clips

    sources = _spread(_eval_sources(args, model), max(1, args.eval_clips))
    study = calibration_level_study(model, train, load_clips(sources, progress=progress),
                                    checked.level_sets, checked.playback,
                                    args.calibration_frames,
                                    range(args.seed, args.seed + args.study_seeds),
                                    args.frames_per_invoke, progress)
    data_file, table_file, plot_file = LEVEL_FILES
    (folder / data_file).write_text(json.dumps(study, indent=1) + "\n")
    table = format_level_table(study)
    (folder / table_file).write_text(table)
    plot_level_study(study, folder / plot_file)
    print(table, end="")
    print(f"wrote {args.out / data_file} (.md, .png)")
    return study["summary"]
