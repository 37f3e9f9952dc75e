"""`tokstep report --html FILE` / `--svg FILE`: what the report found, as one self-contained file for a bug report.

The page holds the sample's context coloured token by token (by the CE of predicting each token, or by its mask
reason with `--colour-by reason`) with a legend, the summary (model, sample, our loss beside HF's and the parity
verdict) and the worst positions. It is rendered with Rich's recorder and exported with inline styles (plus Rich's
small embedded `<style>` for the base colours): no script, no stylesheet link, no web font (Rich's SVG template
fetches Fira Code from a CDN; ours does not).
"""

from __future__ import annotations

import io
import math
import re

import numpy as np
from rich._export_format import CONSOLE_HTML_FORMAT, CONSOLE_SVG_FORMAT
from rich.cells import cell_len
from rich.console import Console
from rich.style import Style
from rich.text import Text

import tokstep.tui.cli.output as output
from tokstep.engine.model.results import TraceResult
from tokstep.tui.cli.report import fitted_table, parity_line, position_rows, print_title
from tokstep.tui.palette import HEAT_COLOURS, REASON_COLOURS

WIDTH = 110  # cells per line of the exported page
WORST = 10  # positions in the worst-positions table
SVG_FORMAT = re.sub(
    r"@font-face\s*\{\{.*?\}\}", "", CONSOLE_SVG_FORMAT, flags=re.DOTALL
)  # self-contained: no CDN font
HTML_FORMAT = CONSOLE_HTML_FORMAT


def coloured_context(result: TraceResult, colour_by: str = "ce") -> tuple[Text, Text]:
    """(the sample's tokens, each on its colour; the legend). Token i is coloured by the CE of predicting it
    (position i-1; the first token predicts nothing and stays plain) or by its mask reason."""
    heat, reasons = HEAT_COLOURS, REASON_COLOURS
    texts, sample, trace = result.texts, result.sample, result.trace
    finite_ce = trace.ce[trace.finite]
    scale = float(np.percentile(finite_ce, 95)) if finite_ce.size else 1.0
    context, line = Text(), 0
    for i, token in enumerate(sample.input_ids.tolist()):
        label = texts.visible(int(token))
        if colour_by == "reason":
            style = Style(color="white", bgcolor=reasons[sample.mask_reasons[i].value])
        elif i == 0:
            style = Style(dim=True)
        else:
            ce = float(trace.ce[i - 1])
            level = len(heat) - 1 if not math.isfinite(ce) else int(ce / max(scale, 1e-6) * (len(heat) - 1))
            style = Style(color="black", bgcolor=heat[min(max(level, 0), len(heat) - 1)])
        if colour_by == "ce" and i > 0 and not trace.supervised[i - 1]:
            style += Style(italic=True)
        if line and line + cell_len(label) > WIDTH:  # wrap between tokens, never inside one
            context.append("\n")
            line = 0
        context.append(label, style=style)
        line += cell_len(label)
        if label.endswith("↵"):  # a newline token ends its line, as in the stepper
            context.append("\n")
            line = 0
    legend = Text()
    if colour_by == "reason":
        for reason in sorted(set(sample.mask_reasons), key=list(reasons).index):
            legend.append(f" {reason.value} ", style=Style(color="white", bgcolor=reasons[reason.value]))
            legend.append(" ")
    else:
        legend.append("colour = CE of predicting the token: 0 ")
        for colour in heat:
            legend.append("  ", style=Style(bgcolor=colour))
        legend.append(f" ≥ {scale:.2f} (95th percentile); italic = masked (−100)")
    return context, legend


def worst_positions(result: TraceResult, count: int = WORST) -> list[int]:
    """The supervised positions with the highest CE (non-finite first); all positions if none is supervised."""
    trace = result.trace
    candidates = np.flatnonzero(trace.supervised) if trace.num_supervised else np.arange(len(trace))
    ce = np.where(trace.finite[candidates], trace.ce[candidates], np.inf)
    order = candidates[np.argsort(-ce, kind="stable")]
    return [int(t) for t in order[:count]]


def render(result: TraceResult, colour_by: str = "ce") -> Console:
    """Everything the shared file shows, recorded on a console that writes nowhere."""

    console = Console(
        record=True, width=WIDTH, file=io.StringIO(), force_terminal=True, color_system="truecolor"
    )
    sample, trace = result.sample, result.trace
    print_title(result, console)
    console.print(
        f"sample: {sample.name} [{sample.kind}]  {len(sample)} tokens, {len(trace)} positions, "
        f"{trace.num_supervised} supervised; path: {trace.path}",
        markup=False,
        highlight=False,
    )
    console.print(parity_line(result))
    console.print()
    context, legend = coloured_context(result, colour_by)
    console.print(Text("context", style="bold"))
    console.print(context, overflow="fold", no_wrap=True)
    console.print(legend)
    console.print()
    worst = worst_positions(result)
    console.print(Text(f"worst {len(worst)} positions (by CE)", style="bold"))
    console.print(fitted_table(position_rows(result, worst), WIDTH))
    return console


def html_text(result: TraceResult, colour_by: str = "ce") -> str:
    return render(result, colour_by).export_html(inline_styles=True, code_format=HTML_FORMAT)


def svg_text(result: TraceResult, colour_by: str = "ce") -> str:
    return render(result, colour_by).export_svg(title="tokstep report", code_format=SVG_FORMAT)


def write_shared(
    result: TraceResult, *, html: str | None, svg: str | None, colour_by: str = "ce", force: bool = False
) -> None:
    """Write the --html and/or --svg files (atomically, through tui.cli.output)."""
    if html:
        output.write_text(html_text(result, colour_by), html, force, "--html")
    if svg:
        output.write_text(svg_text(result, colour_by), svg, force, "--svg")
