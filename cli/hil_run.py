"""Hardware-in-the-loop accuracy test: stream every clip through a board and compare it with
float and int8 on the host.

Reports per clip and in summary SDR / SIR / SAR for float (Keras, host), int8 (TFLite, host)
and int8 on the board; the drop against float; the board vs host int8 difference in LSB (a
CPU board running the same runtime must be bit-exact) and a tensor-mode check of raw int8
outputs; on-board invoke time p50 / p99; link throughput, real-time factor and resent frames.
Writes hil.json, hil.junit.xml, hil.md and figures/ into --report after every clip (and the
emulated agent's agent.log). An earlier HIL report there (its hil.json says so) is replaced
whole once the board is reached; a folder that holds anything else, or that is, holds or lies
inside the bundle or the float model, is refused.

``--data`` is a dataset folder (MIR-1K, MUSDB18-HQ, a ``tinysep synth`` corpus) or your own
audio, read as ``tinysep eval`` reads it: one mixture file or a folder of them, ``.wav`` (any
rate and channel count) or ``.npy`` (1-D, 16 kHz), references beside as ``NAME.vocals.wav``
and ``NAME.accompaniment.wav`` when present. A clip without references is streamed and its
board output checked against the host int8 output and compared with the float output, but it
gets no SDR (the report says ``n/a (no reference)``). ``--save-audio DIR`` keeps, per clip,
``DIR/CLIP/mixture.wav``, ``reference/``, ``float/``, ``int8-host/`` and ``board/``.

Requests are sized to the limits the board announces (max message, window) and to the
capabilities its INFO lists; a float model that is not the bundle's recorded source is refused
(``--allow-float-mismatch`` compares anyway and the report says so in bold).

Exit status: 0 passed; 1 a check failed (or the harness itself failed); 2 bad arguments, or
inputs that do not belong together (the report's status is ``refused``); 3 the board could
not run the test or the link failed and the run stopped (no answer, another model or no model
on the board, a protocol violation, more restarts or stalls than the recovery budget);
130 interrupted.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

from cli.common import (
    baud_argument,
    check_output_folder,
    finite_float,
    nonnegative_float,
    whole_number,
)
from firmware_host.board.runtime import ALL_RUNTIMES
from firmware_host.transport import DEFAULT_BAUD
from hil.emulator import BOARD_PROFILES

BOARD_FAULT_EXIT = 3  # the board or the link failed and the run stopped


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from cli.common import add_audio_input_arguments
    from hil.emulated_arm import BOARD_ARCHES

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="board's serial device or pyserial URL "
                       "(/dev/ttyUSB0, socket://host:port, rfc2217://host:port)")
    where.add_argument("--emulate", action="store_true",
                       help="start an emulated board: the agent on a pseudo-terminal")
    parser.add_argument("--bundle", required=True, type=Path, help="deploy bundle folder")
    parser.add_argument("--float", dest="float_model", required=True, type=Path, metavar="MODEL",
                        help="the float Keras model folder the bundle was made from")
    add_audio_input_arguments(parser)
    parser.add_argument("--split", default=None,
                        help="split of a dataset folder to stream (default: test)")
    parser.add_argument("--max-clips", type=int, default=None, metavar="N",
                        help="stream only the first N clips")
    parser.add_argument("--max-sdr-drop", type=finite_float, default=0.5, metavar="DB",
                        help="largest mean SDR drop of the board vs float per source (default 0.5)")
    parser.add_argument("--max-sdr-gain", type=finite_float, default=0.5, metavar="DB",
                        help="largest mean SDR gain of the board over float per source: a "
                        "board far better than its float model is not the same model "
                        "(default 0.5)")
    parser.add_argument("--allow-float-mismatch", action="store_true",
                        help="compare with a float model that is not the one the bundle "
                        "records as its source (the report says so)")
    parser.add_argument("--max-lsb", type=whole_number(-1), default=None, metavar="N",
                        help="largest board vs host int8 difference in LSB (default: 0 when the "
                        "board runs the host's runtime or reference kernels on a CPU, else "
                        "reported only); -1 never checks")
    parser.add_argument("--min-realtime", type=nonnegative_float, default=None, metavar="X",
                        help="fail when streaming is slower than X times real time")
    parser.add_argument("--report", required=True, type=Path, metavar="OUT/",
                        help="folder for hil.json, hil.junit.xml, hil.md and figures/ (an "
                        "earlier HIL report there is replaced; other files are never touched)")
    parser.add_argument("--save-audio", type=Path, metavar="DIR",
                        help="keep every clip's mixture, references and the float, int8 host "
                             "and board outputs as wav files under DIR/CLIP/ (default: not "
                             "kept); DIR is new, empty or an earlier --save-audio's (it holds "
                             "saved-audio.json), apart from the data, bundle and float model")
    parser.add_argument("--baud", type=baud_argument, default=None,
                        help=f"port: line speed (default {DEFAULT_BAUD}); emulate: pace the link "
                             "to N baud")
    parser.add_argument("--chunk-hops", type=int, default=8,
                        help="hops of 128 samples per audio chunk (default 8)")
    parser.add_argument("--flash", action="store_true",
                        help="upload the bundle's model first when the board runs another")
    parser.add_argument("--plots", type=int, default=3, metavar="N",
                        help="waveform/spectrogram figures for the first N clips (default 3)")
    parser.add_argument("--timeout", type=finite_float, default=10.0,
                        help="seconds to wait for a reply before recovering (default 10)")
    parser.add_argument("--connect-timeout", type=finite_float, default=20.0, metavar="S",
                        help="seconds to wait for the board to answer HELLO (default 20)")
    parser.add_argument("--board-python", default=None, metavar="PYTHON",
                        help="emulate: run the agent with this interpreter (e.g. .venv-board)")
    parser.add_argument("--board-kernels", default="default", choices=("default", "reference"),
                        help="emulate: the agent's TFLite kernels (reference: portable across "
                        "runtime versions to 1 LSB)")
    parser.add_argument("--board-runtime", default="auto",
                        choices=("auto", *ALL_RUNTIMES),
                        help="emulate: the agent's runtime (default: the first that imports; "
                        "tflite_micro: TensorFlow Lite Micro's kernels, not bit-exact with the "
                        "host, judged by SDR)")
    parser.add_argument("--board-profile", default=None, choices=tuple(BOARD_PROFILES),
                        help="emulate: the board class (cortex-m: 1 KiB messages, window 1, "
                        "TFLite Micro in the manifest's measured arena)")
    parser.add_argument("--max-recoveries", type=int, default=None, metavar="N",
                        help="board restarts or stalls in a row without progress that one "
                        "request (a clip, a tensor invoke, the upload) may recover from "
                        "(default 12)")
    parser.add_argument("--recovery-seconds", type=finite_float, default=None, metavar="S",
                        help="time one request may spend recovering without progress "
                        "(default 300)")
    parser.add_argument("--board-arch", default="host", choices=BOARD_ARCHES,
                        help="emulate: the board's CPU (arm64: the agent on Debian arm64 Python "
                        "and the aarch64 LiteRT under qemu-user; build it with `make "
                        "board-arm64`; slow, so stream a few short clips)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def _check_args(args) -> None:
    from cli.common import CliError
    from tinysep.folder_writes import check_audio_folder

    if args.max_clips is not None and args.max_clips < 1:
        raise CliError(f"--max-clips must be at least 1, got {args.max_clips}")
    if not 1 <= args.chunk_hops <= 64:
        raise CliError(f"--chunk-hops must be 1..64, got {args.chunk_hops}")
    if args.max_sdr_drop < 0:
        raise CliError(f"--max-sdr-drop must be >= 0, got {args.max_sdr_drop}")
    if args.max_sdr_gain < 0:
        raise CliError(f"--max-sdr-gain must be >= 0, got {args.max_sdr_gain}")
    if args.max_recoveries is not None and args.max_recoveries < 0:
        raise CliError(f"--max-recoveries must be >= 0, got {args.max_recoveries}")
    if args.recovery_seconds is not None and args.recovery_seconds <= 0:
        raise CliError(f"--recovery-seconds must be positive, got {args.recovery_seconds}")
    if args.connect_timeout <= 0 or args.timeout <= 0:
        raise CliError("--connect-timeout and --timeout must be positive")
    if args.board_profile is not None and not args.emulate:
        raise CliError("--board-profile is for --emulate (a real board announces its limits)")
    if args.board_arch != "host" and not args.emulate:
        raise CliError("--board-arch is for --emulate (a real board runs on its own CPU)")
    check_output_folder(args.report, "--report")
    if args.save_audio is not None:
        check_audio_folder(args.save_audio, {"--data": args.data, "--bundle": args.bundle,
                                             "--float": args.float_model})


def _data_kind(args) -> str:
    """The ``HilSettings.dataset`` for ``--data``: a dataset layout or mixture files; refuses
    ``--dataset`` / ``--split`` that do not fit, and a path that is neither."""
    from cli.common import CliError
    from tinysep.eval_inputs import FILES, is_mixture_input

    data = args.data
    if args.dataset == FILES:
        files = True
    elif args.dataset != "auto":
        if data.is_file():
            raise CliError(f"--dataset {args.dataset} is for dataset folders; --data {data} is "
                           "a file (leave --dataset out to stream it as a mixture file)")
        files = False
    else:
        try:
            files = is_mixture_input(data)
        except (OSError, ValueError) as exc:
            raise CliError(f"--data {exc}") from None
    if not files:
        return args.dataset
    if args.split is not None:
        raise CliError(f"--split is for dataset folders; --data {data} holds mixture files, "
                       "which are all streamed")
    return FILES


def _earlier_report(args) -> list[str]:
    """The entries of an earlier HIL report in ``--report`` (which this run replaces); refuses
    a folder that is, holds or lies inside the bundle or the float model, or that holds
    anything a HIL run does not write (a user's files are never replaced)."""
    from cli.common import CliError
    from hil.report import AGENT_LOG_NAME, FIGURES_DIR, JSON_NAME, REPORT_ENTRIES
    from tinysep.folder_writes import check_apart_from, foreign_entries, nesting, written_by

    report = args.report
    check_apart_from(report, {"--bundle folder": args.bundle, "--float folder": args.float_model},
                     "--report")
    if not report.is_dir():
        return []
    owned = set(REPORT_ENTRIES)
    if args.save_audio is not None and nesting(args.save_audio, report) == "lies inside":
        # --save-audio inside the report folder: that entry is the user's choice, kept as is
        owned.add(args.save_audio.resolve().relative_to(report.resolve()).parts[0])
    others = foreign_entries(report, owned)
    figures = report / FIGURES_DIR
    if figures.is_dir():
        others += [f"{FIGURES_DIR}/{entry.name}" for entry in sorted(figures.iterdir())
                   if entry.suffix != ".png" or not entry.is_file()]
    elif figures.exists():
        others.append(FIGURES_DIR)
    if others:
        raise CliError(f"--report {report} holds {', '.join(others)}, which a HIL run does not "
                       "write; name a new or empty folder, or an earlier report's")
    present = sorted(entry.name for entry in report.iterdir() if entry.name in REPORT_ENTRIES)
    if not present or written_by(report / JSON_NAME, "hil"):
        return present
    if present == [AGENT_LOG_NAME]:  # a run that stopped before its report: the log goes on
        return []
    raise CliError(f"--report {report} holds {', '.join(present)} but no {JSON_NAME} of an "
                   "earlier HIL run, so they may be yours; name a new or empty folder")


def _remove_entries(folder: Path, names) -> None:
    """Delete the entries ``names`` of ``folder`` (files or folders) that exist."""
    for name in names:
        entry = folder / name
        if entry.is_dir():
            shutil.rmtree(entry)
        elif entry.exists():
            entry.unlink()


def _check_inputs(sources) -> None:
    """Read every mixture file once, so a bad file stops the run before a board is started."""
    from cli.common import CliError

    for source in sources:
        try:
            source.load()
        except (OSError, ValueError) as exc:
            raise CliError(f"--data {exc}") from None


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError
    from firmware_host.bundle import read_bundle
    from hil.emulator import EmulatedBoard
    from hil.harness import HilSettings, hil_sources, run_hil
    from hil.report import AGENT_LOG_NAME
    from hil.session import BoardSession, RecoveryBudget
    from tinysep.eval_inputs import FILES
    from tinysep.folder_writes import mark_audio_folder
    from tinysep.models import read_config

    _check_args(args)
    dataset = _data_kind(args)
    bundle = read_bundle(args.bundle)  # bad bundles and model folders are user errors (exit 2)
    read_config(args.float_model)
    earlier = _earlier_report(args)
    settings = HilSettings(
        bundle=str(args.bundle),
        float_model=str(args.float_model),
        data=str(args.data),
        report_dir=str(args.report),
        dataset=dataset,
        split=None if dataset == FILES else args.split or "test",
        max_clips=args.max_clips,
        max_sdr_drop=args.max_sdr_drop,
        max_sdr_gain=args.max_sdr_gain,
        allow_float_mismatch=args.allow_float_mismatch,
        max_lsb=args.max_lsb,
        min_realtime=args.min_realtime,
        chunk_hops=args.chunk_hops,
        plots=args.plots,
        progress=not args.no_progress,
        flash=args.flash,
        save_audio=None if args.save_audio is None else str(args.save_audio),
    )
    try:
        sources = hil_sources(settings, bundle.sources)
    except (OSError, ValueError) as exc:
        raise CliError(f"--data {exc}") from None
    if dataset == FILES:
        _check_inputs(sources)
    board = None
    try:
        if args.emulate:
            args.report.mkdir(parents=True, exist_ok=True)
            from hil.emulated_arm import ArmRootMissing, board_launch

            try:
                launch = board_launch(args.board_arch, args.board_python,
                                      getattr(args, "board_profile", None))
            except (ArmRootMissing, ValueError) as exc:
                raise CliError(str(exc)) from None
            runtime = [] if args.board_runtime == "auto" else ["--runtime", args.board_runtime]
            _remove_entries(args.report, [n for n in earlier if n == AGENT_LOG_NAME])
            board = EmulatedBoard(args.bundle, baud=args.baud, python=args.board_python, **launch,
                                  extra_args=["--kernels", args.board_kernels] + runtime,
                                  log_path=args.report / AGENT_LOG_NAME,
                                  profile=args.board_profile)
            port, baud = board.path, args.baud
        else:
            port, baud = args.port, args.baud or DEFAULT_BAUD
        meta = {"port": port, "emulated": bool(args.emulate), "baud": baud}
        if args.board_arch != "host":
            meta["arch"] = args.board_arch
        if board is not None:
            meta["profile"] = board.profile.name
        budget = RecoveryBudget()
        if args.max_recoveries is not None:
            budget.max_recoveries = args.max_recoveries
        if args.recovery_seconds is not None:
            budget.max_seconds = args.recovery_seconds
        try:
            session = BoardSession(port=port, baud=baud, reply_timeout=args.timeout,
                                   connect_timeout=args.connect_timeout, budget=budget)
        except OSError as exc:
            raise CliError(str(exc)) from None
        if earlier:  # the new run is about to write its report: the earlier one goes whole
            print(f"replacing the earlier HIL report in {args.report}: {', '.join(earlier)}")
            # (an emulated board's earlier log went before the board started its own)
            _remove_entries(args.report, [n for n in earlier
                                          if not (board is not None and n == AGENT_LOG_NAME)])
        if args.save_audio is not None:
            mark_audio_folder(args.save_audio, "hil")
        with session:
            report = run_hil(session, settings, meta, bundle, sources)
        if board is not None and not board.running and report["status"] == "aborted":
            _explain_agent_exit(report, board, args.report)
    finally:
        if board is not None:
            board.close()
    _print_summary(report)
    if report["status"] == "refused":
        print(f"tinysep hil: error: {report['error']}", file=sys.stderr)
        return 2
    if report["status"] == "aborted" and report.get("fault") == "board":
        return BOARD_FAULT_EXIT
    return 0 if report["passed"] else 1


def _explain_agent_exit(report: dict, board, folder: Path) -> None:
    """Put why the emulated agent exited (its last error line in agent.log) into the report."""
    from hil.report import AGENT_LOG_NAME, write_reports

    log = folder / AGENT_LOG_NAME
    lines = log.read_text(errors="replace").splitlines() if log.is_file() else []
    errors = [line for line in lines if ": error: " in line]
    why = errors[-1] if errors else f"see {log}"
    report["error"] = (f"the emulated agent exited with status {board.process.returncode}: "
                       f"{why} ({report['error']})")
    write_reports(report, folder)


def _print_summary(report: dict) -> None:
    from hil.report import NOT_SCORED

    summary = report["summary"]
    print(f"HIL {'PASSED' if report['passed'] else 'FAILED'}: {summary['clips_ok']} of "
          f"{summary['clips']} clips, {summary['audio_seconds']:.1f} s of audio "
          f"({report['status']})")
    provenance = report.get("provenance") or {}
    if provenance.get("overridden") or provenance.get("match") is None and provenance.get("note"):
        print(f"WARNING: {provenance['note']}", file=sys.stderr)
        print(f"WARNING: {provenance['note']}")
    if report.get("error"):
        print(f"stopped: {report['error']}")
    summary_link = summary["link"]
    if summary["recoveries"] or summary_link["resends"]:
        print(f"  session: {summary_link['resends']} frames resent, {summary_link['timeouts']} "
              f"timeouts, {summary['recoveries']} recoveries "
              + str(summary.get("recoveries_by_request", {})))
    for check in report["checks"]:
        mark = {True: "pass", False: "FAIL", None: "skip"}[check["passed"]]
        print(f"  [{mark}] {check['name']}: {check['text']}")
    if summary["clips_ok"]:
        sdr = summary["board_vs_host_sdr"]
        na = NOT_SCORED if summary.get("unreferenced_clips") else "n/a"
        print(f"  board vs host int8: largest difference {summary['lsb']['max_abs']} LSB; "
              "SDR board - host " + ", ".join(
                  f"{name} {na if value is None else f'{round(value, 3) + 0.0:+.3f} dB'}"
                  for name, value in sdr.items()))
    invoke = summary["invoke_us"]
    if invoke["p50"] is not None:
        print(f"  invoke p50 {invoke['p50']:.1f} us, p99 {invoke['p99']:.1f} us; "
              f"{summary['realtime_factor']:.2f}x real time; "
              f"{summary['link']['resends']} frames resent")
    unreferenced = summary.get("unreferenced_clips", [])
    if unreferenced:
        print(f"  {len(unreferenced)} clip(s) without references: SDR {NOT_SCORED}; "
              "compared with host int8 and float only: " + ", ".join(unreferenced[:5])
              + (" ..." if len(unreferenced) > 5 else ""))
    snr = (summary.get("vs_float_snr") or {}).get("int8_board", {})
    if summary["clips_ok"] and any(v is not None for v in snr.values()):
        print("  board vs float: SNR " + ", ".join(
            f"{name} {value:.2f} dB" for name, value in snr.items() if value is not None))
    files = report.get("report_files", {})
    if files:
        print("report: " + ", ".join(files.values()))
    saved = (report.get("data") or {}).get("save_audio")
    if saved:
        errors = summary.get("audio_errors", [])
        print(f"audio: {saved}/CLIP/ (mixture.wav, reference/, float/, int8-host/, board/)"
              + (f"; not saved for {', '.join(errors)} (see hil.md)" if errors else ""))
    sys.stdout.flush()
