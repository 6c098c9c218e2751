"""Separate songs into one audio file per source: DIR/<song>/<source>.wav for each source of
the model (vocals.wav, accompaniment.wav; or vocals, drums, bass and other.wav for a
four-stem model or bundle).

INPUT is an audio file (wav, flac, ogg, mp3, ... at any rate and channel count) or a folder
of them. `--model` picks what separates: a saved float model folder (default: the shipped
model) or a deploy bundle, whose int8 model then runs on the host exactly as a board runs
it; with `--port URL` (a board running the agent with that bundle) or `--emulate` (the
emulated board) the audio is streamed to the board and its output is written, so what the
board produces can be listened to. The stems are written at the input's rate and channel
count (16-bit wav, 24-bit for deeper PCM input, float for float input, which keeps peaks above
full scale) and add up to the input: the last source (accompaniment, or other for four stems)
also takes the residual, the input minus the other estimates. Long songs are read block by
block in constant memory. DIR/separate.json sums up every song separated into DIR; a run
stopped with Ctrl-C keeps the songs it finished and lists them there, with the song it
stopped in and those it had not started. `--overwrite` replaces a song's stems, never other
files kept in its folder.
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

from cli.common import check_output_folder, finite_float, path_argument
from firmware_host.bundle.layout import MANIFEST_FILE
from tinysep.data.audio_io import AUDIO_SUFFIXES
from tinysep.folder_writes import first_names

SUMMARY_FILE = "separate.json"  # DIR/separate.json: every song separated into DIR
MAX_SECONDS = 24 * 3600.0  # --start and --duration beyond a day are typing errors


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("inputs", nargs="+", type=path_argument, metavar="INPUT",
                        help="audio file(s), or folder(s) whose audio files are all separated")
    parser.add_argument("--out", required=True, type=path_argument, metavar="DIR",
                        help="output folder; each song goes to DIR/<song name>/")
    parser.add_argument("--model", type=path_argument, default=None, metavar="PATH",
                        help="saved model folder, deploy bundle folder or its model.tflite "
                             "(default: the shipped dualgate-tcn tiny, float)")
    parser.add_argument("--start", type=finite_float, default=0.0, metavar="SECONDS",
                        help="separate from this time on (default 0)")
    parser.add_argument("--duration", type=finite_float, default=None, metavar="SECONDS",
                        help="separate only this many seconds (default: to the end)")
    board = parser.add_mutually_exclusive_group()
    board.add_argument("--port", default=None, metavar="URL",
                       help="separate on the board at this serial device or pyserial URL, which "
                            "runs the agent with the --model bundle (default: on this host)")
    board.add_argument("--emulate", action="store_true",
                       help="separate on the emulated board (the agent on a pseudo-terminal) "
                            "running the --model bundle (default: on this host)")
    parser.add_argument("--board-profile", default=None, metavar="NAME",
                        help="with --emulate: the emulated board's limits and runtime, e.g. "
                             "cortex-m (default: the host profile)")
    parser.add_argument("--overwrite", action="store_true",
                        help="replace the stems in DIR/<song>/ when it exists (default: refuse); "
                             "other files there are never deleted: the song is refused")
    parser.add_argument("--no-progress", action="store_true",
                        help="no progress bar or progress lines")


def audio_files(inputs: list[Path]) -> list[Path]:
    """The files to separate: each file given, and the audio files directly in each folder."""
    files: list[Path] = []
    for item in inputs:
        if item.is_dir():
            found = sorted(p for p in item.iterdir()
                           if p.is_file() and p.suffix.lower() in AUDIO_SUFFIXES)
            if not found:
                nested = [p.name for p in sorted(item.iterdir()) if p.is_dir()]
                hint = (f"; its subfolders ({first_names(nested)}) are not searched: give "
                        "them as inputs" if nested else "")
                raise ValueError(f"{item}: a folder with no audio files "
                                 f"({', '.join(AUDIO_SUFFIXES)}) directly in it{hint}")
            files += found
        elif item.is_file():
            files.append(item)
        else:
            raise FileNotFoundError(f"{item}: no such file or folder")
    once: dict[Path, Path] = {}
    for f in files:  # a file given twice, or also through its folder, is separated once
        once.setdefault(f.resolve(), f)
    files = list(once.values())
    stems = [f.stem for f in files]
    repeated = sorted({s for s in stems if stems.count(s) > 1})
    if repeated:
        raise ValueError(f"several inputs are named {', '.join(repeated)}: their stems would "
                         f"land in the same DIR/<name>/ folder; separate them one at a time")
    return files


def load_separator(path: Path | None):
    """``(separator, sources, description, lookahead_seconds)`` for a model folder, a bundle
    or its .tflite (a bundle streams: it never looks ahead)."""
    from tinysep.methods import model_folder
    from tinysep.pretrained import default_model_path

    path = default_model_path() if path is None else model_folder(path)
    if (path / MANIFEST_FILE).is_file():
        from convert.runtime import BundleRunner

        runner = BundleRunner(path)
        return (runner.separate, list(runner.sources), f"int8 bundle {path} (host interpreter)",
                0.0)
    from tinysep.dsp import HOP_SAMPLES, SAMPLE_RATE
    from tinysep.models import load_model, mask_delay_frames, separate
    from tinysep.models.registry import model_sources

    model = load_model(path)
    return ((lambda audio: separate(model, audio)), list(model_sources(model)),
            f"float model {path}", mask_delay_frames(model) * HOP_SAMPLES / SAMPLE_RATE)


def board_separator(stack, bundle_dir: Path, port: str | None, profile: str | None):
    """``(separator, sources, description)`` streaming to a board (``port``) or, when
    ``port`` is None, to an emulated board started here (closed by ``stack``)."""
    import numpy as np

    from firmware_host.board.pipeline import PCM_SCALE, to_pcm
    from firmware_host.bundle import read_bundle
    from hil.emulator import EmulatedBoard
    from hil.session import DEFAULT_CHUNK_HOPS, BoardSession

    bundle = read_bundle(str(bundle_dir))
    where = port
    if port is None:
        board = stack.enter_context(EmulatedBoard(bundle_dir, profile=profile))
        port, where = board.path, f"the emulated board ({board.profile.name} profile)"
    try:
        session = stack.enter_context(BoardSession(port=port))
    except OSError as exc:  # no such device, not a serial port, nothing listening
        from cli.common import CliError

        raise CliError(str(exc)) from None
    session.connect()
    session.check(bundle)
    hops = session.chunk_hops(DEFAULT_CHUNK_HOPS, bundle)
    names = list(bundle.sources)

    def separate(audio):
        result = session.stream_clip(to_pcm(audio), hops)
        return {name: result.sources[i].astype(np.float32) / PCM_SCALE
                for i, name in enumerate(names)}

    return separate, names, f"int8 bundle {bundle_dir} on {where}"


def run(args: argparse.Namespace) -> int:
    import contextlib

    from cli.common import CliError

    _check_time_options(args.start, args.duration)
    if args.port == "":
        raise CliError("--port is empty; expected a serial device or pyserial URL")
    check_output_folder(args.out)
    if args.board_profile is not None and not args.emulate:
        raise CliError("--board-profile is for --emulate (a real board announces its limits)")
    on_board = args.port is not None or args.emulate
    if on_board and args.model is not None:
        from tinysep.methods import model_folder

        args.model = model_folder(args.model)
    if on_board and (args.model is None or not (args.model / MANIFEST_FILE).is_file()):
        raise CliError("--port and --emulate stream to a board: --model must name the deploy "
                       "bundle folder the board runs")
    files = audio_files(args.inputs)
    if not on_board:
        separator, sources, description, lookahead = load_separator(args.model)
        return _separate_all(args, files, separator, sources, description, lookahead)
    from cli.hil_run import BOARD_FAULT_EXIT
    from firmware_host.protocol.errors import ProtocolError
    from hil.session import HilError, UploadRefused

    try:
        with contextlib.ExitStack() as stack:
            separator, sources, description = board_separator(
                stack, args.model, args.port, args.board_profile)
            return _separate_all(args, files, separator, sources, description)
    except (HilError, UploadRefused, ProtocolError) as exc:
        print(f"tinysep separate: board fault: {exc}", file=sys.stderr)
        return BOARD_FAULT_EXIT


def _check_time_options(start: float, duration: float | None) -> None:
    """Refuse, before any work, a ``--start`` or ``--duration`` that is no plausible time."""
    from cli.common import CliError

    if not 0 <= start <= MAX_SECONDS:
        raise CliError(f"--start must be a number of seconds from 0 to {MAX_SECONDS:g}, "
                       f"got {start}")
    if duration is not None and not 0 < duration <= MAX_SECONDS:
        raise CliError(f"--duration must be a number of seconds above 0 and at most "
                       f"{MAX_SECONDS:g}, got {duration}")


def check_song_name(path: Path) -> None:
    """ValueError when ``path``'s stems folder would take the name of the summary file (or
    of the hidden file it is written through)."""
    name = path.stem.casefold()
    if name == SUMMARY_FILE.casefold() or name.startswith(f".{SUMMARY_FILE}".casefold()):
        raise ValueError(f"{path}: its song name {path.stem!r} is the name of the run's "
                         f"summary file in --out; rename the file")


def read_summary_entries(path: Path) -> dict[str, list[dict]]:
    """The ``songs`` and ``failed`` entries of an earlier summary at ``path`` (none when it is
    missing); ValueError saying why when it is not a summary written by this command."""
    import json

    if not path.exists() and not path.is_symlink():
        return {"songs": [], "failed": []}
    try:
        data = json.loads(path.read_text())
    except (OSError, ValueError) as exc:  # a folder, unreadable, undecodable or bad JSON
        raise ValueError(f"{path} is not readable JSON ({exc})") from None
    if not (isinstance(data, dict) and data.get("command") == "separate"
            and _is_entry_list(data.get("songs")) and _is_entry_list(data.get("failed"))):
        raise ValueError(f"{path} is not a summary written by tinysep separate")
    return {"songs": data["songs"], "failed": data["failed"]}


def _is_entry_list(value) -> bool:
    """Whether ``value`` is a list of summary entries, each naming its ``input`` file."""
    return isinstance(value, list) and all(
        isinstance(entry, dict) and isinstance(entry.get("input"), str) for entry in value)


def merge_entries(earlier: list[dict], latest: list[dict]) -> list[dict]:
    """``earlier`` entries with those of the same song (output folder) replaced by ``latest``
    in place, and the other ``latest`` ones after them."""
    merged = {Path(entry["input"]).stem: entry for entry in earlier}
    merged.update((Path(entry["input"]).stem, entry) for entry in latest)
    return list(merged.values())


def _separate_all(args: argparse.Namespace, files: list[Path], separator, sources: list[str],
                  description: str, lookahead_seconds: float = 0.0) -> int:
    from tinysep.jsonfile import write_json_atomic
    from tinysep.stems import separate_file

    summary_path = args.out / SUMMARY_FILE
    try:
        earlier = read_summary_entries(summary_path)
    except ValueError as exc:
        earlier = None
        print(f"tinysep separate: warning: {exc}; it is left as it is and this run's summary "
              "is not written", file=sys.stderr)
    args.out.mkdir(parents=True, exist_ok=True)
    print(f"separating {len(files)} file(s) with the {description}")
    results, failed = [], []

    def write_summary(attempted: list[Path], interrupted: Path | None = None) -> None:
        """Merge this run's songs into DIR/separate.json (the songs ``attempted`` so far)."""
        names = {path.stem for path in attempted}
        earlier_failed = [e for e in earlier["failed"] if Path(e["input"]).stem not in names]
        summary = {"command": "separate", "model": description, "sources": sources,
                   "songs": merge_entries(earlier["songs"], results),
                   "failed": merge_entries(earlier_failed, failed)}
        if interrupted is not None:
            summary["interrupted"] = {
                "input": str(interrupted), "separated": len(results), "failed": len(failed),
                "not_started": [str(path) for path in files[len(attempted) + 1:]]}
        write_json_atomic(summary_path, summary, indent=2)

    for number, path in enumerate(files):
        try:
            check_song_name(path)
            summary = separate_file(path, args.out, separator, sources, start=args.start,
                                    duration=args.duration, overwrite=args.overwrite,
                                    progress=not args.no_progress,
                                    lookahead_seconds=lookahead_seconds)
        except (ValueError, OSError) as exc:
            print(f"  {path}: skipped: {exc}")
            failed.append({"input": str(path), "error": str(exc)})
            continue
        except KeyboardInterrupt:
            if earlier is not None:
                write_summary(files[:number], interrupted=path)
                print(f"interrupted while separating {path}: {len(results)} song(s) separated "
                      f"before it are kept and listed in {summary_path}", file=sys.stderr)
            raise
        results.append({**summary, "model": description})
        clipped = sum(summary["clipped_samples"].values())
        note = f", {clipped} samples clipped to full scale" if clipped else ""
        print(f"  {path} -> {Path(summary['outputs'][sources[0]]).parent}/ "
              f"({summary['seconds']:.1f} s at {summary['sample_rate']} Hz, "
              f"{summary['channels']} ch, {summary['realtime_factor']:.1f}x real time{note})")
    written = earlier is not None
    if written:
        write_summary(files)
    else:
        print(f"no summary written: {summary_path} is not one of this command's")
    if failed:
        where = f" (see {summary_path})" if written else ""
        print(f"{len(failed)} of {len(files)} file(s) could not be separated{where}")
    return 0 if written and not failed else 1
