"""Every subcommand's help: each option says what it does and, when it has a default, what
the default is; no word in it means something only to the kit's developers."""

from __future__ import annotations

import argparse
import re

import pytest

from cli.main import COMMANDS, build_parser

INTERNAL = re.compile(r"\bissues?\b|(?-i:SECTIONS)|\bpaper [12]\b|\bticket|\bhelper\b",
                      re.IGNORECASE)


def _subparsers() -> dict[str, argparse.ArgumentParser]:
    parser = build_parser()
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(sub.choices)


def _has_default(action: argparse.Action) -> bool:
    default = action.default
    if default is None or default is False or default is argparse.SUPPRESS:
        return False
    return not (isinstance(default, (list, tuple, str)) and not default)


@pytest.mark.parametrize("name", list(COMMANDS))
def test_every_option_has_help_that_states_its_default(name):
    parser = _subparsers()[name]
    formatter = parser._get_formatter()
    checked = 0
    for action in parser._actions:
        if isinstance(action, argparse._HelpAction) or action.help == argparse.SUPPRESS:
            continue
        label = "/".join(action.option_strings) or action.dest
        assert action.help and action.help.strip(), f"{name} {label}: no help text"
        shown = formatter._expand_help(action)
        if action.option_strings and _has_default(action):
            assert "default" in shown.lower(), f"{name} {label}: help does not state the default"
            if "%(default)" in formatter._get_help_string(action):
                assert str(action.default) in shown
        checked += 1
    assert checked > 0
    text = parser.format_help()
    assert not INTERNAL.search(text), f"{name}: {INTERNAL.search(text).group(0)!r} in the help"


def test_the_formatter_appends_only_missing_defaults():
    parser = argparse.ArgumentParser(formatter_class=_subparsers()["eval"].formatter_class)
    parser.add_argument("--rate", type=int, default=16000, help="sample rate")
    parser.add_argument("--gain", default="0", help="gain in dB (default 0)")
    parser.add_argument("--flag", action="store_true", help="a switch")
    parser.add_argument("--many", action="append", default=[], help="repeatable")
    text = " ".join(parser.format_help().split())
    assert "sample rate (default: 16000)" in text
    assert "gain in dB (default 0)" in text and "(default: 0)" not in text
    assert "a switch" in text and "a switch (default" not in text
    assert "repeatable (default" not in text


def test_top_level_help_has_no_internal_words():
    text = build_parser().format_help()
    assert not INTERNAL.search(text)


@pytest.mark.parametrize("argv, message", [
    (["flash", "--port", "/dev/null", "--bundle", "b", "--timeout", "nan"],
     "argument --timeout: expected a finite number, got 'nan'"),
    (["flash", "--port", "/dev/null", "--bundle", "b", "--timeout", "0"],
     "argument --timeout: expected a number > 0, got '0'"),
    (["flash", "--port", "/dev/null", "--bundle", "b", "--baud", "-1"],
     "argument --baud: expected a whole number from 1 to 100000000, got '-1'"),
    (["board", "--emulate", "--bundle", "b", "--baud", "99999999999999"],
     "argument --baud: expected a whole number from 1 to 100000000"),
    (["hil", "--emulate", "--bundle", "b", "--float", "f", "--data", "d", "--report", "r",
      "--max-lsb", "-7"], "argument --max-lsb: expected a whole number >= -1, got '-7'"),
    (["hil", "--emulate", "--bundle", "b", "--float", "f", "--data", "d", "--report", "r",
      "--min-realtime", "-1"], "argument --min-realtime: expected a number >= 0, got '-1'"),
])
def test_board_options_out_of_range_are_refused_at_parsing(argv, message, capsys):
    with pytest.raises(SystemExit) as stop:
        build_parser().parse_args(argv)
    assert stop.value.code == 2
    assert message in capsys.readouterr().err


@pytest.mark.parametrize("command", [
    ["synth", "--songs", "1"], ["separate", "song.wav"], ["soup", "a", "b"],
    ["export", "model", "--quant", "float16"]])
def test_an_output_folder_under_a_file_is_refused_by_name(command, tmp_path, capsys):
    from cli.main import main

    (tmp_path / "afile").write_text("mine")
    out = tmp_path / "afile" / "sub"
    assert main([*command, "--out", str(out)]) == 2
    assert f"--out {out} is not a folder: {tmp_path / 'afile'} is a file" in \
        capsys.readouterr().err
    assert (tmp_path / "afile").read_text() == "mine"


@pytest.mark.parametrize("symbol", ["1bad", "é_model", "my-model", ""])
def test_export_refuses_a_symbol_that_is_no_c_identifier_before_any_work(symbol, tmp_path,
                                                                        capsys):
    from cli.main import main

    out = tmp_path / "bundle"
    assert main(["export", str(tmp_path / "no-model"), "--out", str(out), "--quant", "float16",
                 "--symbol", symbol]) == 2
    assert "--symbol: C symbol must be a C identifier" in capsys.readouterr().err
    assert not out.exists()
