"""`tokstep report --batches FILE`: per row and per document loss, the contamination check, the batch loss."""

from __future__ import annotations

import argparse
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

import tokstep.tui.cli.output as output
from tokstep.engine.errors import TokstepError
from tokstep.tui import exit_codes
from tokstep.tui.cli.engine_calls import load_and_run
from tokstep.tui.cli.report import convention_lines, report_console
from tokstep.tui.formatting import number
from tokstep.tui.palette import check_style, verdict_style
from tokstep.tui.severity import severity_text

if TYPE_CHECKING:
    from tokstep.engine.batches.files import Settings
    from tokstep.engine.batches.results import BatchLoss, BatchReport, RowResult
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.tui.cli.run_config import RunConfig

USE_CACHE = {"on": True, "off": False}


def add_batch_flags(parser: argparse.ArgumentParser) -> None:
    group = parser.add_argument_group("trainer batches")
    group.add_argument(
        "--batches",
        metavar="FILE",
        help="JSONL of trainer batches (tokstep.capture.save_batches, or by hand): padding, packing, batch loss",
    )
    group.add_argument(
        "--attn-implementation",
        metavar="NAME",
        help="how the trainer ran attention (eager, sdpa, flash_attention_2): overrides what the file recorded",
    )
    group.add_argument(
        "--use-cache",
        choices=sorted(USE_CACHE),
        help="whether the trainer's forward built a KV cache (default: as recorded, else the model's config)",
    )


def batch_flags(args: RunConfig) -> Settings:
    # lazy: loads numpy
    from tokstep.engine.batches.files import Settings

    return Settings(
        attn_implementation=args.attn_implementation,
        use_cache=None if args.use_cache is None else USE_CACHE[args.use_cache],
        eot=args.eot,  # the convention the labels are compared against (--eot/--inserted)
        inserted=args.inserted,
    )


def settings_text(row: RowResult) -> str:
    s, recorded = row.settings, row.row.settings
    parts = [f"attn_implementation={s.attn_implementation}", f"use_cache={s.use_cache}"]
    if recorded.trainer:
        parts.append(f"(recorded by save_batches from {recorded.trainer})")
    elif recorded.attn_implementation is None and recorded.use_cache is None:
        parts.append("(not recorded in the file: flags, else the model's config)")
    return " ".join(parts)


def delta_text(value: float | None, floor: float) -> Text:
    if value is None:
        return Text("—", style="dim")
    ok = value <= floor
    return Text(f"{value:.1e} {'✓' if ok else '✗'}", style=check_style(ok))


def rows_table(report: BatchReport) -> Table:
    # lazy: loads numpy
    from tokstep.engine.batches.results import noise_floor
    from tokstep.engine.model.results import parity

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in (
        "batch",
        "row",
        "line",
        "tokens",
        "docs",
        "pad",
        "counted",
        "loss",
        "HF loss",
        "max |Δ| alone",
    ):
        table.add_column(
            name, justify="left" if name in ("HF loss", "max |Δ| alone") else "right", no_wrap=True
        )
    for r in report.rows:
        trace, info = r.result.trace, r.result.info
        ours, theirs = trace.loss, r.result.reference
        verdict = parity(r.result)  # the one verdict (engine.model.results.parity)
        if verdict.ok is None:
            hf = Text("—", style="dim")
        elif ours is None or theirs is None:
            hf = Text("undefined" if verdict.ok else "✗ MISMATCH")
        else:
            hf = Text(f"{theirs:.4f} {'✓' if verdict.ok else '✗'}", style=verdict_style(verdict.ok))
        table.add_row(
            str(r.row.batch),
            str(r.row.row),
            str(r.row.line),
            str(len(r.row)),
            str(len(r.row.documents)),
            str(r.row.padding),
            str(r.loss_count),
            number(ours),
            hf,
            delta_text(r.max_delta, noise_floor(info.dtype))
            if r.row.packed
            else Text("not packed", style="dim"),
        )
    return table


