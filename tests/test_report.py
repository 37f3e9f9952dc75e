"""`tokstep report` on the bundled model: the parity verdict, tables at any width, piped output, `--reference`,
`--data`/`--rows`, and the self-contained `--html`/`--svg` files (parsed, not grepped)."""

from __future__ import annotations

import io
import json
import xml.etree.ElementTree as ET
from dataclasses import replace
from html.parser import HTMLParser

import numpy as np
import pytest
from rich.cells import cell_len
from rich.color import Color
from rich.console import Console

from tokstep.engine import defaults
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.results import parity
from tokstep.engine.model.session import ModelSpec, load, run_trace
from tokstep.engine.model.trace import reference_loss
from tokstep.tui.cli.main import demo_spec, main
from tokstep.tui.cli.report import print_diagnostics, print_report
from tokstep.tui.cli.report_data import parse_rows, supervised_text
from tokstep.tui.cli.share import html_text, svg_text, worst_positions
from tokstep.tui.palette import HEAT_COLOURS, REASON_COLOURS

COMMON = {"bos": "auto", "eos": "auto", "truncate": None}


@pytest.fixture(scope="module")
def loaded():
    return load(ModelSpec(device="cpu", dtype="float32"))


@pytest.fixture(scope="module")
def chat_result(loaded):
    return run_trace(loaded, demo_spec("chat", defaults, COMMON), top_k=5, reference="off")


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


# -- the one parity verdict ---------------------------------------------------------------------------------


def test_parity_verdict_for_every_state(chat_result):
    loss = chat_result.trace.loss
    assert parity(replace(chat_result, reference_pending=True)).ok is None
    off = parity(chat_result)
    assert off.ok is None and "--reference" in off.badge  # says how to turn it on
    close = parity(replace(chat_result, reference=loss * (1 + 5e-7), reference_computed=True))
    assert close.ok is True and close.badge.startswith("✓ match") and close.diff == pytest.approx(loss * 5e-7)
    far = parity(replace(chat_result, reference=loss * (1 + 5e-6), reference_computed=True))
    assert far.ok is False and "MISMATCH" in far.badge
    one_side = parity(replace(chat_result, reference=None, reference_computed=True))
    assert one_side.ok is False


def test_report_reference_modes_and_json(capsys, tmp_path):
    for mode, computed in (("chunked", True), ("full", True), ("off", False)):
        target = tmp_path / f"{mode}.json"
        code, out, _ = run(capsys, "report", "--limit", "0", "--reference", mode, "--json", str(target))
        data = json.loads(target.read_text())
        assert code == 0 and data["hf_reference_computed"] is computed, mode
        assert data["hf_match"] is (True if computed else None)
        if computed:
            assert data["hf_reference_loss"] == pytest.approx(data["loss"], rel=1e-6)
            assert "✓ match" in out
        else:
            assert data["hf_reference_loss"] is None and "--reference" in data["hf_reference_note"]
            assert "HF reference off" in out
    code, out, _ = run(capsys, "report", "--limit", "0", "--no-reference")
    assert code == 0 and "HF reference off" in out


# -- tables sized to their content ----------------------------------------------------------------------------


def _big_ranks(result):
    """The same result with ranks in the tens of thousands (a 150k vocabulary's worst targets)."""
    rank = np.asarray(result.trace.rank).copy()
    rank[::3] = 13000 + np.arange(len(rank[::3]))
    return replace(result, trace=replace(result.trace, rank=rank))


@pytest.mark.parametrize("width", [50, 64, 80, 200])
def test_narrow_console_never_cuts_a_number_or_a_special_token(chat_result, width):
    result = _big_ranks(chat_result)
    buffer = io.StringIO()
    print_report(result, Console(file=buffer, width=width, force_terminal=False), limit=None)
    lines = buffer.getvalue().splitlines()
    table = lines[lines.index(next(line for line in lines if line.lstrip().startswith("t "))) :]
    table = table[: len(result.trace) + 1]
    assert all(cell_len(line) <= width for line in table), width
    assert "…" not in "".join(table)  # nothing is cut: whole columns are left out instead
    for t, line in enumerate(table[1:]):
        cells = line.split()
        assert cells[0] == str(t)
        assert str(int(result.trace.rank[t])) in cells  # the whole rank, e.g. 13000
    text = "\n".join(table)
    assert "<|im_start|>" in text or "‹|im_start|›" in text  # the chat's special tokens, whole
    if width >= 120:
        assert "top-1" in table[0] and "context" in table[0]


