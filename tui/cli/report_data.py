"""`tokstep report --data FILE [--rows 11-15]`: a printed report for the rows of a data file.

Per row: its number (the 1-based line of a JSONL/JSON file, the 1-based row of a Parquet file: the numbers the
browser and `tokstep lint` show), token and supervised counts, the loss (one teacher-forced pass, tokstep's
mean CE), the lint findings, and the decoded supervised text: what the model is trained to say.
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.text import Text

import tokstep.tui.cli.output as output
from tokstep.engine.errors import TokstepError
from tokstep.engine.lints.duplicates import DuplicateRows
from tokstep.engine.lints.finding_records import envelope, finding_record
from tokstep.engine.lints.rows import lint_row
from tokstep.engine.model.tokens import TRAINED_GAP, trained_text
from tokstep.tui import exit_codes
from tokstep.tui.cli.engine_calls import load_shown
from tokstep.tui.cli.lint_cmd import open_data_from_args
from tokstep.tui.cli.report import convention_lines, findings_grid, fmt_loss, report_console
from tokstep.tui.palette import GOOD
from tokstep.tui.severity import severity_style

if TYPE_CHECKING:
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.tui.cli.run_config import RunConfig

RowRanges = list[tuple[int, int | None]]  # inclusive (first, last); last None: to the end


def parse_rows(text: str | None) -> RowRanges | None:
    """`11-15`, `3,7,20-`, `-5` -> inclusive ranges of 1-based numbers; None selects every row."""

    if text is None:
        return None
    if not text.strip():
        raise TokstepError("--rows needs row numbers, e.g. 11-15 or 3,7,20-")
    ranges: RowRanges = []
    for part in text.split(","):
        part = part.strip()
        if not part or part == "-":
            raise TokstepError(
                f"--rows {text!r}: an empty range; use numbers and ranges like 11-15 or 3,7,20-"
            )
        first, dash, last = part.partition("-")
        try:
            lo = int(first) if first.strip() else 1
            hi = (int(last) if last.strip() else None) if dash else lo
        except ValueError:
            raise TokstepError(f"--rows {text!r}: use numbers and ranges like 11-15 or 3,7,20-") from None
        if lo < 1 or (hi is not None and hi < lo):
            raise TokstepError(f"--rows {text!r}: rows are numbered from 1, ranges go up (11-15)")
        ranges.append((lo, hi))
    return ranges


def row_number(row: Any) -> int:
    """The number a row is shown with everywhere: its 1-based line (JSONL/JSON) or row (Parquet)."""
    return row.line if row.line is not None else row.index + 1


def selected_rows(data: Any, ranges: RowRanges | None) -> Iterator[Any]:
    """The rows whose number falls in `ranges` (numbers only grow, so reading stops after the last range)."""
    last = None if ranges is None or any(hi is None for _, hi in ranges) else max(hi for _, hi in ranges)
    for row in data.rows():
        number = row_number(row)
        if last is not None and number > last:
            return
        if ranges is None or any(lo <= number and (hi is None or number <= hi) for lo, hi in ranges):
            yield row


def supervised_text(tokenizer: Any, labels: Any) -> list[str]:
    """The supervised tokens decoded span by span, special tokens kept (what the model is trained to say):
    engine.model.tokens.trained_text, one string per span."""

    text = trained_text(tokenizer, labels)
    return text.split(TRAINED_GAP) if text else []


def visible(text: str) -> str:
    """Whitespace that matters made visible: a newline is `↵` then a real line break, a tab `→`."""
    return text.replace("\t", "→").replace("\n", "↵\n")


def indented(text: str, spaces: int, style: str = "") -> Text:
    """Every line of `text` indented (no padding to the console width: piped output stays tidy)."""
    pad = " " * spaces
    return Text(pad + text.replace("\n", "\n" + pad), style=style)


def print_row(
    console: Console, row: Any, lint: Any, loss: float | None, error: str | None, tokenizer: Any
) -> None:

    head = Text.assemble((row.where, "bold"))
    if lint.sample is not None:
        head.append(
            f"  {lint.sample.kind}  {lint.num_tokens} tokens, {lint.num_supervised} supervised  loss "
        )
        head.append(fmt_loss(loss) if error is None else "—")
    counts = [(lint.count(severity), severity) for severity in ("error", "warning", "info")]
    summary = ", ".join(f"{n} {sev}{'s' if n > 1 and sev != 'info' else ''}" for n, sev in counts if n)
    head.append("  lints: ")
    worst = next((severity for n, severity in counts if n), None)
    head.append(summary or "none", style=severity_style(worst) if worst else GOOD)
    console.print(head)
    if error is not None:
        console.print(indented(f"cannot trace: {error}", 2, "red"))
    if lint.findings:
        console.print(findings_grid(lint.findings))  # the convention: once, at the end of the report
    if lint.sample is not None:
        spans = supervised_text(tokenizer, lint.sample.labels)
        console.print(indented("trained to say:", 2, "bold"))
        if not spans:
            console.print(indented("(nothing: every label is -100)", 4, "dim"))
        for span in spans:
            console.print(indented("«" + visible(span) + "»", 4))
    console.print()


def run_data_report(args: RunConfig, model: ModelSpec) -> int:
    # lazy: loads torch
    from tokstep.engine.model.trace import trace_sample

    given = [
        name for name in ("text", "file", "chat", "ids", "demo", "prompt", "answer") if getattr(args, name)
    ]
    if given:
        raise TokstepError(f"--data reports a data file; drop --{given[0]} (one sample) or --data")
    if args.html or args.svg or args.incremental:
        raise TokstepError("--data prints a report; --html, --svg and --incremental are for one sample")
    ranges = parse_rows(args.rows)
    data = open_data_from_args(args, args.data)
    loaded = load_shown(model, Console(stderr=True))
    to_stdout = args.json == output.STDOUT
    console = report_console() if not to_stdout else Console(file=io.StringIO())  # JSON alone on stdout
    console.print(Text.assemble(("tokstep report  ", "bold"), f"{args.data}  model {loaded.info.name}"))
    shown, findings, records, rows = 0, [], [], []
    duplicates = DuplicateRows()  # rows repeated among the selected ones
    try:
        for row in selected_rows(data, ranges):
            lint = duplicates.check(lint_row(loaded.tokenizer, row))
            loss, error = None, None
            if lint.sample is not None:
                try:
                    loss = trace_sample(loaded, lint.sample, top_k=1).loss
                except TokstepError as problem:
                    error = str(problem)
            print_row(console, row, lint, loss, error, loaded.tokenizer)
            findings += lint.findings
            records += [finding_record(f, row=row.index + 1, line=row.line) for f in lint.findings]
            rows.append(row_json(row, lint, loss, error))
            shown += 1
    finally:
        data.close()
    if shown == 0:
        raise TokstepError(
            f"--rows {args.rows}: no such rows in {args.data}" if ranges else f"{args.data} has no rows"
        )
    for line in convention_lines(findings):
        console.print(line, highlight=False)
    console.print(f"{shown} row(s)", style="dim")
    if args.json:
        payload = {**envelope(records), "file": args.data, "model": loaded.info.name, "rows": rows}
        output.write_json(payload, args.json, args.force)
    return exit_codes.report_status(findings)  # 1 when a row has an error-level lint, as `tokstep lint`


def row_json(row: Any, lint: Any, loss: float | None, error: str | None) -> dict[str, Any]:
    """One row of `report --data --json`: where it is and what the printed head line says (its findings are
    in the top-level `findings`, with this row's number)."""
    return {
        "row": row.index + 1,
        "line": row.line,
        "kind": None if lint.sample is None else lint.sample.kind,
        "tokens": lint.num_tokens,
        "supervised": lint.num_supervised,
        "loss": None if loss is None or loss != loss else loss,
        "error": error,
        "trained": lint.trained,
    }
