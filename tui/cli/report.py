"""`tokstep report`: the per-position loss table and the HF reference, printed with Rich."""

from __future__ import annotations

import io
import math
import sys
from collections import Counter
from collections.abc import Iterable, Sequence
from typing import TYPE_CHECKING, Any

from rich.cells import cell_len
from rich.console import Console
from rich.table import Table
from rich.text import Text

import tokstep.tui.cli.output as output
from tokstep.engine.model.inspector import roundtrip, split_characters
from tokstep.tui.formatting import clip, number, probability
from tokstep.tui.palette import verdict_style
from tokstep.tui.severity import severity_text

if TYPE_CHECKING:
    from tokstep.engine.inputs.spec import SampleSpec
    from tokstep.engine.lints.catalogue import Finding
    from tokstep.engine.model.results import TraceResult


SHORT_REASON = {
    "prompt": "prompt",
    "system turn": "system",
    "user turn": "user",
    "template markup": "template",
    "padding": "pad",
    "document start": "doc start",
    "masked in your labels": "labels",
    "first token": "first",
    "tool turn": "tool",
    "template-inserted": "inserted",
    "end-of-turn token": "end-of-turn",
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
    """Ours vs Hugging Face's loss, side by side, with the one parity verdict (engine.model.results.parity)."""
    # lazy: loads numpy
    from tokstep.engine.model.results import parity

    line = Text()
    line.append("tokstep mean CE  ", style="bold")
    line.append(fmt_loss(result.trace.loss))
    line.append(f"  over {result.trace.num_supervised} supervised tokens")
    verdict = parity(result)
    line.append("\nHF loss          ", style="bold")
    if not result.reference_computed and result.reference_note:  # the whole reason and how to change it
        line.append(result.reference_note, style="yellow" if "skipped" in result.reference_note else "dim")
        return line
    if result.reference_computed:
        line.append(fmt_loss(result.reference) + "  ")
    line.append(verdict.badge, style=verdict_style(verdict.ok))
    if result.reference_note:
        line.append(f"  ({result.reference_note})", style="dim")
    return line


TOKEN_CELLS = 24  # a token longer than this (rare: runs of whitespace) is cut with …; numbers never are
OPTIONAL = ("top-1", "context", "mean", "role", "q(target)")  # dropped in this order when the console is too narrow
COLUMNS = (  # name, justify
    ("t", "right"),
    ("context", "left"),
    ("target", "left"),
    ("role", "left"),  # the target's chat role (a chat, or ids whose turns were recovered): readable without colour
    ("q(target)", "right"),
    ("rank", "right"),
    ("top-1", "left"),
    ("CE", "right"),
    ("mean", "right"),
    ("counted", "left"),
)


def _token_cell(result: TraceResult, token_id: int) -> Text:
    text = token_text(result, token_id)
    if cell_len(text.plain) > TOKEN_CELLS:
        text = Text(clip(text.plain, TOKEN_CELLS), style=text.style)
    return text


ROW_STYLE = "_style"  # a row dict's style for the whole row


def position_rows(result: TraceResult, positions: Iterable[int]) -> list[dict[str, Any]]:
    """One dict per position, column name -> cell (the report's and the shared page's tables)."""
    trace, sample = result.trace, result.sample
    rows = []
    for t in positions:
        target = int(trace.target_ids[t])
        top1 = int(trace.topk_ids[t, 0])
        counted = bool(trace.supervised[t])
        ce_text = number(float(trace.ce[t]))
        dim = "" if counted else "dim"
        rank = str(int(trace.rank[t])) + ("=" if trace.ties[t] else "")
        reason = SHORT_REASON.get(sample.mask_reasons[t + 1].value, sample.mask_reasons[t + 1].value)
        rows.append(
            {
                "t": Text(str(t), style=dim),
                "context": _token_cell(result, int(sample.input_ids[t])),
                "target": _token_cell(result, target),
                "role": Text(role_of(sample, t + 1), style=dim),
                "q(target)": Text(probability(float(trace.prob[t])) if trace.finite[t] else "—", style=dim),
                "rank": Text(rank, style=dim),
                "top-1": Text("= target", style="green") if top1 == target else _token_cell(result, top1),
                "CE": Text(ce_text, style="") if counted else Text(f"({ce_text})", style="dim"),
                "mean": Text(number(trace.running_mean(t)), style=dim),
                "counted": Text("✓", style="green") if counted else Text(reason, style="dim"),
                ROW_STYLE: "" if counted else "dim",
            }
        )
    return rows


def role_of(sample: Any, index: int) -> str:
    """The chat role of token `index` (`template` for markup between turns); empty without chat turns."""
    layout = sample.layout
    if layout is None:
        return ""
    return layout.role(index) or "template"


def fitted_table(rows: list[dict[str, Any]], width: int | None, columns=COLUMNS) -> Table:  # noqa: ANN001
    """A table whose columns are as wide as their widest cell (numbers are never cut); when the console is
    narrower than that, whole optional columns are left out instead (OPTIONAL, in order). A column empty in
    every row (the role of a sample without chat turns) is left out."""
    columns = [(n, j) for n, j in columns if any(r[n].plain for r in rows) or n != "role"]
    widths = {name: max([cell_len(name)] + [r[name].cell_len for r in rows]) for name, _ in columns}
    names = [name for name, _ in columns]
    for drop in OPTIONAL:
        if width is None or sum(widths[n] for n in names) + 2 * (len(names) - 1) <= width:
            break
        if drop in names:
            names.remove(drop)
    table = Table(box=None, header_style="bold", pad_edge=False, collapse_padding=False)
    for name, justify in columns:
        if name in names:
            table.add_column(
                name, justify=justify, no_wrap=True, min_width=widths[name], max_width=widths[name]
            )
    for row in rows:
        table.add_row(*(row[name] for name in names), style=row.get(ROW_STYLE) or None)
    return table


def positions_table(result: TraceResult, limit: int | None = None, width: int | None = None) -> Table:
    count = len(result.trace) if limit is None else min(max(limit, 0), len(result.trace))
    return fitted_table(position_rows(result, range(count)), width)


def report_console(piped_width: int | None = None) -> Console:
    """A terminal: its width (tables fit it). Piped: no width limit (or `piped_width`), so no line is ever
    wrapped or cut, and no line ends in the spaces a table pads its last column with."""
    if sys.stdout.isatty():
        return Console()
    return Console(file=NoTrailingSpaces(), width=piped_width or PIPED_WIDTH, soft_wrap=piped_width is None)


class NoTrailingSpaces(io.TextIOBase):
    """sys.stdout (as it is at each write), each finished line without trailing spaces."""

    def __init__(self) -> None:
        self._pending = ""

    def write(self, text: str) -> int:
        *lines, self._pending = (self._pending + text).split("\n")
        for line in lines:
            sys.stdout.write(line.rstrip(" ") + "\n")
        return len(text)

    def flush(self) -> None:
        sys.stdout.write(self._pending)
        self._pending = ""
        sys.stdout.flush()


PIPED_WIDTH = 10_000


def print_title(result: TraceResult, console: Console) -> None:
    """A report's first two lines (the terminal's and the shared file's): the model's name, then its kind."""
    info = result.info
    console.print(Text.assemble(("tokstep report  ", "bold"), info.name))
    console.print(
        f"model: {info.architecture}, {info.dtype}, {info.device}, vocab {info.vocab_size}", highlight=False
    )


def print_report(result: TraceResult, console: Console, limit: int | None = None) -> None:
    sample, trace = result.sample, result.trace
    print_title(result, console)
    truncated = f", truncated from {sample.truncated_from_text}" if sample.truncated_from else ""
    console.print(
        f"sample: {sample.name} [{sample.kind}]  {len(sample)} tokens{truncated}, {len(trace)} positions, "
        f"{trace.num_supervised} supervised\npath: {trace.path}",
        markup=False,
        highlight=False,
    )
    for note in sample.notes:
        console.print(f"note: {note}", style="dim", markup=False, highlight=False)
    width = None if console.width >= PIPED_WIDTH else console.width
    console.print(positions_table(result, limit, width))
    if limit is not None and limit < len(trace):
        console.print(f"… {len(trace) - max(limit, 0)} more positions (summary covers all)", style="dim")
    console.print(parity_line(result))
    if result.incremental_drift is not None:
        console.print(
            f"incremental (KV cache) vs single pass: max |Δ log q(target)| = {result.incremental_drift:.3e}"
        )


def findings_grid(findings: Iterable[Any]) -> Table:
    """Lint findings as a grid: severity and code in one column, the message (and its fix) wrapping in their
    own, never under the code; piped output has no width limit, so each stays on one line."""
    grid = Table.grid(padding=(0, 1))
    grid.add_column(no_wrap=True)
    grid.add_column(no_wrap=True)
    grid.add_column(overflow="fold")
    for f in findings:
        where = f" @ token {','.join(map(str, f.positions[:8]))}" if f.positions else ""
        grid.add_row(" ", Text.assemble(severity_text(f.severity), f" {f.code}{where}:"), f.message)
        if getattr(f, "fix", None):
            grid.add_row(" ", "", Text(f"fix: {f.fix}", style="dim"))
    return grid


def convention_lines(findings: Iterable[Any]) -> list[Text]:
    """The mask conventions the label lints compared against, each stated once (not inside every finding)."""
    seen = sorted({f.convention for f in findings if getattr(f, "convention", "")})
    return [Text.assemble(("convention: ", "bold"), (c, "dim")) for c in seen]


def print_findings(console: Console, findings: Sequence[Any]) -> None:
    """The grid, then the convention once."""
    if findings:
        console.print(findings_grid(findings))
    for line in convention_lines(findings):
        console.print(line, highlight=False)


def write_json(result: TraceResult, path: str, force: bool, findings: Sequence[Finding] = ()) -> None:
    # lazy: loads numpy
    from tokstep.engine.model.export import trace_to_dict

    output.write_json(trace_to_dict(result, findings), path, force)


def write_jsonl(result: TraceResult, path: str, force: bool, findings: Sequence[Finding] = ()) -> None:
    # lazy: loads numpy
    from tokstep.engine.model.export import trace_lines

    output.write_text("\n".join(trace_lines(result, findings)), path, force, "--jsonl")


def print_diagnostics(
    result: TraceResult, spec: SampleSpec | None, console: Console, findings: Sequence[Finding] | None = None
) -> None:
    """Why tokens are masked, the lints, the round-trip check and characters split over several tokens."""

    # lazy: loads numpy
    from tokstep.engine.lints.sample_lints import lint_sample

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
    if findings is None:
        findings = lint_sample(tokenizer, sample, spec)
    console.print(
        Text.assemble(("lints: ", "bold"), ("none", "green") if not findings else f"{len(findings)}")
    )
    print_findings(console, findings)
    if spec is not None:
        # lazy: loads numpy
        from tokstep.engine.inputs.spec import kept_spec

        spec = kept_spec(spec)  # with --truncate: what is kept, not all of a huge input
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