def test_piped_report_keeps_each_lint_finding_on_one_line(capsys, loaded):
    ids = [int(i) for i in loaded.tokenizer("And God said")["input_ids"][1:]]  # no BOS: a lint fires
    spec = SampleSpec(ids={"input_ids": ids, "labels": ids}, name="ids")
    result = run_trace(loaded, spec, top_k=3, reference="off")
    from tokstep.engine.lints.sample_lints import lint_sample
    from tokstep.tui.cli.report import report_console

    findings = lint_sample(loaded.tokenizer, result.sample, spec)
    assert findings
    console = report_console()  # stdout is captured: not a terminal
    print_diagnostics(result, spec, console)
    out = capsys.readouterr().out
    for finding in findings:
        line = next(line for line in out.splitlines() if f" {finding.code}" in line)
        assert finding.message in line  # whole, unwrapped


# -- --data / --rows ------------------------------------------------------------------------------------------

ROWS = [
    {"prompt": "Question: who spoke?\nAnswer:", "completion": " God said, Let there be light."},
    None,  # an empty line: line numbers and row indices differ from here on
    {"messages": [{"role": "user", "content": "Say hi"}, {"role": "assistant", "content": "Hi there."}]},
    {"input_ids": [300, 301, 302, 303], "labels": [-100, -100, 302, 303]},
    "not json",
    {"text": "In the beginning"},
]


@pytest.fixture()
def data_file(tmp_path):
    path = tmp_path / "train.jsonl"
    lines = ["" if r is None else r if isinstance(r, str) else json.dumps(r) for r in ROWS]
    path.write_text("\n".join(lines) + "\n")
    return path


def test_data_report_rows_by_line_number_with_loss_lints_and_trained_text(capsys, data_file, loaded):
    code, out, err = run(capsys, "report", "--data", str(data_file), "--rows", "1,4-5")
    assert code == 1, err  # line 5 is not JSON: a bad-row error, so the findings status (as `tokstep lint`)
    heads = [line for line in out.splitlines() if line.startswith("line ")]
    assert [h.split()[1] for h in heads] == ["1", "4", "5"]  # the file's line numbers, as the screens show
    first = heads[0]
    spec = SampleSpec(prompt=ROWS[0]["prompt"], answer=ROWS[0]["completion"])
    sample = build_sample(spec, loaded.tokenizer)
    assert f"{len(sample)} tokens, {sample.num_supervised} supervised" in first
    shown = float(first.split("loss ")[1].split()[0])
    assert shown == pytest.approx(reference_loss(loaded, sample), rel=1e-5)  # HF's own number
    assert "« God said, Let there be light.</s>»" in out  # the answer and its EOS: what is trained
    ids_head = heads[1]
    assert "2 supervised" in ids_head and "lints: none" not in ids_head  # no BOS, no EOS
    assert "missing-bos" in out
    assert "bad-row" in out and "not valid JSON" in out


def test_supervised_text_skips_the_first_label_and_splits_spans(loaded):
    tokenizer = loaded.tokenizer
    ids = tokenizer("In the beginning God created")["input_ids"]
    labels = list(ids)
    labels[2] = -100
    spans = supervised_text(tokenizer, labels)
    assert len(spans) == 2
    assert spans[0] == tokenizer.decode(ids[1:2]) and spans[1] == tokenizer.decode(ids[3:])


@pytest.mark.parametrize(
    ("text", "ranges"),
    [("11-15", [(11, 15)]), ("3,7,20-", [(3, 3), (7, 7), (20, None)]), ("-5", [(1, 5)])],
)
def test_parse_rows(text, ranges):
    assert parse_rows(text) == ranges


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--rows", "3-4"], "--rows picks rows of a data file"),
        (["--data", "{data}", "--rows", "x"], "use numbers and ranges"),
        (["--data", "{data}", "--rows", "0-2"], "numbered from 1"),
        (["--data", "{data}", "--rows", "5-2"], "ranges go up"),
        (["--data", "{data}", "--rows", "90-"], "no such rows"),
        (["--data", "{data}", "--text", "hi"], "each row of the data file is a sample"),
    ],
)
def test_data_report_bad_flags_are_one_line(capsys, data_file, argv, fragment):
    code, _, err = run(capsys, "report", *[a.replace("{data}", str(data_file)) for a in argv])
    assert code == 2 and len(err.strip().splitlines()) == 1 and fragment in err, err


# -- --html / --svg ---------------------------------------------------------------------------------------------


class Collect(HTMLParser):
    def __init__(self) -> None:
        super().__init__()
        self.tags: list[tuple[str, dict]] = []
        self.text: list[str] = []

    def handle_starttag(self, tag, attrs):
        self.tags.append((tag, dict(attrs)))

    def handle_data(self, data):
        self.text.append(data)


