"""`tokstep report`: the per-position loss table and the HF reference, printed with Rich."""

from __future__ import annotations

import argparse
import math
import sys
from typing import TYPE_CHECKING

from rich.console import Console
from rich.table import Table
from rich.text import Text

from tokstep.tui import output
from tokstep.tui.formatting import number, probability
from tokstep.tui.severity import severity_text

if TYPE_CHECKING:
    from tokstep.engine.inputs import SampleSpec
    from tokstep.engine.loading import ModelSpec
    from tokstep.engine.results import TraceResult


SHORT_REASON = {
    "prompt": "prompt",
    "system turn": "system",
    "user turn": "user",
    "tool turn": "tool",
    "template markup": "template",
    "template-inserted": "inserted",
    "end-of-turn token": "eot",
    "padding": "pad",
    "document start": "doc start",
    "masked in your labels": "labels",
    "first token": "first",
}


def token_text(result: TraceResult, token_id: int) -> Text:
    """A token as the user should see it: whitespace visible, special tokens in magenta."""
    texts = result.texts
    style = "magenta" if texts.is_special(token_id) or not texts.in_tokenizer(token_id) else ""
    return Text(texts.visible(token_id), style=style)


def fmt_loss(value: float | None) -> str:
    if value is None or math.isnan(value):
        return "undefined"
    return number(value, 6)


def parity_line(result: TraceResult) -> Text:
    """Ours vs Hugging Face's loss, side by side, with a match badge."""
    from tokstep.engine.results import parity_tolerance

    ours, theirs = result.trace.loss, result.reference
    line = Text()
    line.append("tokstep mean CE                          ", style="bold")
    line.append(fmt_loss(ours))
    line.append(f"  over {result.trace.num_supervised} supervised tokens")
    if not result.reference_computed:
        return line
    line.append("\nHF model(input_ids, labels=labels).loss  ", style="bold")
    line.append(fmt_loss(theirs))
    if ours is None and theirs is None:
        line.append("  ✓ both undefined: no supervised tokens", style="green")
    elif ours is None or theirs is None:
        line.append("  ✗ MISMATCH", style="bold red")
    else:
        diff = abs(ours - theirs)
        ok = diff <= parity_tolerance(result.info.dtype) * max(abs(theirs), 1e-12)
        line.append(f"  |Δ| {diff:.1e}  ")
        line.append("✓ match" if ok else "✗ MISMATCH", style="green" if ok else "bold red")
    return line


def positions_table(result: TraceResult, limit: int | None = None) -> Table:
    trace, sample = result.trace, result.sample
    table = Table(title=None, box=None, header_style="bold", pad_edge=False)
    for name, justify, width in [
        ("t", "right", None),
        ("context", "left", 10),
        ("target", "left", 12),
        ("q(target)", "right", 9),
        ("rank", "right", 5),
        ("top-1", "left", 10),
        ("CE", "right", 9),
        ("mean", "right", 7),
        ("counted", "left", 8),  # min width too: the reason must stay readable
    ]:
        fixed = justify == "right" or name == "counted"
        table.add_column(
            name,
            justify=justify,
            no_wrap=True,
            max_width=width,
            min_width=width if fixed else None,
            overflow="ellipsis",
        )
    rows = range(len(trace)) if limit is None else range(min(limit, len(trace)))
    for t in rows:
        target = int(trace.target_ids[t])
        top1 = int(trace.topk_ids[t, 0])
        counted = bool(trace.supervised[t])
        finite = bool(trace.finite[t])
        ce = float(trace.ce[t])
        ce_text = number(ce)
        mean = trace.running_mean(t)
        top1_text = Text("= target", style="green") if top1 == target else token_text(result, top1)
        table.add_row(
            str(t),
            token_text(result, int(sample.input_ids[t])),
            token_text(result, target),
            probability(float(trace.prob[t])) if finite else "—",
            str(int(trace.rank[t])) + ("=" if trace.ties[t] else ""),
            top1_text,
            ce_text if counted else Text(f"({ce_text})", style="dim"),
            number(mean),
            "✓"
            if counted
            else Text(SHORT_REASON.get(sample.mask_reasons[t + 1].value, "masked"), style="dim"),
            style=None if counted else "dim",
        )
    return table


