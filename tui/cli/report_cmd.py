"""`tokstep report` for one sample: load, trace, write the JSON/HTML/SVG asked for, print the report.

`--data` hands over to tui/cli/report_data.py, `--batches` and `--compare` go to their own modules (tui/cli/main.py).
"""

from __future__ import annotations

import sys
from typing import TYPE_CHECKING

import tokstep.tui.cli.output as output
from tokstep.engine.errors import TokstepError
from tokstep.engine.lints.sample_lints import lint_sample
from tokstep.tui import exit_codes
from tokstep.tui.cli.engine_calls import load_and_run
from tokstep.tui.cli.report import print_diagnostics, print_report, report_console, write_json, write_jsonl
from tokstep.tui.cli.report_data import run_data_report
from tokstep.tui.cli.share import write_shared

if TYPE_CHECKING:
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.tui.cli.run_config import RunConfig


def run_report(args: RunConfig, model: ModelSpec, sample: SampleSpec) -> int:
    # lazy: loads torch
    from tokstep.engine.model.session import run_trace

    output.check_target(args.json, args.force)
    output.check_target(args.jsonl, args.force, "--jsonl")
    output.check_target(args.html, args.force, "--html")
    output.check_target(args.svg, args.force, "--svg")
    if args.rows and not args.data:
        raise TokstepError("--rows picks rows of a --data file: give --data FILE")
    if args.data:
        return run_data_report(args, model)
    result = load_and_run(
        model,
        lambda loaded, progress: run_trace(
            loaded,
            sample,
            top_k=args.top_k,
            reference=args.reference,
            incremental=args.incremental,
            progress=progress,
        ),
    )
    if result.nonfinite_error:
        print(f"tokstep: error: {result.nonfinite_error}", file=sys.stderr)
        return exit_codes.NONFINITE
    findings = lint_sample(result.texts.tokenizer, result.sample, sample)
    if args.json:
        write_json(result, args.json, args.force, findings)
    if args.jsonl:
        write_jsonl(result, args.jsonl, args.force, findings)
    if args.html or args.svg:
        write_shared(result, html=args.html, svg=args.svg, colour_by=args.colour_by, force=args.force)
    if output.STDOUT not in (args.json, args.jsonl):
        console = report_console()
        print_report(result, console, args.limit)
        print_diagnostics(result, sample, console, findings)
    return exit_codes.report_status(findings)  # 1 on an error-level lint, as `tokstep lint` exits


__all__ = ["run_report"]
