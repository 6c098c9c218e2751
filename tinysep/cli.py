"""The `tinysep` command line: one thin parser over the library, one module per subcommand.

Each subcommand lives in a module that exposes ``add_arguments(parser)`` and
``run(args) -> int``; modules are imported only when needed and keep heavy imports
(TensorFlow, librosa) inside ``run`` so that ``tinysep --help`` stays fast.
"""

from __future__ import annotations

import argparse
import importlib
import sys

import tinysep

# name -> (module, one-line help). Order follows the data flow.
COMMANDS: dict[str, tuple[str, str]] = {
    # tinysep/: data, models, evaluation
    "synth": ("tinysep.commands.synth", "write a synthetic vocals/accompaniment corpus"),
    "eval": ("tinysep.commands.evaluate", "evaluate separation methods: BSS-eval table + JSON"),
    "models": ("tinysep.commands.models", "list separators x presets: parameters, MACs per hop"),
    "train": ("tinysep.commands.train", "train a separator: checkpoints, validation SDR, resume"),
    "ablate": ("tinysep.commands.ablate", "unet-se-sru ablation: SE, recurrence, norm variants"),
    # convert/ and calibration/: prune, quantize, export, sweep
    "prune": ("convert.commands.prune", "prune a model: magnitude (tfmot) or channel pruning"),
    "quantize": ("convert.commands.quantize", "quantize (PTQ / QAT) and measure SDR vs float"),
    "export": ("convert.commands.export", "write a deploy bundle: streaming int8 TFLite, manifest"),
    "sweep": ("convert.commands.sweep", "sparsity x quantization x calibration grid + plot"),
    # firmware_host/: flash, board, hil
    "flash": ("tinysep.commands.flash", "upload a bundle's model to a board agent over serial"),
    "board": ("tinysep.commands.board", "run the board agent on a port, or --emulate it on a pty"),
    "hil": ("tinysep.commands.hil", "hardware-in-the-loop test: board vs float, report + JUnit"),
    # the whole chain: bench, demo
    "separate": ("tinysep.commands.separate", "separate songs into one audio file per source"),
    "bench": ("tinysep.commands.bench", "measure speed (evaluation throughput, ...)"),
    "demo": ("tinysep.commands.demo", "run the main job end to end on the embedded default"),
}


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


class CliError(Exception):
    """A user-facing error: printed as one line, exit status 2."""


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="tinysep",
        description="Train, quantize, deploy and hardware-test a small music separator.",
    )
    parser.add_argument("--version", action="version", version=f"tinysep {tinysep.__version__}")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, (module_name, help_text) in COMMANDS.items():
        module = importlib.import_module(module_name)
        p = sub.add_parser(name, help=help_text, description=module.__doc__,
                           formatter_class=HelpFormatter)
        module.add_arguments(p)
        p.set_defaults(_module=module)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    if not getattr(args, "command", None):
        parser.print_help()
        return 2
    if getattr(args._module, "USES_TENSORFLOW", True):
        from tinysep.quiet import import_tensorflow

        import_tensorflow()  # without the CUDA / absl start-up lines
    try:
        return int(args._module.run(args) or 0)
    except CliError as exc:
        print(f"tinysep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except (FileNotFoundError, NotADirectoryError, ValueError) as exc:
        print(f"tinysep {args.command}: error: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"tinysep {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