def _backgrounds(styles: list[str]) -> set[str]:
    found = set()
    for style in styles:
        for part in style.split(";"):
            key, _, value = part.partition(":")
            if key.strip() == "background-color":
                found.add(value.strip().lower())
    return found


def test_html_is_self_contained_with_summary_context_and_worst(chat_result):
    result = replace(chat_result, reference=chat_result.trace.loss, reference_computed=True)
    page = Collect()
    page.feed(html_text(result))
    tags = {tag for tag, _ in page.tags}
    assert not tags & {"script", "link", "img", "iframe", "object"}
    assert not any("src" in a or "href" in a for _, a in page.tags)
    text = "".join(page.text)
    assert "tokstep mean CE" in text and "✓ match" in text and "worst 10 positions" in text
    for t in worst_positions(result)[:3]:  # the worst positions' targets are listed
        assert result.texts.visible(int(result.trace.target_ids[t])) in text
    colours = _backgrounds([a.get("style", "") for _, a in page.tags])
    assert len(colours & {c.lower() for c in HEAT_COLOURS}) >= 3  # tokens coloured by their CE


def test_html_coloured_by_mask_reason_uses_the_reason_palette(chat_result):
    page = Collect()
    page.feed(html_text(chat_result, colour_by="reason"))
    colours = _backgrounds([a.get("style", "") for _, a in page.tags])
    expected = {
        Color.parse(REASON_COLOURS[r.value]).get_truecolor().hex for r in set(chat_result.sample.mask_reasons)
    }
    assert expected <= colours
    assert "supervised" in "".join(page.text) and "user turn" in "".join(page.text)


def test_svg_parses_and_fetches_nothing(chat_result):
    svg = svg_text(chat_result)
    root = ET.fromstring(svg)
    assert root.tag.endswith("svg")
    assert "url(http" not in svg and "@font-face" not in svg
    assert not [e for e in root.iter() if any(k.endswith("href") for k in e.attrib)]
    text = "".join(root.itertext()).replace("\xa0", " ")
    assert "tokstep mean CE" in text and "worst" in text


def test_worst_positions_are_the_highest_supervised_ce(chat_result):
    trace = chat_result.trace
    ce = {t: float(trace.ce[t]) for t in range(len(trace)) if trace.supervised[t]}
    expected = sorted(ce, key=lambda t: -ce[t])[:10]
    assert worst_positions(chat_result) == expected


def test_cli_writes_html_and_svg_atomically_and_refuses_to_overwrite(capsys, tmp_path):
    html, svg = tmp_path / "r.html", tmp_path / "r.svg"
    code, _, err = run(capsys, "report", "--limit", "0", "--html", str(html), "--svg", str(svg))
    assert code == 0, err
    ET.fromstring(svg.read_text())
    assert "<pre" in html.read_text()
    assert not [p for p in tmp_path.iterdir() if p.name.startswith(".")]  # no temp file left
    code, _, err = run(capsys, "report", "--limit", "0", "--html", str(html))
    assert code == 2 and "--force" in err


def test_shared_context_wraps_between_tokens_never_inside_one(chat_result):
    from tokstep.tui.cli.share import coloured_context

    context, _ = coloured_context(chat_result)
    labels = [chat_result.texts.visible(int(i)) for i in chat_result.sample.input_ids]
    boundaries, at = {0}, 0
    for label in labels:
        at += len(label)
        boundaries.add(at)
    lines = context.plain.split("\n")
    assert "".join(lines) == "".join(labels)
    at = 0
    for line in lines:
        at += len(line)
        assert at in boundaries and cell_len(line) <= 110


# -- report's exit status: an error-level lint is a finding (1), as `tokstep lint` exits ---------------------


def test_report_exits_1_on_an_error_level_lint_of_the_sample_and_0_without(capsys, loaded):
    code, out, err = run(capsys, "report", "--text", "<s>And God said")  # BOS typed, BOS added: double-bos
    assert code == 1 and "double-bos" in out, (code, err)
    code, out, err = run(capsys, "report", "--text", "And God said")
    assert code == 0 and "lints: none" in out, (code, err)
    code, out, err = run(capsys, "report", "--text", "<s>And God said", "--json", "-")  # printed or not
    assert code == 1 and json.loads(out)


def test_data_report_exits_1_when_a_row_has_an_error_level_lint_and_0_when_none_does(capsys, data_file):
    code, out, err = run(capsys, "report", "--data", str(data_file), "--rows", "1")
    assert code == 0 and "1 row(s)" in out, (code, err)
    code, out, err = run(capsys, "report", "--data", str(data_file), "--rows", "1,5")  # line 5: not JSON
    assert code == 1 and "2 row(s)" in out, (code, err)
