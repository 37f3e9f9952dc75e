"""The flag table (`tui/cli/flag_rules.py`) agrees with the parsers: every flag a sub-command's parser defines is
one it uses, and every flag is used somewhere. A flag added to a parser but not to the table fails here."""

from __future__ import annotations

import argparse

import pytest

import tokstep.tui.cli.flag_rules as flag_rules
from tokstep.tui.cli.main import build_parser, main, parse


def own_dests(parser: argparse.ArgumentParser) -> set[str]:
    return {
        a.dest
        for a in parser._actions
        if a.dest not in ("help", "command") and a.help is not argparse.SUPPRESS
    }


def sub_parsers(parser: argparse.ArgumentParser) -> dict[str, argparse.ArgumentParser]:
    action = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return dict(action.choices)


@pytest.mark.parametrize(
    ("command", "modes"), [("report", ["report", "report-data", "report-batches"]), ("lint", ["lint"])]
)
def test_every_flag_of_a_sub_command_is_in_its_table_rows(command, modes):
    parser = sub_parsers(build_parser())[command]
    assert own_dests(parser) - set().union(*(flag_rules.ACCEPTS[m] for m in modes)) == set()


def test_every_top_level_flag_is_used_by_the_debugger_on_a_sample_a_data_file_or_batches():
    top = own_dests(build_parser())
    accepts = flag_rules.ACCEPTS
    assert top - (accepts["stepper"] | accepts["browser"] | accepts["batches"]) == set()


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
        (["--batches", "b.jsonl"], "batches"),
        (["report", "--batches", "b.jsonl"], "report-batches"),
        (["lint", "f.jsonl", "--batches", "b.jsonl"], "lint"),
    ],
)
def test_the_mode_follows_the_command_line(argv, mode):
    try:
        args, given = parse(build_parser(), argv)
    except Exception as error:  # lint does not take --batches: the rules said so, naming lint
        assert mode == "lint" and "--batches is not used by `tokstep lint`" in str(error)
        return
    assert flag_rules.mode_of(args.command, "data" in given, "batches" in given) == mode


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


def test_the_issue_example_reports_the_data_file_never_the_demo(capsys):
    """`tokstep --model M --data train.jsonl report` once ignored --data; it is now the data report (issue 13)."""
    assert main(["--model", "m", "--data", "train.jsonl", "report"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == ["tokstep: error: data file not found: train.jsonl"]
    assert main(["--data", "train.jsonl", "report", "--text", "hi"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert err == [
        "tokstep: error: --text is not used by `tokstep report --data FILE`: each row of the data file is a sample"
    ]


def test_flags_are_never_abbreviated(capsys):
    assert main(["report", "--tex", "hi"]) == 2
    assert "unknown flag --tex" in capsys.readouterr().err


@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["report", "--batches", "b.jsonl", "--truncate", "8"],
            "--truncate is not used by `tokstep report --batches`",
        ),
        (
            ["report", "--batches", "b.jsonl", "--limit", "3"],
            "--limit is not used by `tokstep report --batches`",
        ),
        (
            ["--batches", "b.jsonl", "--data", "f.jsonl"],
            "--batches opens a file of trainer batches: drop --data",
        ),
        (["report", "--text", "hi", "--use-cache", "on"], "--use-cache is not used by `tokstep report`"),
        (["--text", "hi", "--attn-implementation", "eager"], "it applies to --batches FILE only"),
        (["--data", "f.jsonl", "--compare", "m"], "--compare is not used by `tokstep --data FILE`"),
        (["lint", "f.jsonl", "--compare-dtype", "float16"], "--compare-dtype is not used by `tokstep lint`"),
        (
            ["report", "--batches", "b.jsonl", "--compare", "m"],
            "--compare is not used by `tokstep report --batches`",
        ),
        (
            ["report", "--batches", "b.jsonl", "--bos", "none"],
            "--bos is not used by `tokstep report --batches`",
        ),
    ],
)
def test_batches_and_compare_flags_follow_the_same_rules(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and message in err[0], err


@pytest.mark.parametrize(
    "argv",
    [
        ["--batches", "b.jsonl", "--eot", "mask", "--inserted", "mask"],
        ["report", "--batches", "b.jsonl", "--eot", "mask", "--inserted", "mask"],
    ],
)
def test_batches_take_the_label_convention_flags(argv):
    """Batch rows are compared with their recovered chat turns: --eot / --inserted state the convention."""
    args, given = parse(build_parser(), argv)
    mode = flag_rules.mode_of(args.command, "data" in given, "batches" in given)
    assert mode in ("batches", "report-batches") and flag_rules.unused(mode, given) == []
    assert (args.eot, args.inserted) == ("mask", "mask")
