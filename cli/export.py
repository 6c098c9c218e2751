"""Export a trained separator as a deploy bundle: streaming int8 TFLite + manifest + C array.

Writes BUNDLE/ with model.tflite (K frames + states in, masks + states out, one subgraph,
builtin ops), manifest.json (docs/bundle.md), model_data.cc/.h (TFLite Micro),
micro_ops.txt (the op resolver), edgetpu_report.json and calibration.json. The folder
appears only when complete; an existing bundle is replaced only with --force. Prints
sizes, the arena estimate, MACs per hop and the host int8 time per hop (one thread).
"""

from __future__ import annotations

import argparse
from pathlib import Path

from cli.common import seed_argument


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from calibration.representative import DEFAULT_FRAMES, DEFAULT_GAINS_DB, format_gains
    from convert.quantize import QUANT_MODES

    parser.add_argument("model", type=Path, metavar="MODEL",
                        help="saved model folder (config.json + weights)")
    parser.add_argument("--out", required=True, type=Path, metavar="BUNDLE",
                        help="bundle folder to write")
    parser.add_argument("--quant", default="int8", choices=tuple(QUANT_MODES),
                        help="quantization (default int8, the deploy form)")
    parser.add_argument("--frames-per-invoke", type=int, default=1, metavar="K",
                        help="STFT frames (8 ms hops) per model invoke (default 1)")
    parser.add_argument("--calibration", type=Path, metavar="DATA",
                        help="dataset folder whose audio calibrates int8/int16x8 (e.g. the "
                             "training corpus)")
    parser.add_argument("--calibration-split", default="train",
                        help="split of --calibration to draw from (default train)")
    parser.add_argument("--calibration-frames", type=int, default=DEFAULT_FRAMES, metavar="N",
                        help=f"frames in the representative dataset (default {DEFAULT_FRAMES}), "
                             "shared out over the calibration gains")
    parser.add_argument("--calibration-gains", default=format_gains(DEFAULT_GAINS_DB),
                        metavar="DB[,DB]",
                        help="levels (dB) the calibration segments are replayed at, in turn "
                             f"(default {format_gains(DEFAULT_GAINS_DB)})")
    parser.add_argument("--keep-float", default="", metavar="LAYER[,LAYER]",
                        help="Keras layers to leave in float (debugging; not full-integer; "
                             "default none)")
    parser.add_argument("--per-channel", action="store_true",
                        help="per-channel weight scales (default per-tensor: as accurate here, a "
                             "smaller file, and no per-channel buffers for TFLite Micro's "
                             "FULLY_CONNECTED)")
    parser.add_argument("--keep-tensor-names", action="store_true",
                        help="keep internal tensor names in model.tflite (bigger file)")
    parser.add_argument("--micro-compact", action="store_true",
                        help="C array with per-channel zero points compacted (TFLite Micro "
                             "only; smaller flash)")
    parser.add_argument("--no-edgetpu-compiler", action="store_true",
                        help="do not run edgetpu_compiler even if it is on PATH")
    parser.add_argument("--symbol", default="g_tinysep_model",
                        help="C symbol prefix of the model array (default g_tinysep_model)")
    parser.add_argument("--seed", type=seed_argument, default=0,
                        help="calibration sampling seed (default 0)")
    parser.add_argument("--force", action="store_true", help="replace an existing bundle")
    parser.add_argument("--json", type=Path, metavar="OUT.json",
                        help="also write the export summary as JSON")
    parser.add_argument("--no-progress", action="store_true", help="hide progress bars")


def _fits(value: int, budget: int) -> str:
    return "ok" if value <= budget else "OVER"


def _measured_arena(measured: dict | None) -> str:
    from convert.export import BUDGET_ARENA_BYTES
    from convert.sizes import budget_text, kib, size_text

    if measured is None:
        return "not measured (the tflite-micro package is not installed)"
    if measured.get("bytes") is None:
        return f"TFLite Micro failed: {measured.get('error')}"
    return (f"{size_text(measured['bytes'])} needed ({kib(measured['used'])} kept) by TFLite "
            f"Micro {measured['tflite_micro']} on this 64-bit host (an upper bound for a 32-bit "
            f"MCU); {budget_text(measured['bytes'], BUDGET_ARENA_BYTES)}")


