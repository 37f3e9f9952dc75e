"""The run configuration: one typed field per flag, the flag's default as the field's default, frozen."""

from __future__ import annotations

import dataclasses

import pytest
from import_graph import all_imports, modules

from tokstep.tui.cli.main import _actions, build_parser
from tokstep.tui.cli.run_config import RunConfig


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
    from tokstep.tui.cli.main import parse

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
    # GIVEN every tui module but the CLI and the modules that declare flags on its parser
    declaring = {
        "tokstep.tui.cli.main",
        "tokstep.tui.cli.run_config",
        "tokstep.tui.cli.flag_rules",
        "tokstep.tui.cli.lint_cmd",
        "tokstep.tui.cli.scan_cmd",
        "tokstep.tui.cli.batch_report",
    }
    importers = {i.source for i in all_imports() if i.target == "argparse"}
    offenders = sorted(n for n in importers if n.startswith("tokstep.tui") and n not in declaring)
    reading = {"tokstep.tui.cli.main", "tokstep.tui.cli.run_config"}
    for name, path in modules().items():
        if name.startswith("tokstep.tui") and name not in reading and "Namespace" in path.read_text("utf-8"):
            offenders.append(f"{name}: Namespace")
    # THEN none of them touches argparse
    assert offenders == []
