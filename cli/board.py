"""Run the board agent: on a serial port, or emulated on a pseudo-terminal pair.

``--emulate`` opens a pseudo-terminal pair, serves the agent on one end and prints the other
end's device path, which the harness opens like a serial port (``tinysep hil --port PATH``).
The emulated board works on its own copy of the bundle (an upload never changes the folder
given). ``--baud N`` paces the emulated link like a UART of N baud; ``--profile cortex-m``
emulates a microcontroller (1 KiB messages, window 1, TFLite Micro in the measured arena).
``--port`` runs the same agent on a real device (what ``python3 -m firmware_host.board`` does
on a board).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import tempfile
from pathlib import Path

from cli.common import baud_argument
from firmware_host.board.runtime import ALL_RUNTIMES
from hil.emulator import BOARD_PROFILES

USES_TENSORFLOW = False  # the command starts without loading TensorFlow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    from hil.emulated_arm import BOARD_ARCHES

    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--emulate", action="store_true",
                       help="serve on a new pseudo-terminal and print its device path")
    where.add_argument("--port", help="serial device or pyserial URL to serve on")
    parser.add_argument("--bundle", type=Path, default=None,
                        help="deploy bundle folder (--emulate without it: a blank board "
                        "whose folder is a new temporary one; it answers on the link but runs "
                        "nothing and takes no upload until a bundle is copied there)")
    parser.add_argument("--baud", type=baud_argument, default=None,
                        help="emulate: pace the link to N baud; port: line speed")
    parser.add_argument("--edgetpu", action="store_true", help="use the Edge TPU delegate")
    parser.add_argument("--arch", default="host", choices=BOARD_ARCHES,
                        help="emulate: the board's CPU (arm64: the agent on Debian arm64 Python "
                        "and the aarch64 LiteRT under qemu-user, built by `make board-arm64`)")
    parser.add_argument("--runtime", default="auto",
                        choices=("auto", *ALL_RUNTIMES),
                        help="TFLite runtime (default: the first that imports, or the "
                        "profile's; tflite_micro: TensorFlow Lite Micro's kernels, only when "
                        "asked)")
    parser.add_argument("--profile", default=None, choices=tuple(BOARD_PROFILES),
                        help="emulate: the board class (host: as on a Linux board; cortex-m: "
                        "1 KiB messages, window 1, TFLite Micro in the manifest's measured "
                        "arena)")


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError

    if args.emulate:
        from hil.emulator import serve_in_foreground

        bundle = args.bundle
        if bundle is None:
            bundle = Path(tempfile.mkdtemp(prefix="tinysep-blank-board-"))
        elif not bundle.is_dir():
            what = "is a file, not a folder" if bundle.exists() else "does not exist"
            raise CliError(f"bundle folder {bundle} {what}")
        elif any(bundle.iterdir()):  # an empty folder is a board waiting for an upload
            from firmware_host.bundle import BundleError, read_bundle

            try:  # named by the user's path, not by the copy the emulated agent reads
                read_bundle(str(bundle), verify_model=False)  # a bad model awaits an upload
            except BundleError as exc:
                raise CliError(str(exc)) from None

        def announce(path: str, folder: str) -> None:
            speed = f", paced to {args.baud} baud" if args.baud else ""
            profile = f", profile {args.profile}" if args.profile else ""
            print(f"emulated board on {path} (bundle {bundle}, served from its copy {folder}"
                  f"{profile}{speed}); Ctrl-C stops it", flush=True)

        stopping = []
        for signum in (signal.SIGINT, signal.SIGTERM):
            signal.signal(signum, lambda number, frame: stopping.append(number))
        from firmware_host.board.micro import MicroAllocationFailed
        from firmware_host.board.runtime import RuntimeUnavailable

        try:
            if args.arch != "host":
                return _serve_emulated_arch(args, bundle, lambda: bool(stopping))
            return serve_in_foreground(bundle, baud=args.baud, announce_path=announce,
                                       runtime=args.runtime, should_stop=lambda: bool(stopping),
                                       profile=args.profile)
        except (RuntimeUnavailable, MicroAllocationFailed) as exc:
            raise CliError(str(exc)) from None
        finally:
            if args.bundle is None:  # the blank board's folder was this command's own
                shutil.rmtree(bundle, ignore_errors=True)
    if args.bundle is None:
        raise CliError("--port needs --bundle")
    if args.arch != "host":
        raise CliError("--arch is for --emulate (on a port the agent runs on the board's CPU)")
    if args.profile is not None:
        raise CliError("--profile is for --emulate; on a port the agent's own options apply")
    from firmware_host.board.__main__ import main as agent_main

    argv = ["--port", args.port, "--bundle", str(args.bundle), "--runtime", args.runtime]
    if args.baud:
        argv += ["--baud", str(args.baud)]
    if args.edgetpu:
        argv.append("--edgetpu")
    return agent_main(argv)


def _serve_emulated_arch(args: argparse.Namespace, bundle: Path, should_stop) -> int:
    """The agent on an emulated ARM board (qemu-user) on a new pseudo-terminal."""
    from cli.common import CliError
    from hil.emulated_arm import ArmBoardError, serve_emulated

    if getattr(args, "profile", None) not in (None, "host"):
        raise CliError(f"--profile {args.profile} runs on the host's CPU; --arch {args.arch} "
                       "emulates a Linux board")

    def announce(path: str) -> None:
        speed = f", paced to {args.baud} baud" if args.baud else ""
        print(f"emulated {args.arch} board on {path} (bundle {bundle}{speed}; qemu-user: "
              "correct, not real-time); Ctrl-C stops it", flush=True)

    try:
        return serve_emulated(args.arch, bundle, baud=args.baud, runtime=args.runtime,
                              announce=announce, should_stop=should_stop)
    except ArmBoardError as exc:
        raise CliError(str(exc)) from None
