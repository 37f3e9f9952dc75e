"""`report --html` in a real browser: headless Chromium (Debian's `chromium`, installed by .ci/run) renders the
page, and the computed colours of the legend and tokens are the terminal's palettes, the legend text the same."""

from __future__ import annotations

import html
import json
import re
import shutil
import subprocess

import pytest
from rich.color import Color

from tokstep.engine import defaults
from tokstep.engine.inputs.sample import MaskReason
from tokstep.engine.model.session import ModelSpec, load, run_trace
from tokstep.tui.cli.main import demo_spec
from tokstep.tui.cli.share import coloured_context, html_text
from tokstep.tui.palette import HEAT_COLOURS, REASON_COLOURS

CHROMIUM_FLAGS = [
    "--headless",
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]
# Appended to a copy of the page by the test (the export itself has no script): every span's text and the
# colours the browser computed for it, and the text of each line as rendered.
PROBE = """<script>
const spans = [...document.querySelectorAll('span')].map(s => {
  const c = getComputedStyle(s); return [s.textContent, c.backgroundColor, c.color, c.fontStyle];
});
const probe = document.createElement('pre'); probe.id = 'probe';
probe.textContent = JSON.stringify({spans, lines: document.querySelector('code').innerText.split('\\n')});
document.body.appendChild(probe);
</script>"""


@pytest.fixture(scope="module")
def chat_result():
    loaded = load(ModelSpec(device="cpu", dtype="float32"))
    common = {"bos": "auto", "eos": "auto", "truncate": None}
    return run_trace(loaded, demo_spec("chat", defaults, common), top_k=5, reference="off")


def rendered(page: str, tmp_path) -> dict:
    """What headless Chromium computed for `page`: {"spans": [[text, background, colour, font-style]...],
    "lines": [rendered text lines]}."""
    browser = shutil.which("chromium") or shutil.which("chromium-browser")
    assert browser, "Chromium is needed (.ci/run installs Debian's chromium): apt-get install chromium"
    path = tmp_path / "page.html"
    path.write_text(page.replace("</body>", PROBE + "</body>"), encoding="utf-8")
    profile = tmp_path / "profile"
    profile.mkdir()
    done = subprocess.run(
        [browser, *CHROMIUM_FLAGS, f"--user-data-dir={profile}", "--dump-dom", path.as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
    )
    found = re.search(r'<pre id="probe">(.*?)</pre>', done.stdout, flags=re.DOTALL)
    assert found, f"Chromium rendered no probe (exit {done.returncode}): {done.stderr[-500:]}"
    return json.loads(html.unescape(found.group(1)))


def rgb(colour: str) -> str:
    """A palette colour as the browser reports it: what Rich writes for it in a truecolor terminal."""
    red, green, blue = Color.parse(colour).get_truecolor()
    return f"rgb({red}, {green}, {blue})"


def test_ce_legend_and_tokens_render_in_the_terminals_heat_palette(chat_result, tmp_path):
    page = rendered(html_text(chat_result), tmp_path)
    _, legend = coloured_context(chat_result)
    legend_line = next(line for line in page["lines"] if line.startswith("colour = CE"))
    assert legend_line.rstrip() == legend.plain.rstrip()  # the terminal's legend text
    swatches = [bg for text, bg, _, _ in page["spans"] if text == "  "]
    assert swatches == [rgb(c) for c in HEAT_COLOURS]  # low -> high CE, in the terminal's order
    heat = {rgb(c) for c in HEAT_COLOURS}
    tokens = [span for span in page["spans"] if span[1] in heat and span[0] != "  "]
    assert len({bg for _, bg, _, _ in tokens}) >= 3  # tokens really coloured by their CE
    assert all(colour == rgb("black") for _, _, colour, _ in tokens)  # black on the heat colour
    masked = int((~chat_result.trace.supervised[: len(chat_result.sample.input_ids) - 1]).sum())
    assert 0 < sum(style == "italic" for *_, style in tokens) <= masked  # masked positions in italics


def test_reason_legend_renders_each_reason_in_its_terminal_colour(chat_result, tmp_path):
    page = rendered(html_text(chat_result, colour_by="reason"), tmp_path)
    by_text = {text.strip(): (bg, colour) for text, bg, colour, _ in page["spans"]}
    reasons = set(chat_result.sample.mask_reasons)
    assert {MaskReason.SUPERVISED, MaskReason.USER} <= reasons
    for reason in reasons:
        assert by_text[reason.value] == (rgb(REASON_COLOURS[reason.value]), rgb("white")), reason
