"""`tokstep lint FILE`: run the lints over a data file with the model's tokenizer only, for people and CI.

Prints a Rich summary (one line per lint that fired) and the findings row by row; `--json` writes the
same as JSON. Exit status: 0 clean, 1 when an error-level lint fired (or a warning, with
`--fail-on warning`), 2 for bad input (missing file, unloadable tokenizer...), 4 for a bug in tokstep:
a failure is never reported as findings. A row that cannot be read is a `bad-row` finding; linting goes on.
"""

from __future__ import annotations

import argparse
import gc
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.table import Table
from rich.text import Text

import tokstep.tui.cli.output as output
from tokstep.engine.errors import TokstepError
from tokstep.engine.lints.catalogue import LINTS, SEVERITIES
from tokstep.engine.lints.finding_records import envelope, finding_record
from tokstep.tui.cli.progress import RowProgress
from tokstep.tui.cli.report import report_console
from tokstep.tui.exit_codes import EXIT_STATUS_HELP, FINDINGS, OK
from tokstep.tui.severity import SEVERITY_RANK, SEVERITY_STYLE

if TYPE_CHECKING:
    from tokstep.engine.inputs.data import Columns, DataFile
    from tokstep.engine.lints.rows import RowLint
    from tokstep.tui.cli.run_config import RunConfig


DATA_HELP = (
    "a .jsonl (.gz/.zst), .json, .parquet or .arrow file, a save_to_disk folder, "
    "or a data set name in the local Hugging Face cache (org/name)"
)


def add_column_flags(parser: argparse.ArgumentParser) -> None:
    """The flags that name a data file's columns (shared by `tokstep --data` and `tokstep lint`)."""
    group = parser.add_argument_group("data columns (defaults: the usual names)")
    group.add_argument("--text-column", default="text", metavar="NAME", help="plain text (default: text)")
    group.add_argument("--prompt-column", default="prompt", metavar="NAME", help="prompt (default: prompt)")
    group.add_argument(
        "--answer-column", metavar="NAME", help="answer (default: completion, answer, response or output)"
    )
    group.add_argument(
        "--messages-column", metavar="NAME", help="chat messages (default: messages, conversations)"
    )
    group.add_argument(
        "--ids-column", default="input_ids", metavar="NAME", help="token ids (default: input_ids)"
    )
    group.add_argument("--labels-column", default="labels", metavar="NAME", help="labels (default: labels)")
    group.add_argument(
        "--split",
        metavar="NAME",
        help="the split of a DatasetDict folder or cached hub data set (e.g. train)",
    )


def columns_from_args(args: RunConfig) -> Columns:
    # lazy: loads numpy
    from tokstep.engine.inputs.data import Columns

    defaults = Columns()
    answer, messages = args.answer_column, args.messages_column
    return Columns(
        text=args.text_column,
        prompt=args.prompt_column,
        answer=(answer,) if answer else defaults.answer,
        messages=(messages,) if messages else defaults.messages,
        input_ids=args.ids_column,
        labels=args.labels_column,
    )


def open_data_from_args(args: RunConfig, path: str) -> DataFile:
    # lazy: loads numpy
    from tokstep.engine.inputs.data_sources import open_source

    return open_source(
        path,
        columns_from_args(args),
        args.split,
        bos=args.bos,
        eos=args.eos,
        truncate=args.truncate,
        eot=args.eot,
        inserted=args.inserted,
    )


def add_row_flags(parser: argparse.ArgumentParser) -> None:
    """How every row of a data file becomes a sample (`lint`, `scan`): BOS/EOS, truncation, the mask convention."""
    parser.add_argument(
        "--bos", default="auto", choices=["auto", "add", "none"], help="as for a single sample"
    )
    parser.add_argument(
        "--eos", default="auto", choices=["auto", "add", "none"], help="as for a single sample"
    )
    parser.add_argument("--truncate", type=int, metavar="N", help="keep only the first N tokens of each row")
    for flag in ("--eot", "--inserted"):
        parser.add_argument(
            flag,
            default="train",
            choices=["train", "mask"],
            help="as for a single chat (for ids rows: the convention their labels are checked against)",
        )