def documents_table(row: RowResult) -> Table:
    # lazy: loads numpy
    from tokstep.engine.batches.results import noise_floor

    table = Table(box=None, header_style="bold", pad_edge=False)
    for name in ("doc", "tokens", "counted", "loss", "alone", "max |Δ log q|"):
        table.add_column(name, justify="left" if name == "max |Δ log q|" else "right", no_wrap=True)
    floor = noise_floor(row.result.info.dtype)
    for d in row.documents:
        table.add_row(
            str(d.index),
            f"{d.start}..{d.end - 1}",
            str(d.loss_count),
            number(d.loss),
            number(d.alone_loss),
            delta_text(d.max_delta, floor),
        )
    return table


def loss_table(loss: BatchLoss, max_batches: int | None = None, compact: bool = False) -> Table:
    """The batch loss, reduced each way; with `max_batches`, the per-batch lines only when there are that few.
    `compact` (the batches screen): one line per reduction, the who-reports-it words short and cut with `…`
    rather than wrapped, so the rows list keeps the height (the numbers are never cut)."""
    # lazy: loads numpy
    from tokstep.engine.batches.results import PER_BATCH_MEAN, TOKEN_WEIGHTED

    table = Table(box=None, header_style="bold", pad_edge=False)
    table.add_column("reduction", no_wrap=True)
    table.add_column("loss", justify="right", no_wrap=True, min_width=7)
    table.add_column("who reports it", no_wrap=compact, overflow="ellipsis" if compact else "fold")
    batches, steps = len(loss.per_batch), loss.accumulation_steps
    token_weighted = loss.trainer_used == TOKEN_WEIGHTED
    marker = Text("  ◀ used", style="bold")
    shown = loss.per_batch if max_batches is None or batches <= max_batches else ()
    if not shown:
        means = [total / count for _, total, count, _ in loss.per_batch if count]
        used = token_weighted and steps == 1
        table.add_row(
            f"per batch ({batches} batches): Σ CE / n",
            f"{min(means):.4f}–{max(means):.4f}" if means else "—",
            Text.assemble("model(**batch).loss (see each row)", marker if used else ""),
        )
    for b, total, count, rows in shown:
        used = token_weighted and (steps == 1 or batches == 1)
        table.add_row(
            f"batch {b}: Σ CE / n, {count} tokens"
            if compact
            else f"batch {b}: Σ CE / n ({count} tokens, {rows} row{'s' if rows != 1 else ''})",
            number(total / count if count else None),
            Text.assemble(
                "model(**batch).loss" + ("" if compact else " (Trainer, 1 accumulation step)"),
                marker if used else "",
            ),
        )
    if batches > 1:
        used = token_weighted and steps is not None and steps >= batches
        table.add_row(
            Text(f"token-weighted over all {batches} batches", style="bold"),
            Text(number(loss.token_weighted), style="bold"),
            Text.assemble(
                f"HF Trainer / TRL ({batches} steps)"
                if compact
                else f"HF Trainer / TRL (num_items_in_batch) with {batches} accumulation steps",
                marker if used else "",
            ),
        )
        table.add_row(
            "mean of per-batch means",
            number(loss.mean_of_batch_means),
            Text.assemble(
                "a loop over steps" if compact else "a loop averaging each step's loss",
                marker if loss.trainer_used == PER_BATCH_MEAN else "",
            ),
        )
    table.add_row(
        "mean of per-row means",
        number(loss.mean_of_row_means),
        "a loop over rows" if compact else "a loop averaging each row's own loss",
    )
    return table


def trainer_line(loss: BatchLoss) -> str:
    # lazy: loads numpy
    from tokstep.engine.batches.results import PER_BATCH_MEAN, TOKEN_WEIGHTED

    steps = f", gradient_accumulation_steps = {loss.accumulation_steps}" if loss.accumulation_steps else ""
    if loss.trainer_used == TOKEN_WEIGHTED:
        return f"the trainer used: token-weighted, Σ CE over its step's num_items_in_batch (recorded{steps})"
    if loss.trainer_used == PER_BATCH_MEAN:
        return f"the trainer used: the mean of per-batch losses (recorded{steps})"
    return (
        "the trainer used: not recorded (save_batches(..., trainer=trainer) records it); HF Trainer and TRL "
        "use the token-weighted mean for every causal LM that accepts loss kwargs"
    )


