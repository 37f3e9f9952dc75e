"""The run configuration: one typed field per flag, the flag's default as the field's default, frozen."""

from __future__ import annotations

import dataclasses
from pathlib import Path

import pytest

from tokstep.tui.cli import _actions, build_parser
from tokstep.tui.run_config import RunConfig

ROOT = Path(__file__).resolve().parent.parent


def test_every_flag_has_a_field_with_the_flags_default():
    # GIVEN the whole parser (every mode's flags)
    parser = build_parser()
    dests = {a.dest for a in _actions(parser)} - {"help", "command"}
    fields = {f.name: f.default for f in dataclasses.fields(RunConfig)}
    # THEN the configuration has exactly these fields (and `command`), defaulting as the flags do
    assert set(fields) - {"command"} == dests
    defaults = parser.real_defaults  # type: ignore[attr-defined]
    assert {d: fields[d] for d in dests} == {d: defaults[d] for d in dests}


def test_a_parsed_command_line_becomes_a_frozen_configuration():
    from tokstep.tui.cli import parse

    args, _given = parse(build_parser(), ["report", "--text", "hi", "--top-k", "3", "--reference", "off"])
    config = RunConfig.from_namespace(args)
    assert (config.command, config.text, config.top_k, config.reference) == ("report", "hi", 3, "off")
    with pytest.raises(dataclasses.FrozenInstanceError):
        config.top_k = 5  # type: ignore[misc]


def test_a_flag_without_a_field_is_named():
    import argparse

    with pytest.raises(TypeError, match="no_such_flag"):
        RunConfig.from_namespace(argparse.Namespace(no_such_flag=1))


def test_nothing_past_cli_reads_argparse():
    # GIVEN every tui module but cli.py and the modules that declare flags on cli.py's parser
    declaring = {"cli.py", "run_config.py", "flag_rules.py", "lint_cmd.py", "scan_cmd.py", "batch_report.py"}
    offenders = []
    for path in sorted((ROOT / "tui").rglob("*.py")):
        text = path.read_text()
        if "Namespace" in text and path.name not in {"cli.py", "run_config.py"}:
            offenders.append(f"{path.name}: Namespace")
        if path.name not in declaring and "argparse" in text:
            offenders.append(f"{path.name}: argparse")
    assert offenders == []
