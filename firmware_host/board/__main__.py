"""Run the board agent: ``python3 -m firmware_host.board --port DEVICE --bundle DIR``.

Serves the wire protocol on a serial device (or pyserial URL) with the bundle's model until
the port closes or the process gets SIGINT / SIGTERM. ``--fd`` serves an inherited descriptor
instead (the emulated board passes its pseudo-terminal this way) and ``--throttle-baud`` paces
the link like a UART of that speed.
"""

from __future__ import annotations

import argparse
import signal
import sys

from firmware_host.protocol.framing import DEFAULT_MAX_PAYLOAD
from firmware_host.protocol.link import Link
from firmware_host.protocol.link_config import (
    DEFAULT_ACK_TIMEOUT,
    DEFAULT_MAX_RETRIES,
    DEFAULT_WINDOW,
    board_config,
)
from firmware_host.protocol.upload import DEFAULT_MAX_UPLOAD
from firmware_host.transport import DEFAULT_BAUD, FdStream, ThrottledStream, open_port

from .agent import AGENT_VERSION, BoardAgent
from .micro import MicroAllocationFailed
from .runtime import ALL_RUNTIMES, KERNELS, RuntimeUnavailable, load_runtime


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python3 -m firmware_host.board",
        description="tinysep board agent: separate audio streamed over a serial link.",
    )
    where = parser.add_mutually_exclusive_group(required=True)
    where.add_argument("--port", help="serial device or pyserial URL, e.g. /dev/ttyGS0")
    where.add_argument("--fd", type=int, help="serve an inherited file descriptor (emulator)")
    parser.add_argument("--bundle", required=True, help="deploy bundle folder (manifest.json)")
    parser.add_argument("--edgetpu", action="store_true", help="run on the Edge TPU delegate")
    parser.add_argument(
        "--baud",
        type=int,
        default=None,
        help=f"line speed of --port (default {DEFAULT_BAUD}); also sets the resend timer",
    )
    parser.add_argument(
        "--throttle-baud",
        type=int,
        default=None,
        metavar="N",
        help="pace the link to N baud like a UART (emulation)",
    )
    parser.add_argument(
        "--runtime",
        default="auto",
        choices=("auto",) + ALL_RUNTIMES,
        help="TFLite runtime (default: the first of ai_edge_litert, tflite_runtime, tensorflow "
        "that imports); tflite_micro runs TensorFlow Lite Micro's own kernels",
    )
    parser.add_argument(
        "--kernels",
        default="default",
        choices=KERNELS,
        help="reference: the runtime's reference kernels (slower; across runtime versions "
        "they differ only where int8 FULLY_CONNECTED rounds a tie, 1 LSB)",
    )
    parser.add_argument("--threads", type=int, default=1, help="interpreter threads (default 1)")
    parser.add_argument(
        "--ack-timeout",
        type=float,
        default=DEFAULT_ACK_TIMEOUT,
        help="link retransmission timeout on a fast line, seconds",
    )
    parser.add_argument(
        "--max-retries",
        type=int,
        default=DEFAULT_MAX_RETRIES,
        help="retransmissions before the link gives up",
    )
    parser.add_argument("--window", type=int, default=DEFAULT_WINDOW,
                        help="receive window, messages (1..255)")
    parser.add_argument(
        "--max-payload",
        type=int,
        default=DEFAULT_MAX_PAYLOAD,
        help="largest frame payload this board accepts (64..65535)",
    )
    parser.add_argument(
        "--max-message",
        type=int,
        default=None,
        help="largest message this board reassembles, bytes (>= max payload; default 1 MiB; "
        "equal to --max-payload on a board without a reassembly buffer)",
    )
    parser.add_argument(
        "--max-upload",
        type=int,
        default=DEFAULT_MAX_UPLOAD,
        help="largest model upload accepted, bytes (the flash bank it goes to; default 64 MiB)",
    )
    parser.add_argument("--quiet", action="store_true", help="log nothing to stderr")
    return parser


def main(argv=None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if args.max_upload < 1:
        parser.error(f"--max-upload must be at least 1 byte, got {args.max_upload}")
    log = (lambda text: None) if args.quiet else None
    try:
        runtime = load_runtime(args.runtime)
        agent = BoardAgent(
            args.bundle,
            runtime,
            edgetpu=args.edgetpu,
            num_threads=args.threads,
            log=log,
            kernels=args.kernels,
            max_upload=args.max_upload,
        )
    except (RuntimeUnavailable, MicroAllocationFailed, FileNotFoundError) as exc:
        sys.stderr.write(f"{AGENT_VERSION}: error: {exc}\n")
        return 2
    try:
        if args.fd is not None:
            stream = FdStream(args.fd)
            line_baud = None
        else:
            line_baud = args.baud or DEFAULT_BAUD
            stream = open_port(args.port, line_baud)
    except (OSError, RuntimeError, ValueError) as exc:
        sys.stderr.write(f"{AGENT_VERSION}: error: {exc}\n")
        return 2
    if args.throttle_baud:
        stream = ThrottledStream(stream, args.throttle_baud)
        line_baud = args.throttle_baud
    config = board_config(
        baud=line_baud,
        ack_timeout=args.ack_timeout,
        max_retries=args.max_retries,
        window=args.window,
        max_payload=args.max_payload,
    )
    if args.max_message is not None:
        config.max_message = args.max_message
    try:
        config.check()  # limits this board announces must be ones a HELLO may carry
    except ValueError as exc:
        sys.stderr.write(f"{AGENT_VERSION}: error: {exc}\n")
        stream.close()
        return 2
    stopping = []

    def stop(signum, frame):
        stopping.append(signum)

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    link = Link(stream, config, name="board")
    link.announce()
    if not args.quiet:
        sys.stderr.write(
            f"[{AGENT_VERSION}] serving {args.port or 'fd ' + str(args.fd)} "
            f"with {runtime.label} [{agent.delegate}]\n"
        )
        sys.stderr.flush()
    try:
        agent.serve(link, should_stop=lambda: bool(stopping))
    finally:
        link.close(close_stream=True)
    return 0


if __name__ == "__main__":
    sys.exit(main())
