"""The flag table (`tui/flag_rules.py`) agrees with the parsers: every flag a sub-command's parser defines is
one it uses, and every flag is used somewhere. A flag added to a parser but not to the table fails here."""

from __future__ import annotations

import argparse

import pytest

from tokstep.tui import flag_rules
from tokstep.tui.cli import build_parser, main, parse


def own_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {
        a.dest
        for a in parser._actions
        if a.dest not in ("help", "command") and a.help is not argparse.SUPPRESS
    }


def sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize("command", ["report", "lint"])
def test_every_flag_of_a_sub_command_is_in_its_table_row(command):
    parser = sub_parsers(build_parser())[command]
    assert own_dests(parser) - flag_rules.ACCEPTS[command] == set()


def test_every_top_level_flag_is_used_by_the_debugger_or_the_browser():
    top = own_dests(build_parser())
    assert top - (flag_rules.ACCEPTS["stepper"] | flag_rules.ACCEPTS["browser"]) == set()


def test_every_flag_in_the_table_exists():
    parser = build_parser()
    known = own_dests(parser) | {d for p in sub_parsers(parser).values() for d in own_dests(p)}
    for mode, accepted in flag_rules.ACCEPTS.items():
        assert accepted - known == set(), mode


@pytest.mark.parametrize(
    ("argv", "mode"),
    [
        (["report"], "report"),
        (["lint", "f.jsonl"], "lint"),
        ([], "stepper"),
        (["--data", "f.jsonl"], "browser"),
    ],
)
def test_the_mode_follows_the_command_line(argv, mode):
    args, given = parse(build_parser(), argv)
    assert flag_rules.mode_of(args.command, "data" in given) == mode


def test_defaults_are_filled_in_and_given_flags_are_told_apart():
    args, given = parse(build_parser(), ["--model", "m", "report", "--top-k", "10"])
    assert given == {"model", "top_k"}
    assert (args.dtype, args.device, args.top_k, args.json, args.force, args.bos) == (
        "auto",
        "auto",
        10,
        None,
        False,
        "auto",
    )


def test_the_issue_example_is_an_error_naming_the_flag_and_the_command(capsys):
    assert main(["--model", "m", "--data", "train.jsonl", "report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tokstep: error: --data is not used by `tokstep report`: it reports one sample "
        "(`tokstep --data FILE` browses a data file, `tokstep lint FILE` checks one)"
    ]


def test_flags_are_never_abbreviated(capsys):
    assert main(["report", "--tex", "hi"]) == 2
    assert "unknown flag --tex" in capsys.readouterr().err