def format_summary(summary: dict) -> str:
    """Human-readable summary of :func:`convert.export.export_bundle`'s result."""
    from convert.export import BUDGET_ARENA_BYTES, BUDGET_MACS_PER_HOP, BUDGET_MODEL_BYTES
    from convert.sizes import budget_text, kib, size_text

    arena = summary["arena_estimate"]
    latency = summary.get("host_latency")
    lines = [
        ("bundle", summary["bundle"]),
        ("quantization", f"{summary['quantization']}, {summary['frames_per_invoke']} frame(s) "
                         "per invoke"),
        ("model", f"{size_text(summary['model_bytes'])}: weights {kib(summary['weight_bytes'])}"
                  f", C array {kib(summary['c_array_bytes'])}; "
                  f"{budget_text(summary['c_array_bytes'], BUDGET_MODEL_BYTES)}"),
        ("arena", f"{size_text(arena['bytes'])} estimate (activations {arena['activations']:,}"
                  f" + persistent {arena['persistent']:,} + scratch {arena['scratch']:,} B); "
                  f"{budget_text(arena['bytes'], BUDGET_ARENA_BYTES)}"),
        ("arena TFLM", _measured_arena(summary.get("arena_tflite_micro"))),
        ("MACs per hop", f"{summary['macs_per_hop']:,}; budget 1 M "
                         f"{_fits(summary['macs_per_hop'], BUDGET_MACS_PER_HOP)}"),
        ("states", f"{summary['states']} ({summary['state_bytes']:,} B), "
                   f"{summary['states_copied']} copied byte for byte"),
    ]
    if latency:
        lines.append(("host time", f"{latency['invoke_us_per_hop']:.0f} us per hop (invoke, one "
                                   f"thread) = {latency['realtime_factor']:.0f}x real time"))
    unsupported = summary["micro_unsupported_ops"]
    lines.append(("TFLite Micro", ", ".join(summary["micro_ops"])
                  + (f"; NO kernel: {', '.join(unsupported)}" if unsupported else "")))
    compiler = summary["edgetpu"]["compiler"]
    ran = (f"compiler: {compiler.get('ops_on_edgetpu')} ops on the TPU"
           if compiler.get("ran") else compiler.get("reason", ""))
    verdict = "compatible" if summary["edgetpu"]["compatible"] else "NOT compatible"
    lines.append(("Edge TPU", f"{verdict} ({ran})"))
    cal = summary.get("calibration")
    if cal:
        frames = cal["coverage"]["frames"]
        gains = cal["coverage"].get("gains_db")
        lines.append(("calibration", f"{cal['frames']} frames: loud {frames['loud']}, quiet "
                                     f"{frames['quiet']}, silent {frames['silent']}"
                      + (f" (gains {','.join(f'{g:g}' for g in gains)} dB)" if gains else "")
                      + "".join(f"; warning: {w}" for w in cal["coverage"].get("warnings", []))))
    lines.append(("time", f"{summary['seconds']:.1f} s"))
    width = max(len(k) for k, _ in lines)
    return "\n".join(f"{k.ljust(width)}  {v}" for k, v in lines)


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_file, check_output_folder
    from convert.export import MAX_FRAMES_PER_INVOKE
    from tinysep.folder_writes import check_apart_from
    from tinysep.jsonfile import write_json_atomic

    check_output_folder(args.out)
    from convert.micro import check_c_symbol

    try:
        check_c_symbol(args.symbol)
    except ValueError as exc:
        raise CliError(f"--symbol: {exc}") from None

    if not 1 <= args.frames_per_invoke <= MAX_FRAMES_PER_INVOKE:
        raise CliError(f"--frames-per-invoke must be from 1 to {MAX_FRAMES_PER_INVOKE}, got "
                       f"{args.frames_per_invoke}")
    if args.calibration_frames < 1:
        raise CliError(f"--calibration-frames must be at least 1, got {args.calibration_frames}")
    if args.quant in ("int8", "int16x8") and args.calibration is None:
        raise CliError(f"--quant {args.quant} needs --calibration DATA (a dataset folder)")
    if args.json is not None:
        check_output_file(args.json, "--json", command="export")
        if args.json.resolve().is_relative_to(args.out.resolve()):
            raise CliError(f"--json {args.json} lies inside the bundle folder --out {args.out}, "
                           "whose files the export owns; write the summary elsewhere")
    from calibration.representative import parse_gains

    try:
        gains = parse_gains(args.calibration_gains)
    except ValueError as exc:
        raise CliError(f"--calibration-gains: {exc}") from None

    from convert.export import check_destination, export_bundle
    from convert.runtime import measure_latency
    from tinysep.models import read_config

    read_config(args.model)  # not a model folder: fail before any heavy work
    check_apart_from(args.out, {"MODEL folder": args.model,
                                "--calibration folder": args.calibration})
    check_destination(args.out, args.force)
    summary = export_bundle(
        args.model,
        args.out,
        quant=args.quant,
        frames_per_invoke=args.frames_per_invoke,
        calibration=args.calibration,
        calibration_frames=args.calibration_frames,
        calibration_split=args.calibration_split,
        calibration_gains=gains,
        force=args.force,
        keep_float=[n.strip() for n in args.keep_float.split(",") if n.strip()],
        per_channel=args.per_channel,
        keep_tensor_names=args.keep_tensor_names,
        micro_compact=args.micro_compact,
        edgetpu_compile=not args.no_edgetpu_compiler,
        symbol=args.symbol,
        seed=args.seed,
        progress=not args.no_progress,
    )
    summary["host_latency"] = measure_latency(args.out)
    print(format_summary(summary))
    if args.json is not None:
        write_json_atomic(args.json, {"command": "export", **summary})
        print(f"wrote {args.json}")
    return 0
