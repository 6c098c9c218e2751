"""What every subcommand shares: its error type, the help formatter and how one runs.

Each subcommand module exposes ``add_arguments(parser)`` and ``run(args) -> int`` and keeps
heavy imports (TensorFlow, librosa) inside ``run`` so that ``tinysep --help`` stays fast;
``USES_TENSORFLOW = False`` says that the command starts without loading TensorFlow.
"""

from __future__ import annotations

import argparse
import math
import signal
import sys
import threading
from collections.abc import Callable
from pathlib import Path
from types import ModuleType

from tinysep.folder_writes import check_writable, holds_anything, written_by


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


class HelpFormatter(argparse.HelpFormatter):
    """Every option's help states its default: options whose help text does not mention
    one get ``(default: VALUE)`` appended (flags, empty lists and None have none to state)."""

    def _get_help_string(self, action: argparse.Action) -> str:
        text = action.help or ""
        default = action.default
        if (not action.option_strings or "default" in text.lower() or default is None
                or default is False or default is argparse.SUPPRESS
                or (isinstance(default, (list, tuple, str)) and not default)):
            return text
        return f"{text} (default: %(default)s)"


def add_command(sub, name: str, module: ModuleType, help_text: str) -> argparse.ArgumentParser:
    """The subparser of ``module`` under ``name`` (its docstring is the description)."""
    parser = sub.add_parser(name, help=help_text, description=module.__doc__,
                            formatter_class=HelpFormatter)
    module.add_arguments(parser)
    parser.set_defaults(_module=module)
    return parser


def run_command(name: str, module: ModuleType, args: argparse.Namespace) -> int:
    """Run one parsed subcommand: its exit status; a user error is one line and status 2."""
    previous = None
    if threading.current_thread() is threading.main_thread():
        # `kill PID`, a job scheduler, `docker stop`: the command stops as on Ctrl-C, so it
        # cleans up what it had half written and says what finished
        previous = signal.signal(signal.SIGTERM, _terminate_as_interrupt)
    try:
        if getattr(module, "USES_TENSORFLOW", True):
            from tinysep.quiet import import_tensorflow

            import_tensorflow()  # without the CUDA / absl start-up lines
        return int(module.run(args) or 0)
    except CliError as exc:
        print(f"tinysep {name}: error: {exc}", file=sys.stderr)
        return 2
    except (OSError, ValueError) as exc:  # a file that cannot be read or written, a bad value
        print(f"tinysep {name}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tinysep {name}: interrupted", file=sys.stderr)
        return 130
    except Exception as exc:  # out of memory, Python's or TensorFlow's: one line too
        if not isinstance(exc, MemoryError) and type(exc).__name__ != "ResourceExhaustedError":
            raise
        shown = str(exc).strip().splitlines()[0] if str(exc).strip() else ""
        print(f"tinysep {name}: error: out of memory{f' ({shown})' if shown else ''}; use "
              "smaller models, batches, chunks or clips", file=sys.stderr)
        return 2
    finally:
        if previous is not None:
            signal.signal(signal.SIGTERM, previous)


def _terminate_as_interrupt(signum, frame) -> None:
    raise KeyboardInterrupt


def path_argument(text: str) -> Path:
    """A path from the command line; an empty one is refused, as it would quietly mean the
    current folder."""
    if not text:
        raise argparse.ArgumentTypeError("an empty path; expected a file or folder name")
    return Path(text)


def finite_float(text: str) -> float:
    """A number from the command line; NaN and infinity are refused at parsing, as no
    threshold, time or length means them."""
    try:
        value = float(text)
    except ValueError:
        value = math.nan
    if not math.isfinite(value):
        raise argparse.ArgumentTypeError(f"expected a finite number, got {text!r}")
    return value


