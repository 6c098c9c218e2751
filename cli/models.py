"""List the separators and their size presets: parameters, MACs per hop, streaming state.

One hop is one STFT frame (128 samples, 8 ms). ``fits MCU`` checks the Cortex-M7 budget
of the default model (<= 256 k parameters and <= 1 M multiply-accumulates per hop); the
deploy budgets (a 256 KiB int8 file, a 64 KiB TFLite Micro arena) are checked by export.
``--option key=value`` (repeatable, value parsed as JSON) shows the cost of a variant,
e.g. ``--model unet-se-sru --option recurrent=lstm``.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path


def add_arguments(parser: argparse.ArgumentParser) -> None:
    parser.add_argument(
        "--model", action="append", metavar="NAME", help="model to list (repeatable; default: all)"
    )
    parser.add_argument(
        "--preset",
        action="append",
        metavar="NAME",
        help="preset to list (repeatable; default: all of each model)",
    )
    parser.add_argument(
        "--option",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="override a hyper-parameter; VALUE is JSON (e.g. channels=[8,16])",
    )
    parser.add_argument(
        "--json",
        type=Path,
        metavar="OUT.json",
        help="also write the rows as JSON ('-' prints JSON instead of the table)",
    )


def parse_options(items: list[str]) -> dict:
    """``["k=v", ...]`` -> dict, values parsed as JSON when they parse, else strings."""
    from cli.common import CliError

    options = {}
    for item in items:
        key, sep, value = item.partition("=")
        if not sep or not key:
            raise CliError(f"--option expects KEY=VALUE, got {item!r}")
        try:
            options[key] = json.loads(value)
        except json.JSONDecodeError:
            options[key] = value
    return options


def format_table(rows: list[dict]) -> str:
    header = ("model", "preset", "params", "MACs/hop", "state", "fits MCU")
    lines = [header]
    for r in rows:
        state = "offline only" if r["state_values"] is None else f"{r['state_values']:,}"
        lines.append(
            (
                r["name"],
                r["preset"],
                f"{r['params']:,}",
                f"{r['macs_per_hop']:,}",
                state,
                "yes" if r["fits_mcu_budget"] else "no",
            )
        )
    widths = [max(len(row[i]) for row in lines) for i in range(len(header))]
    out = []
    for n, row in enumerate(lines):
        cells = [
            c.ljust(w) if i < 2 else c.rjust(w)
            for i, (c, w) in enumerate(zip(row, widths, strict=True))
        ]
        out.append("  ".join(cells))
        if n == 0:
            out.append("  ".join("-" * w for w in widths))
    return "\n".join(out)


def run(args: argparse.Namespace) -> int:
    from cli.common import CliError, check_output_file
    from tinysep.jsonfile import write_json_atomic
    from tinysep.models import MODELS
    from tinysep.models.registry import make_config
    from tinysep.models.summary import MCU_BUDGET, preset_rows

    if args.json is not None and str(args.json) != "-":
        check_output_file(args.json, "--json", command="models")
    names = args.model or list(MODELS)
    unknown = [n for n in names if n not in MODELS]
    if unknown:
        raise CliError(f"unknown model(s) {unknown}; choose from {sorted(MODELS)}")
    options = parse_options(args.option)
    configs = []
    for name in names:
        presets = args.preset or list(MODELS[name].presets)
        for preset in presets:
            configs.append(make_config(name, preset, **options))

    rows = preset_rows(configs)
    report = {"command": "models", "budget": MCU_BUDGET, "hop_samples": 128, "rows": rows}
    if args.json is not None and str(args.json) == "-":
        print(json.dumps(report, indent=2))
        return 0
    print(format_table(rows))
    print(
        f"\nstate: numbers carried between invokes (= int8 bytes); MCU budget: "
        f"<= {MCU_BUDGET['params']:,} parameters and <= {MCU_BUDGET['macs_per_hop']:,} "
        "MACs per 128-sample hop"
    )
    if args.json is not None:
        write_json_atomic(args.json, report, indent=2)
        print(f"wrote {args.json}")
    return 0
