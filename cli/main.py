"""The `tinysep` command line: one thin parser over the library, one module per subcommand.

The top layer of the kit: it imports every subcommand module (over the library, the converter and
the harness); each keeps its heavy imports (TensorFlow, librosa) inside ``run`` so that
``tinysep --help`` stays fast (see :mod:`cli.common`).
"""

from __future__ import annotations

import argparse
import sys
from types import ModuleType

import tinysep
from cli import (
    ablate,
    bench,
    board,
    demo,
    evaluate,
    export,
    flash,
    hil_run,
    models,
    prune,
    quantize,
    separate,
    soup,
    sweep,
    synth,
    train,
)
from cli.common import add_command, run_command

# name -> (module, one-line help). Order follows the data flow.
COMMANDS: dict[str, tuple[ModuleType, str]] = {
    # tinysep/: data, models, evaluation
    "synth": (synth, "write a synthetic vocals/accompaniment corpus"),
    "eval": (evaluate, "evaluate separation methods: BSS-eval table + JSON"),
    "models": (models, "list separators x presets: parameters, MACs per hop"),
    "train": (train, "train a separator: checkpoints, validation SDR, resume"),
    "soup": (soup, "average trained models of one graph into one (greedy on a corpus)"),
    "ablate": (ablate, "unet-se-sru ablation: SE, recurrence, norm variants"),
    # convert/ and calibration/: prune, quantize, export, sweep
    "prune": (prune, "prune a model: magnitude (tfmot) or channel pruning"),
    "quantize": (quantize, "quantize (PTQ / QAT) and measure SDR vs float"),
    "export": (export, "write a deploy bundle: streaming int8 TFLite, manifest"),
    "sweep": (sweep, "sparsity x quantization x calibration grid + plot"),
    # hil/ and firmware_host/: flash, board, hil
    "flash": (flash, "upload a bundle's model to a board agent over serial"),
    "board": (board, "run the board agent on a port, or --emulate it on a pty"),
    "hil": (hil_run, "hardware-in-the-loop test: board vs float, report + JUnit"),
    # the whole chain: bench, demo
    "separate": (separate, "separate songs into one audio file per source"),
    "bench": (bench, "measure speed (evaluation throughput, ...)"),
    "demo": (demo, "run the main job end to end on the embedded default"),
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinysep",
        description="Train, quantize, deploy and hardware-test a small music separator.",
    )
    parser.add_argument("--version", action="version", version=f"tinysep {tinysep.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module, help_text) in COMMANDS.items():
        add_command(sub, name, module, help_text)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    return run_command(args.command, args._module, args)


if __name__ == "__main__":
    sys.exit(main())
