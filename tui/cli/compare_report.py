"""`tokstep report --compare ...`: A and B per position (CE, ΔCE, KL, ranks, top-1), the KL summary
llama-perplexity --kl-divergence prints, or for two tokenizers the byte-aligned boundaries and bits per byte."""

from __future__ import annotations

from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

import tokstep.tui.cli.output as output
from tokstep.engine.errors import TokstepError
from tokstep.engine.model.tokens import make_visible
from tokstep.tui.cli.engine_calls import load_shown, shown
from tokstep.tui.cli.report import SHORT_REASON, parity_line, report_console, token_text
from tokstep.tui.formatting import number

if TYPE_CHECKING:
    from tokstep.engine.compare.results import CompareResult, TokenAlignment, TokenizerCompareResult
    from tokstep.engine.compare.spec import CompareSpec
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.tui.cli.run_config import RunConfig


def kl_text(value: float) -> str:
    """A KL in nats: scientific (they span many decades), `NaN/inf` when not finite."""
    return f"{value:.2e}" if value == value and value not in (float("inf"), float("-inf")) else "NaN/inf"


def compare_table(result: CompareResult, limit: int | None = None) -> Table:
    a, b, sample = result.a.trace, result.b.trace, result.a.sample
    table = Table(box=None, header_style="bold", pad_edge=False)
    for name, justify, width in [
        ("t", "right", None),
        ("context", "left", 10),
        ("target", "left", 10),
        ("CE A", "right", 7),
        ("CE B", "right", 7),
        ("ΔCE", "right", 8),
        ("KL(A‖B)", "right", 8),
        ("rank A", "right", 6),
        ("rank B", "right", 6),
        ("top-1 A", "left", 9),
        ("top-1 B", "left", 9),
        ("counted", "left", 7),
    ]:
        table.add_column(name, justify=justify, no_wrap=True, max_width=width, overflow="ellipsis")
    delta, agree, both = result.delta_ce, result.top1_agree, result.both_finite
    rows = range(len(result)) if limit is None else range(min(limit, len(result)))
    for t in rows:
        counted = bool(a.supervised[t])
        top_a, top_b = int(a.topk_ids[t, 0]), int(b.topk_ids[t, 0])
        table.add_row(
            str(t),
            token_text(result.a, int(sample.input_ids[t])),
            token_text(result.a, int(a.target_ids[t])),
            number(float(a.ce[t])) if a.finite[t] else "NaN/inf",
            number(float(b.ce[t])) if b.finite[t] else "NaN/inf",
            f"{delta[t]:+.4f}" if both[t] else "—",
            kl_text(float(result.kl[t])) if both[t] else Text("NaN/inf", style="bold red"),
            str(int(a.rank[t])),
            str(int(b.rank[t])),
            token_text(result.a, top_a),
            Text("= A", style="green")
            if agree[t]
            else Text.assemble(token_text(result.b, top_b), (" ≠", "bold red")),
            "✓"
            if counted
            else Text(SHORT_REASON.get(sample.mask_reasons[t + 1].value, "masked"), style="dim"),
            style=None if counted else "dim",
        )
    return table


def summary_lines(result: CompareResult) -> Text:
    """llama-perplexity --kl-divergence's statistics, on this sample."""
    s = result.summary()
    where = f"{s.positions} counted positions" if s.scope == "counted" else f"all {s.positions} positions"
    text = Text()
    if s.mean_kl is None:
        text.append("KL(A‖B): undefined (no position where both models are finite)\n", style="bold red")
    else:
        text.append("KL(A‖B) in nats ", style="bold")
        text.append(f"over {where}\n  mean {s.mean_kl:.4e}  median {s.median_kl:.4e}  ")
        text.append(f"p99 {s.p99_kl:.4e}  p99.9 {s.p999_kl:.4e}  max {s.max_kl:.4e}\n")
        agreement = s.top1_agreement or 0.0
        text.append("top-1 agreement ", style="bold")
        text.append(f"{100 * agreement:.2f}% ({round(agreement * s.positions)}/{s.positions})\n")
        text.append("mean CE ", style="bold")
        text.append(f"A {s.loss_a:.6f}  B {s.loss_b:.6f}  Δ loss (B − A) {s.delta_loss:+.6f}\n")
    if s.nonfinite:
        text.append(
            f"non-finite logits: {s.nonfinite} position(s) marked, not averaged (first t={int((~result.both_finite).nonzero()[0][0])})\n",
            style="bold red",
        )
    return text