def add_lint_parser(commands: Any, add_model_flags: Any) -> None:
    lint = commands.add_parser(
        "lint",
        help="check a data file for tokenization and masking problems (tokenizer only, no forward pass)",
        description="Run tokstep's lints over every row of a data file, save_to_disk folder or cached data set.\n"
        "Exits 1 when an error-level lint fires, so it can guard a data pipeline.",
        epilog=EXIT_STATUS_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    lint.add_argument("file", help=DATA_HELP)
    add_model_flags(lint, tokenizer_only=True)  # no --dtype / --device: lint loads no weights
    add_column_flags(lint)
    group = lint.add_argument_group("output")
    group.add_argument(
        "--json",
        nargs="?",
        const="-",
        metavar="PATH",
        help="write the findings as JSON (to stdout when no PATH)",
    )
    group.add_argument("--force", action="store_true", help="allow --json to overwrite an existing file")
    group.add_argument("--max-rows", type=int, metavar="N", help="lint only the first N rows")
    group.add_argument(
        "--jobs",
        type=int,
        metavar="N",
        help="processes to lint with (default: every core this process may use)",
    )
    group.add_argument(
        "--show", type=int, default=20, metavar="N", help="print findings of at most N rows (default 20)"
    )
    group.add_argument(
        "--fail-on",
        choices=["error", "warning"],
        default="error",
        help="lowest severity that fails (default error)",
    )
    group.add_argument(
        "--strict", action="store_true", help="warnings count in the exit status too (= --fail-on warning)"
    )
    add_row_flags(lint)


@dataclass
class LintSummary:
    """Streaming totals over a data file; only rows with findings are kept, slimmed (no text, no arrays)."""

    rows: int = 0
    rows_with: Counter[str] = field(default_factory=Counter)  # severity -> rows with at least one
    rows_per_code: Counter[str] = field(default_factory=Counter)
    rows_per_kind: Counter[tuple[str, str]] = field(default_factory=Counter)  # (code, severity) -> rows
    flagged: list[RowLint] = field(default_factory=list)
    structured: int = 0  # rows whose chat structure was recovered from the ids
    disagreeing: int = 0  # ... of which the labels disagree with it somewhere
    disagreeing_tokens: int = 0
    eot: str = "train"  # the convention's flags the rows were compared under (--eot, --inserted)
    inserted: str = "train"
    duplicates: Any = None  # engine.lints.duplicates.DuplicateRows: adds `duplicate-rows` to a repeated row

    def add(self, result: RowLint) -> None:
        if self.duplicates is None:
            # lazy: loads numpy
            from tokstep.engine.lints.duplicates import DuplicateRows

            self.duplicates = DuplicateRows()
        result = self.duplicates.check(result)
        self.rows += 1
        if result.disagree is not None:
            self.structured += 1
            self.disagreeing += result.disagree > 0
            self.disagreeing_tokens += result.disagree
        if not result.findings:
            return
        self.flagged.append(result.slim())
        self.rows_with.update({f.severity for f in result.findings})
        self.rows_per_code.update({f.code for f in result.findings})
        self.rows_per_kind.update({(f.code, f.severity) for f in result.findings})

    def counts(self) -> dict[str, int]:
        return {s: self.rows_with[s] for s in ("error", "warning", "info")}


def lint_file(
    tokenizer: Any, data: DataFile, max_rows: int | None = None, progress: Any = None, jobs: int = 1
) -> LintSummary:
    """Lint the rows of `data` in order, streaming (a few batches of rows in memory at a time), on `jobs`
    processes; `progress(rows, tokens)` is called after every batch."""
    # lazy: loads numpy
    from tokstep.engine.lints.pool import BATCH_ROWS, lint_data

    summary = LintSummary()
    tokens = 0
    for result in lint_data(tokenizer, data, max_rows, jobs):
        summary.add(result)
        tokens += result.num_tokens or 0
        if progress is not None and summary.rows % BATCH_ROWS == 0:
            progress(summary.rows, tokens)
    if progress is not None:
        progress(summary.rows, tokens)
    return summary


def _known_rows(data: DataFile, max_rows: int | None) -> int | None:
    """The number of rows to lint, when it is cheap to know (a JSONL file is indexed by a fast scan)."""
    data.index_all()
    rows = len(data)
    return rows if max_rows is None else min(rows, max_rows)


def findings_json(summary: LintSummary, path: str, model: str) -> dict[str, Any]:
    """`lint --json`: the findings (engine.lints.finding_records' schema, each with its row and line), per-row
    structure counts, and the totals the printed summary shows."""
    records = [
        finding_record(f, row=result.row.index + 1, line=result.row.line)  # 1-based, as printed
        for result in summary.flagged
        for f in result.findings
    ]
    rows = [  # per row too, the same records (scripts that read one row's findings)
        {
            "row": result.row.index + 1,
            "line": result.row.line,
            "disagree": result.disagree,
            "findings": [
                finding_record(f, row=result.row.index + 1, line=result.row.line) for f in result.findings
            ],
        }
        for result in summary.flagged
    ]
    return {
        **envelope(records),
        "file": path,
        "tokenizer": model,
        "rows": summary.rows,
        "rows_with_findings": len(rows),
        "counts": summary.counts(),
        "lints": dict(sorted(summary.rows_per_code.items())),
        "duplicates": summary.duplicates.groups() if summary.duplicates is not None else [],
        "structure": {
            "rows_recovered": summary.structured,
            "rows_disagreeing": summary.disagreeing,
            "tokens_disagreeing": summary.disagreeing_tokens,
            "convention": _convention(summary),
        },
        "results": rows,
    }


def summary_table(summary: LintSummary) -> Table:
    per_kind = summary.rows_per_kind  # a code that fired at two severities gets a line for each
    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("lint")
    table.add_column("severity")
    table.add_column("rows", justify="right")
    table.add_column("what it means")
    for code, severity in sorted(per_kind, key=lambda k: (SEVERITIES.index(k[1]), -per_kind[k], k[0])):
        table.add_row(
            code,
            Text(severity, style=SEVERITY_STYLE[severity]),
            str(per_kind[code, severity]),
            Text(LINTS[code].meaning),
        )
    return table


def _convention(summary: LintSummary) -> str:
    # lazy: loads numpy
    from tokstep.engine.chat.masks import convention

    return convention(summary.eot, summary.inserted)


def structure_line(summary: LintSummary) -> Text | None:
    """One line: in how many rows the chat turns were recovered from the ids, and how many disagree."""
    if not summary.structured:
        return None
    bad = summary.disagreeing
    return Text.assemble(
        ("labels vs chat structure: ", "bold"),
        f"turns recovered in {summary.structured} of {summary.rows} rows; labels disagree in ",
        (f"{bad} rows", SEVERITY_STYLE["error"] if bad else "green"),
        f" ({summary.disagreeing_tokens} tokens)  ·  convention: {_convention(summary)}",
    )


def print_findings(summary: LintSummary, console: Console, show: int) -> None:
    """The rows with findings in file order: the rows with errors first when --show cuts the list (the
    shown rows are still printed in file order)."""
    worst_first = sorted(
        summary.flagged, key=lambda r: (min(SEVERITY_RANK[f.severity] for f in r.findings), r.row.index)
    )
    for result in sorted(worst_first[:show], key=lambda r: r.row.index):
        row = result.row
        size = (
            ""
            if result.num_tokens is None
            else f"  {result.num_tokens} tokens, {result.num_supervised} supervised"
        )
        console.print(Text.assemble((row.where, "bold"), (size, "dim")))
        for f in result.findings:
            where = f"  token {_positions(f.positions)}" if f.positions else ""
            console.print(
                Text.assemble(
                    "  ",
                    (f"{f.severity:<7}", SEVERITY_STYLE[f.severity]),
                    " ",
                    (f.code, "bold"),
                    (where, "dim"),
                )
            )
            console.print(Text("    " + f.message), highlight=False)
            if f.fix:
                console.print(Text("    fix: " + f.fix, style="dim"), highlight=False)
    if len(summary.flagged) > show:
        rest = len(summary.flagged) - show
        console.print(f"… {rest} more rows with findings (--show N to see more, --json for all)", style="dim")


def _positions(positions: tuple[int, ...]) -> str:
    shown = ",".join(map(str, positions[:6]))
    return shown + ("…" if len(positions) > 6 else "")


def run_lint(args: RunConfig, model_name: str, display_name: str) -> int:
    """The `lint` sub-command. Returns the exit status; TokstepError propagates to the CLI's one-line error."""
    # lazy: loads numpy
    from tokstep.engine.model.loading import load_tokenizer

    if args.max_rows is not None and args.max_rows < 1:
        raise TokstepError("--max-rows must be at least 1")
    err = Console(stderr=True)
    data = open_data_from_args(args, args.file)
    try:
        with err.status(f"loading the tokenizer of {display_name}"):
            tokenizer = load_tokenizer(
                model_name,
                revision=args.revision,
                trust_remote_code=args.trust_remote_code,
                torch_free=True,  # lint tokenizes only: no model is loaded after it
            )
        # lazy: loads numpy
        from tokstep.engine.lints.pool import BATCH_ROWS, default_jobs

        jobs = args.jobs if args.jobs is not None else default_jobs()
        if jobs < 1:
            raise TokstepError("--jobs must be at least 1")
        total = _known_rows(data, args.max_rows)
        if total is not None and total <= BATCH_ROWS:
            jobs = 1  # a single batch: starting processes would cost more than it saves
        # while linting, no collection rescans what exists now (the imports, the tokenizer), here or in a
        # forked worker; thawed after, so nothing frozen outlives the command in a longer-lived process
        gc.freeze()
        started = time.monotonic()
        with RowProgress("tokstep lint", total) as bar:
            summary = lint_file(tokenizer, data, args.max_rows, bar.update, jobs=jobs)
        summary.eot, summary.inserted = args.eot, args.inserted
        elapsed = time.monotonic() - started
    finally:
        gc.unfreeze()
        data.close()
    if not summary.rows:
        raise TokstepError(f"{args.file} has no rows")
    if args.json:
        output.write_json(findings_json(summary, args.file, display_name), args.json, args.force)
    counts = summary.counts()
    if args.json != "-":
        console = report_console()  # piped: no width limit, so no finding or meaning is wrapped
        console.print(
            Text.assemble(
                ("tokstep lint  ", "bold"),
                f"{args.file}  ·  {summary.rows} rows in {elapsed:.1f}s  ·  tokenizer of {display_name}",
            ),
            highlight=False,
            soft_wrap=True,  # one line, however long the path (scripts grep it)
        )
        print_findings(summary, console, args.show)
        if summary.flagged:
            console.print()
            console.print(summary_table(summary))
        line = structure_line(summary)
        if line is not None:
            console.print(line, highlight=False)
        console.print(
            Text.assemble(
                ("rows with errors: ", "bold"),
                (str(counts["error"]), SEVERITY_STYLE["error"] if counts["error"] else "green"),
                ("   warnings: ", "bold"),
                (str(counts["warning"]), SEVERITY_STYLE["warning"] if counts["warning"] else "green"),
                ("   info: ", "bold"),
                str(counts["info"]),
            )
        )
    failing = ("error", "warning") if args.strict or args.fail_on == "warning" else ("error",)
    return FINDINGS if any(counts[s] for s in failing) else OK
