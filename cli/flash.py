"""Upload a bundle's model to a board agent over serial (any pyserial URL).

The agent verifies size and sha256, loads the new model and checks it against its manifest
before an atomic swap; the old model stays active if anything fails. Exit status: 0 flashed
(or already current), 1 refused (the board would then fail the HIL check), 2 bad arguments,
3 the board or the link failed.
"""

from __future__ import annotations

import argparse
import sys

from cli.common import baud_argument, path_argument, positive_float
from firmware_host.transport import DEFAULT_BAUD

USES_TENSORFLOW = False  # the command starts without loading TensorFlow


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--port", required=True,
                        help="serial device or pyserial URL (/dev/ttyUSB0, socket://host:port)")
    parser.add_argument("--bundle", required=True, type=path_argument, help="deploy bundle folder")
    parser.add_argument("--baud", type=baud_argument, default=None,
                        help=f"line speed (default {DEFAULT_BAUD}; ignored by pseudo-terminals)")
    parser.add_argument("--force", action="store_true",
                        help="upload even when the board already runs this model")
    parser.add_argument("--timeout", type=positive_float, default=30.0,
                        help="seconds to wait for each reply (default 30)")
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError
    from cli.hil_run import BOARD_FAULT_EXIT
    from convert.sizes import KIB, size_text
    from firmware_host.bundle import read_bundle
    from firmware_host.protocol.errors import PeerError, ProtocolError
    from hil.flash import flash_bundle
    from hil.session import BoardSession, HilError, UploadRefused

    read_bundle(args.bundle)  # a bad bundle is a user error (exit 2) before touching the port
    try:
        with BoardSession(port=args.port, baud=args.baud, reply_timeout=args.timeout) as session:
            result = flash_bundle(session, str(args.bundle), force=args.force,
                                  progress=not args.no_progress)
    except OSError as exc:
        raise CliError(str(exc)) from None
    except UploadRefused as exc:  # nothing sent: the board cannot or should not take it
        print(f"tinysep flash: refused: {exc}", file=sys.stderr)
        return 1
    except (HilError, PeerError, ProtocolError) as exc:  # the board or the link failed
        print(f"tinysep flash: board fault: {exc}", file=sys.stderr)
        return BOARD_FAULT_EXIT
    if not result.uploaded:
        print(f"the board on {args.port} already runs {result.sha256[:16]}... "
              "(--force to upload anyway)")
        return 0
    rate = result.bytes / KIB / result.seconds if result.seconds > 0 else 0.0
    print(f"flashed {size_text(result.bytes)} to {args.port} in {result.seconds:.1f} s "
          f"({rate:.1f} KiB/s): model {result.previous_sha256[:12] or 'none'} -> "
          f"{result.sha256[:12]}")
    return 0