def print_compare(result: CompareResult, console: Console, limit: int | None = None) -> None:
    sample = result.a.sample
    console.print(Text.assemble(("tokstep compare", "bold")), highlight=False)
    console.print(f"{result.label_a}  ({result.a.trace.path})", markup=False, highlight=False)
    console.print(f"{result.label_b}  ({result.b.trace.path})", markup=False, highlight=False)
    console.print(
        f"sample: {sample.name} [{sample.kind}]  {len(sample)} tokens, {len(result)} positions, "
        f"{result.a.trace.num_supervised} supervised",
        markup=False,
        highlight=False,
    )
    console.print(compare_table(result, limit))
    if limit is not None and limit < len(result):
        console.print(f"… {len(result) - limit} more positions (summary covers all)", style="dim")
    console.print(summary_lines(result), end="")
    for label, side in ((result.label_a, result.a), (result.label_b, result.b)):
        if side.reference_computed:
            console.print(Text(label, style="bold underline"))
            console.print(parity_line(side))


def boundary_rows(alignment: TokenAlignment, width: int) -> list[Text]:
    """The text in chunks of one column per character (whitespace shown as ␣ ↵ →), each followed by a row
    with `|` where A starts a token, one where B does, and `^` where only one of them does."""

    text = alignment.text
    char_of, offset = {}, 0
    for i, ch in enumerate(text):
        char_of[offset] = i
        offset += len(ch.encode("utf-8"))

    def chars(starts) -> set[int]:  # type: ignore[no-untyped-def]
        return {char_of[int(b)] for b in starts if int(b) in char_of}  # a start inside a character: dropped

    starts_a, starts_b = chars(alignment.starts_a), chars(alignment.starts_b)
    differ = starts_a ^ starts_b
    rows: list[Text] = []
    step = max(width - 3, 10)
    for lo in range(0, len(text), step):
        span = range(lo, min(lo + step, len(text)))
        rows.append(Text("   " + "".join(make_visible(text[i])[:1] for i in span)))
        rows.append(Text("A  " + "".join("|" if i in starts_a else " " for i in span), style="cyan"))
        rows.append(Text("B  " + "".join("|" if i in starts_b else " " for i in span), style="magenta"))
        rows.append(Text("   " + "".join("^" if i in differ else " " for i in span), style="bold yellow"))
    return rows


def print_tokenizer_compare(result: TokenizerCompareResult, console: Console) -> None:
    al = result.alignment
    console.print(Text("tokstep compare: two tokenizers on the same text", style="bold"))
    console.print(
        f"{al.name_a}: {al.starts_a.size} text tokens\n{al.name_b}: {al.starts_b.size} text tokens\n"
        f"text: {al.n_bytes} bytes; token boundaries: {al.shared} shared, {al.only_a.size} only in A, "
        f"{al.only_b.size} only in B (^)",
        markup=False,
        highlight=False,
    )
    for row in boundary_rows(al, console.width):
        console.print(row, no_wrap=True, crop=True)
    bpb_a, bpb_b, n = al.bits_per_byte()
    if bpb_a is not None and bpb_b is not None:
        console.print(
            Text.assemble(
                ("bits per byte ", "bold"),
                f"over the {n} bytes both models score: A {bpb_a:.4f}  B {bpb_b:.4f}  Δ (B − A) {bpb_b - bpb_a:+.4f}",
            )
        )
        console.print(
            "(each supervised target's CE spread over its bytes; tokens with no bytes, e.g. EOS, not counted)",
            style="dim",
        )
    for label, side in ((al.name_a, result.a), (al.name_b, result.b)):
        if side is not None and side.reference_computed:
            console.print(Text(label, style="bold underline"))
            console.print(parity_line(side))


def run_compare_report(args: RunConfig, model: ModelSpec, compare: CompareSpec, sample: SampleSpec) -> int:
    # lazy: loads torch, numpy
    from tokstep.engine.compare.export import compare_to_dict, tokenizer_compare_to_dict
    from tokstep.engine.compare.results import CompareResult
    from tokstep.engine.compare.session import load_b, run_compare

    if args.incremental:
        raise TokstepError(
            "--incremental traces one model token by token; it does not combine with --compare"
        )
    output.check_target(args.json, args.force)
    err = Console(stderr=True)
    loaded = load_shown(model, err)
    b = shown(err, f"loading {compare.description}", lambda _progress: load_b(compare))
    result = shown(
        err,
        "comparing",
        lambda progress: run_compare(
            loaded, b, sample, top_k=args.top_k, with_reference=args.reference != "off", progress=progress
        ),
    )
    if args.json:
        data = (
            compare_to_dict(result)
            if isinstance(result, CompareResult)
            else tokenizer_compare_to_dict(result)
        )
        output.write_json(data, args.json, args.force)
    if args.json != "-":
        console = report_console(110)
        if isinstance(result, CompareResult):
            print_compare(result, console, args.limit)
        else:
            print_tokenizer_compare(result, console)
    return 0