def print_batch_report(report: BatchReport, console: Console) -> None:
    # lazy: loads numpy
    from tokstep.engine.batches.results import noise_floor

    first = report.rows[0]
    info = first.result.info
    console.print(Text.assemble(("tokstep report --batches  ", "bold"), report.path), highlight=False)
    console.print(
        f"model: {info.architecture}, {info.dtype}, {info.device}, vocab {info.vocab_size}\n"
        f"{len({r.row.batch for r in report.rows})} batches, {len(report.rows)} rows"
        + (f", {len(report.errors)} unreadable lines" if report.errors else ""),
        highlight=False,
    )
    seen: set[str] = set()
    for r in report.rows:
        text = settings_text(r)
        if text not in seen:
            seen.add(text)
            console.print(f"forward: {text}", markup=False, highlight=False)
        for note in r.notes:
            console.print(f"note: {note}", style="yellow", markup=False, highlight=False)
    console.print(rows_table(report))
    for r in report.rows:
        if r.row.packed:
            console.print(
                Text.assemble(
                    (f"\n{r.row.name}", "bold"),
                    f": {len(r.row.documents)} documents (from {r.row.documents_from}), each traced alone too",
                )
            )
            console.print(documents_table(r))
    console.print(Text("\nbatch loss", style="bold"))
    console.print(loss_table(report.loss))
    console.print(trainer_line(report.loss), highlight=False)
    findings = [(r, f) for r in report.rows for f in r.findings]
    console.print(
        Text.assemble(("lints: ", "bold"), ("none", "green") if not findings else str(len(findings)))
    )
    for r, f in findings:
        console.print(
            Text.assemble("  ", severity_text(f.severity), f" {f.code} {r.row.name}: {f.message}"),
            highlight=False,
        )
    for line in convention_lines(f for _, f in findings):
        console.print(line, highlight=False)
    if any(r.row.packed for r in report.rows):
        console.print(
            f"max |Δ log q|: a document packed vs the same document alone (noise floor {noise_floor(info.dtype):g})",
            style="dim",
            highlight=False,
        )


def run_batch_report(args: RunConfig, model: ModelSpec) -> int:
    # lazy: loads torch, numpy
    from tokstep.engine.batches.export import report_to_dict
    from tokstep.engine.batches.files import read_batches
    from tokstep.engine.batches.packing import trace_batches

    output.check_target(args.json, args.force)
    batches = read_batches(args.batches)
    for bad in batches.errors:  # each one line; the other rows still open
        print(f"tokstep: error: {args.batches} {bad.message}", file=sys.stderr)
    if not batches.rows:
        raise TokstepError(f"no readable row in {args.batches}")
    report = load_and_run(
        model,
        lambda loaded, progress: trace_batches(
            loaded,
            batches,
            flags=batch_flags(args),
            top_k=args.top_k,
            with_reference=args.reference != "off",
            progress=progress,
        ),
    )
    traced_errors = [e for e in report.errors if e not in batches.errors]
    for bad in traced_errors:
        print(f"tokstep: error: {args.batches} {bad.message}", file=sys.stderr)
    if not report.rows:
        raise TokstepError(f"no row of {args.batches} could be traced")
    nonfinite = [r for r in report.rows if r.result.nonfinite_error]
    for r in nonfinite:
        print(
            f"tokstep: error: {args.batches} line {r.row.line}: {r.result.nonfinite_error}", file=sys.stderr
        )
    if args.json:
        output.write_json(report_to_dict(report), args.json, args.force)
    if args.json != "-":
        print_batch_report(report, report_console(110))
    if report.errors:  # unreadable rows: as an error-level finding
        return exit_codes.FINDINGS if not nonfinite else exit_codes.NONFINITE
    return exit_codes.report_status((f for r in report.rows for f in r.findings), bool(nonfinite))
