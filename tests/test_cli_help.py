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