def whole_number(minimum: int, maximum: int | None = None) -> Callable[[str], int]:
    """An argument type: a whole number from ``minimum`` (to ``maximum``), refused at parsing
    otherwise, so that a count, size or length nothing means never reaches the work."""
    span = f">= {minimum}" if maximum is None else f"from {minimum} to {maximum}"

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            value = None
        if value is None or value < minimum or (maximum is not None and value > maximum):
            raise argparse.ArgumentTypeError(f"expected a whole number {span}, got {text!r}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argument type: a finite number > 0 (a learning rate), refused at parsing otherwise."""
    value = finite_float(text)
    if value <= 0:
        raise argparse.ArgumentTypeError(f"expected a number > 0, got {text!r}")
    return value


def nonnegative_float(text: str) -> float:
    """An argument type: a finite number >= 0 (a speed to reach), refused at parsing otherwise."""
    value = finite_float(text)
    if value < 0:
        raise argparse.ArgumentTypeError(f"expected a number >= 0, got {text!r}")
    return value


MAX_BAUD = 100_000_000  # far above any serial line; a pace beyond it is a typing slip
baud_argument = whole_number(1, MAX_BAUD)  # a line speed or an emulated link's pace


def seed_argument(text: str) -> int:
    """A random seed from the command line: a whole number from 0 to ``MAX_SEED`` (what
    numpy's generators and Keras' initializers both take), refused at parsing otherwise."""
    from tinysep.training.config import MAX_SEED  # here: only a given --seed pays the import

    try:
        seed = int(text)
    except ValueError:
        seed = -1
    if not 0 <= seed <= MAX_SEED:
        raise argparse.ArgumentTypeError(f"expected a whole number from 0 to {MAX_SEED}, "
                                         f"got {text!r}")
    return seed


def add_audio_input_arguments(parser: argparse.ArgumentParser) -> None:
    """``--data`` and ``--dataset`` as every command that reads clips takes them: a dataset
    folder, or a user's own mixture files read by :mod:`tinysep.eval_inputs`."""
    from tinysep.eval_inputs import FILES

    parser.add_argument("--data", required=True, type=path_argument,
                        help="dataset root folder, or a mixture file (.wav / .npy) or a folder "
                             "of them, references beside as NAME.vocals.wav and "
                             "NAME.accompaniment.wav when present")
    parser.add_argument("--dataset", default="auto",
                        choices=("auto", "mir1k", "musdb", "synth", FILES),
                        help=f"layout of --data; {FILES}: mixture files as above (default: "
                             "detect)")


def check_output_folder(path: Path, option: str = "--out") -> None:
    """Refuse, before any work, an output folder that cannot be made: ``path`` or the nearest
    of its parents that exists is a file, or a folder nothing can be written in."""
    try:
        holds_anything(path, option)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def check_output_writable(path: Path, option: str = "--out") -> None:
    """Refuse, before any work, an output ``path`` in a folder nothing can be written in;
    what else the command asks of its output is checked where that command checks it."""
    try:
        check_writable(path, option)
    except ValueError as exc:
        raise CliError(str(exc)) from None


def check_output_file(path: Path, option: str, suffix: str = ".json",
                      command: str | None = None) -> None:
    """Refuse, before any work, an output file ``option`` that cannot be written: a name
    without ``suffix``, an existing folder, a path under an existing file or in a folder
    nothing can be written in. With
    ``command``, an existing file is replaced only if it is a JSON report whose ``"command"``
    is that name (one this subcommand wrote), so no other file of the user's is lost."""
    if path.suffix.lower() != suffix:
        raise CliError(f"{option} must name a {suffix} file, got {path}")
    if path.is_dir():
        raise CliError(f"{option} {path} is a folder; name a {suffix} file")
    if command is not None and path.is_file() and not written_by(path, command):
        raise CliError(f"{option} {path} exists and is not a report of `tinysep {command}`; "
                       "choose another name")
    for parent in path.parents:
        if parent.exists():
            if not parent.is_dir():
                raise CliError(f"{option} {path}: {parent} is a file, not a folder")
            break
    try:
        check_writable(path, option)  # not a folder (above): a file made beside it
    except ValueError as exc:
        raise CliError(str(exc)) from None