def print_report(result: TraceResult, console: Console, limit: int | None = None) -> None:
    info, sample, trace = result.info, result.sample, result.trace
    console.print(Text.assemble(("tokstep report  ", "bold"), info.name))
    console.print(
        f"model: {info.architecture}, {info.dtype}, {info.device}, vocab {info.vocab_size}", highlight=False
    )
    truncated = f", truncated from {sample.truncated_from}" if sample.truncated_from else ""
    console.print(
        f"sample: {sample.name} [{sample.kind}]  {len(sample)} tokens{truncated}, {len(trace)} positions, "
        f"{trace.num_supervised} supervised\npath: {trace.path}",
        markup=False,
        highlight=False,
    )
    for note in sample.notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)
    console.print(positions_table(result, limit))
    if limit is not None and limit < len(trace):
        console.print(f"… {len(trace) - limit} more positions (summary covers all)", style="dim")
    console.print(parity_line(result))
    if result.incremental_drift is not None:
        console.print(
            f"incremental (KV cache) vs single pass: max |Δ log q(target)| = {result.incremental_drift:.3e}"
        )


def write_json(result: TraceResult, path: str, force: bool) -> None:
    from tokstep.engine.export import trace_to_dict

    output.write_json(trace_to_dict(result), path, force)


def run_report(args: argparse.Namespace, model: ModelSpec, sample: SampleSpec) -> int:
    from tokstep.engine.session import load, run_trace

    output.check_target(args.json, args.force)
    err = Console(stderr=True)
    with err.status(f"loading {model.display_name}"):
        loaded = load(model)
    for note in loaded.notes:
        print(f"tokstep: note: {note}", file=sys.stderr)
    with err.status("tracing") as status:
        result = run_trace(
            loaded,
            sample,
            top_k=args.top_k,
            with_reference=not args.no_reference,
            incremental=args.incremental,
            progress=lambda message: status.update(message),
        )
    if result.nonfinite_error:
        print(f"tokstep: error: {result.nonfinite_error}", file=sys.stderr)
        return 3
    if args.json:
        write_json(result, args.json, args.force)
    if args.json != "-":
        console = Console(width=None if sys.stdout.isatty() else 100)
        print_report(result, console, args.limit)
        print_diagnostics(result, sample, console)
    return 0


def print_diagnostics(result: TraceResult, spec: SampleSpec | None, console: Console) -> None:
    """Why tokens are masked, the lints, the round-trip check and characters split over several tokens."""
    from collections import Counter

    from tokstep.engine.inspector import roundtrip, split_characters
    from tokstep.engine.lints import lint_sample

    sample, tokenizer = result.sample, result.texts.tokenizer
    masked = Counter(r.value for r in sample.mask_reasons[1:] if not r.counted)
    if masked:
        console.print(
            "masked (-100): " + ", ".join(f"{n} {why}" for why, n in masked.most_common()), highlight=False
        )
    trained = Counter(r.value for r in sample.mask_reasons[1:] if r.counted)
    if len(trained) > 1:  # some trained tokens are not the message's own (template-inserted)
        console.print(
            "trained: " + ", ".join(f"{n} {why}" for why, n in trained.most_common()), highlight=False
        )
    findings = lint_sample(tokenizer, sample, spec)
    console.print(
        Text.assemble(("lints: ", "bold"), ("none", "green") if not findings else f"{len(findings)}")
    )
    for f in findings:
        where = f" @ token {','.join(map(str, f.positions[:8]))}" if f.positions else ""
        console.print(Text.assemble("  ", severity_text(f.severity), f" {f.code}{where}: {f.message}"))
        if f.fix:
            console.print(Text(f"    fix: {f.fix}", style="dim"), highlight=False)
    texts = [] if spec is None else [t for t in (spec.text, spec.prompt, spec.answer) if t]
    for text in texts:
        check = roundtrip(tokenizer, text)
        if not check.ok:
            console.print(
                Text(
                    f"round-trip: decode(encode(text)) differs at character {check.first_difference}: "
                    f"{check.expected!r} came back as {check.got!r}",
                    style="yellow",
                )
            )
    if texts and all(roundtrip(tokenizer, t).ok for t in texts):
        console.print(Text.assemble(("round-trip: ", "bold"), ("decode(encode(text)) == text ✓", "green")))
    for info in split_characters(tokenizer, sample.input_ids):
        ids = sample.input_ids[info.span[0] : info.span[1]]
        pieces = " ".join(tokenizer.convert_ids_to_tokens([int(i) for i in ids]))
        console.print(
            f"split character: tokens {info.span[0]}..{info.span[1] - 1} {pieces} = {info.completes!r}",
            markup=False,
            highlight=False,
        )
