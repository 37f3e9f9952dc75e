"""`tokstep --data DIR` on a scan's folder: sorting and filtering act on ALL rows (not a page), Enter steps
into the row with the model, Escape comes back; an unfinished scan is one line."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest
from memory_scan_view import MemoryScanView
from synthetic_scan import write_synthetic_scan
from test_scan import make_rows, write_jsonl
from textual.widgets import DataTable, Input
from tiny import byte_bpe, save_model_folder
from tui_wait import wait_for

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import open_data
from tokstep.engine.model.loading import ModelSpec
from tokstep.engine.scan.view import PAGE_SKIPS, ScanView
from tokstep.tui.cli.main import main
from tokstep.tui.screens import scan_browser
from tokstep.tui.screens.app import TokstepApp
from tokstep.tui.screens.scan_browser import ScanBrowserScreen
from tokstep.tui.screens.stepper import StepperScreen


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A finished scan of 60 rows (several chunks) with the tiny model; returns (folder, model, data)."""
    root = tmp_path_factory.mktemp("scan-browser")
    model = save_model_folder(root / "model", byte_bpe(adds_bos=True), "llama")
    data = write_jsonl(root / "train.jsonl", make_rows(60, seed=4))
    out = root / "scan"
    assert main(["scan", data, "--model", model, "--out", str(out), "--chunk-rows", "16"]) == 0
    return str(out), model, data


def test_shards_hold_big_row_groups_not_one_per_chunk(scanned, tmp_path, monkeypatch):
    """The merge writes row groups of SHARD_ROW_GROUP rows (the last one shorter), whatever the chunk size,
    and the rows read back the same as the scan of one group per chunk."""
    import pyarrow.parquet as pq

    from tokstep.engine.scan import run as scan_run

    monkeypatch.setattr(scan_run, "SHARD_ROW_GROUP", 25)
    _, model, data = scanned
    out = tmp_path / "scan"
    assert main(["scan", data, "--model", model, "--out", str(out), "--chunk-rows", "8"]) == 0
    (shard,) = json.loads((out / "manifest.json").read_text())["shards"]
    groups = pq.ParquetFile(out / shard).metadata
    assert [groups.row_group(i).num_rows for i in range(groups.num_row_groups)] == [25, 25, 10]
    merged, chunked = ScanView(out).page(0, 60), ScanView(scanned[0]).page(0, 60)
    floats = ("loss", "max_ce", "worst_ce")  # other chunks batch rows differently: the last bits may differ
    assert same(
        [{k: v for k, v in r.items() if k not in floats} for r in merged],
        [{k: v for k, v in r.items() if k not in floats} for r in chunked],
    )
    losses = [np.array([r["loss"] for r in rows], dtype=float) for rows in (merged, chunked)]  # None: NaN
    assert np.allclose(*losses, rtol=1e-5, equal_nan=True)


def losses_of(view: ScanView) -> np.ndarray:
    return view.column("loss")


def test_sort_and_filter_cover_every_row(scanned):
    view = ScanView(scanned[0])
    assert view.total == 60 and view.model == scanned[1]
    view.sort("loss")
    ranked = [r["loss"] for r in view.page(0, 60)]
    scored = [x for x in losses_of(view) if not np.isnan(x)]
    assert ranked[: len(scored)] == sorted(scored, reverse=True)  # over all rows, unscored last
    assert all(x is None for x in ranked[len(scored) :])
    assert view.page(0, 1)[0]["loss"] == max(scored)
    view.sort("loss", descending=False)
    assert view.page(0, 1)[0]["loss"] == min(scored)

    assert view.set_filter("error") == 3 and {r["row"] for r in view.page(0, 10)} == {5, 9, 13}
    assert view.set_filter("lint:bad-row") == 1
    count = view.set_filter("form=chat tokens<30")
    assert count == sum(
        1 for r in ScanView(scanned[0]).page(0, 60) if r["form"] == "chat" and (r["tokens"] or 99) < 30
    )
    view.set_filter("ok !form=text")
    assert all(r["error"] is None and r["form"] != "text" for r in view.page(0, 60))
    view.sort("tokens")
    lengths = [r["tokens"] for r in view.page(0, 60)]
    assert lengths == sorted(lengths, reverse=True)
    view.sort("max_ce")
    shown = [r["max_ce"] for r in view.page(0, 60) if r["max_ce"] is not None]
    assert view.page(0, 1)[0]["max_ce"] == max(shown)
    with pytest.raises(TokstepError, match="filter 'loss>>3'"):
        view.set_filter("loss>>3")


FILTERS = [
    "",
    "loss>3",
    "loss>3 lint:eos-masked",
    "loss<=1.5 !lint:no-eos",
    "loss!=2.4",
    "max_ce>=6 tokens<900",
    "lint",
    "!lint",
    "error",
    "ok form=chat",
    "!form=text",
    "lint:bad-row",
    "masked_user=1",
    "loss=nan",
]


@pytest.fixture(scope="module")
def synthetic(tmp_path_factory):
    """3,000 synthetic rows in 3 shards of interleaved 7-row chunks: ties, nulls, NaN losses, error rows, lints."""
    return str(
        write_synthetic_scan(
            tmp_path_factory.mktemp("synthetic-scan") / "scan", 3000, shards=3, seed=7, chunk_rows=7
        )
    )


def same(records: list[dict], expected: list[dict]) -> bool:
    """Equal records, NaN equal to NaN (JSON writes both as NaN)."""
    return json.dumps(records) == json.dumps(expected)


def paged(records: list[dict]) -> list[dict]:
    """What a page holds of the reference's records: every column but the heavy ones no page shows."""
    return [{k: v for k, v in record.items() if k not in PAGE_SKIPS} for record in records]


@pytest.mark.parametrize("text", FILTERS)
def test_the_query_engine_gives_the_in_memory_rows_in_the_same_order(scanned, synthetic, text):
    """Every filter and sort (both ways), paged from the middle too: the same records as the in-memory view."""
    for folder in (scanned[0], synthetic):
        view, reference = ScanView(folder), MemoryScanView(folder)
        assert view.set_filter(text) == reference.set_filter(text)
        for by in ("row", "loss", "max_ce", "lints", "tokens", "supervised"):
            for descending in (False, True):
                view.sort(by, descending)
                reference.sort(by, descending)
                assert same(view.page(0, 40), paged(reference.page(0, 40))), (folder, by, descending)
                for start in (max(len(view) // 2 - 5, 0), len(view) // 2 + 3, max(len(view) - 7, 0)):
                    # the middle, and past it (read from the end, in reverse): the same rows in the same order
                    assert same(view.page(start, 10), paged(reference.page(start, 10))), (start, by)
        assert same(list(view.records(batch=7)), reference.page(0, len(reference)))


def test_a_filter_matching_more_rows_than_it_keeps_reads_the_shards(synthetic, monkeypatch):
    """Past `HITS_CAP` matching rows the filter's keys are not kept: counts, pages and sorts still agree."""
    from tokstep.engine.scan import view as view_module

    monkeypatch.setattr(view_module, "HITS_CAP", 50)
    view, reference = ScanView(synthetic), MemoryScanView(synthetic)
    for text in ("loss>3 lint:eos-masked", "error"):  # more than 50 rows match the first, fewer the second
        assert view.set_filter(text) == reference.set_filter(text)
        assert view._hits == (len(view) <= 50)
        for by in ("loss", "lints"):
            view.sort(by)
            reference.sort(by)
            for start in (0, len(view) - 10):
                assert same(view.page(start, 10), paged(reference.page(start, 10))), (text, by, start)


def test_lint_bits_say_the_lints_and_scans_without_them_still_filter(scanned, synthetic, tmp_path):
    """Every row's `lint_bits` are its lints' bits (the manifest names them); a scan written before the
    column (format 2) filters on lints by searching the lists, to the same rows."""
    import pyarrow.parquet as pq

    from tokstep.engine.scan.run import LINT_BITS, lint_bits

    manifest = json.loads((Path(scanned[0]) / "manifest.json").read_text())
    assert manifest["lint_bits"] == list(LINT_BITS)
    records = list(ScanView(scanned[0]).records())
    assert any(r["lints"] for r in records)
    assert all(r["lint_bits"] == lint_bits(r["lints"]) for r in records)

    old = tmp_path / "old-scan"
    old.mkdir()
    manifest = json.loads((Path(synthetic) / "manifest.json").read_text())
    for shard in manifest["shards"]:
        pq.write_table(pq.read_table(Path(synthetic) / shard).drop_columns(["lint_bits"]), old / shard)
    del manifest["lint_bits"]
    (old / "manifest.json").write_text(json.dumps(manifest))
    for text in ("lint:eos-masked", "loss>3 !lint:no-eos"):
        view, before = ScanView(synthetic), ScanView(old)
        assert (
            "lint_bits" in view.parse_filter(text).where
            and "lint_bits" not in before.parse_filter(text).where
        )
        assert view.set_filter(text) == before.set_filter(text) > 0
        assert [r["row"] for r in view.page(0, 50)] == [r["row"] for r in before.page(0, 50)]


def test_the_query_engine_reads_columns_it_was_not_told_about(synthetic, tmp_path):
    """A column a later scan adds (here `findings_extra`) is filterable without a code change."""
    import pyarrow as pa
    import pyarrow.parquet as pq

    folder = tmp_path / "scan"
    folder.mkdir()
    manifest = json.loads((Path(synthetic) / "manifest.json").read_text())
    for shard in manifest["shards"]:
        table = pq.read_table(Path(synthetic) / shard)
        extra = pa.array([("odd" if r % 2 else "even") for r in table.column("row").to_pylist()])
        pq.write_table(table.append_column("findings_extra", extra), folder / shard)
    (folder / "manifest.json").write_text(json.dumps(manifest))
    view = ScanView(folder)
    assert view.set_filter("findings_extra=odd") == 1500
    assert all(r["row"] % 2 == 1 and r["findings_extra"] == "odd" for r in view.page(0, 50))
    with pytest.raises(TokstepError, match="no column 'findings_extr'"):
        view.set_filter("findings_extr=odd")
    with pytest.raises(TokstepError, match="compare that way"):
        view.set_filter("findings_extra>3")


def test_an_unfinished_scan_is_one_line(tmp_path, capsys):
    folder = tmp_path / "scan"
    folder.mkdir()
    (folder / "scan.json").write_text(json.dumps({"identity": {}}))
    assert main(["--data", str(folder)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "not finished" in err and "rerun" in err


def _app(scanned) -> TokstepApp:
    folder, model, _ = scanned
    return TokstepApp(ModelSpec(name_or_path=model), None, data=folder, scan_view=ScanView(folder))


async def _wait(pilot, condition, what: str) -> None:
    await wait_for(pilot, condition, what, tries=500, step=0.02)


async def test_sort_is_global_enter_steps_into_the_row_and_escape_comes_back(scanned, monkeypatch):
    monkeypatch.setattr(scan_browser, "WINDOW", 10)  # a window much smaller than the scan
    monkeypatch.setattr(
        scan_browser, "FIRST_MARGIN", -30
    )  # a table of about 35 rows: a few first, then the rest
    app = _app(scanned)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ScanBrowserScreen)
        status = screen.query_one("#scan-status")
        await _wait(pilot, lambda: screen.query_one(DataTable).row_count == 10, "the first rows")
        await pilot.press("L")
        await _wait(pilot, lambda: "sorted by loss" in str(status.content), "the sort")
        await _wait(pilot, lambda: screen.query_one(DataTable).row_count == 10, "the whole window")
        table = screen.query_one(DataTable)
        top = int(table.coordinate_to_cell_key((0, 0)).row_key.value)
        all_losses = screen.view.column("loss")
        assert top == int(np.nanargmax(all_losses))  # the worst row of all 60, not of the first 10
        shown = [screen.records[int(table.coordinate_to_cell_key((i, 0)).row_key.value)] for i in range(10)]
        assert shown == screen.view.page(0, 10)  # both pieces, in order
        await pilot.press("n")
        await _wait(pilot, lambda: str(status.content).startswith("rows 11–20"), "the next window")
        await _wait(pilot, lambda: table.row_count == 10, "the next window's rows")
        assert screen.start == 10

        await pilot.press("slash")
        field = screen.query_one("#scan-filter", Input)
        assert field.has_focus
        for key in "form=chat":
            await pilot.press(key if key != "=" else "equals_sign")
        await pilot.press("enter")
        await _wait(pilot, lambda: "filter 'form=chat'" in str(status.content), "the filter")
        assert screen.view.filter is not None and screen.view.filter.text == "form=chat"
        assert screen.records and all(r["form"] == "chat" for r in screen.records.values())

        await _wait(pilot, lambda: app.loaded is not None or app.load_error, "the model")
        chosen = int(table.coordinate_to_cell_key(table.cursor_coordinate).row_key.value)
        await pilot.press("enter")
        await _wait(pilot, lambda: isinstance(app.screen, StepperScreen), "the stepper")
        stepper = app.screen
        expected = open_data(scanned[2]).row(chosen).spec
        assert stepper.result.sample.name == expected.name
        record = screen.records[chosen]
        assert stepper.result.trace.loss == pytest.approx(record["loss"], rel=1e-5)
        await pilot.press("escape")
        await _wait(pilot, lambda: app.screen is screen, "the scan browser again")
        assert screen.view.filter.text == "form=chat"  # where the user left it


async def test_a_query_that_fails_is_a_notification_and_the_browser_goes_on(scanned, monkeypatch):
    """A sort whose query fails (a shard deleted under the browser, say) is one notification; the next works."""
    app = _app(scanned)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = app.screen
        table = screen.query_one(DataTable)
        await _wait(pilot, lambda: table.row_count > 0, "the rows")
        working = screen.view.page_keys

        def broken(start: int, count: int) -> list:
            raise TokstepError("cannot read the scan: shard-00000-of-00001.parquet is gone")

        monkeypatch.setattr(screen.view, "page_keys", broken)
        await pilot.press("L")
        await _wait(pilot, lambda: any("is gone" in str(n.message) for n in app._notifications), "the error")
        monkeypatch.setattr(screen.view, "page_keys", working)
        await pilot.press("T")
        status = screen.query_one("#scan-status")
        await _wait(pilot, lambda: "sorted by tokens" in str(status.content), "the next sort")
        assert app.is_running and table.row_count > 0


def test_scan_query_writes_the_rows_to_fix_as_jsonl(scanned, tmp_path, capsys):
    """`tokstep scan-query DIR 'loss>3' --out F`: the rows the in-memory view keeps, in its order, each with
    the row itself from the data file; a bad filter is one line and status 2."""
    folder, _, data = scanned
    out = tmp_path / "bad.jsonl"
    assert main(["scan-query", folder, "loss>3 ok", "--sort", "loss", "--out", str(out)]) == 0
    assert "rows →" in capsys.readouterr().err
    lines = [json.loads(line) for line in out.read_text().splitlines()]
    reference = MemoryScanView(folder)
    reference.sort("loss")
    expected = reference.page(0, reference.set_filter("loss>3 ok"))
    assert 0 < len(lines) < 60 and [r["row"] for r in lines] == [r["row"] for r in expected]
    assert all(r["loss"] > 3 for r in lines) and [r["loss"] for r in lines] == sorted(
        (r["loss"] for r in lines), reverse=True
    )
    source = Path(data).read_text().splitlines()  # one row a line in this file
    assert all(r["data"] == json.loads(source[r["row"]]) for r in lines)

    assert main(["scan-query", folder, "error"]) == 0  # to stdout
    printed = [json.loads(line) for line in capsys.readouterr().out.splitlines()]
    assert [r["row"] for r in printed] == [5, 9, 13] and printed[0]["data"] is None  # row 5 is broken JSON

    before = out.read_text()
    assert main(["scan-query", folder, "loss>>3", "--out", str(out)]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "loss>>3" in err
    assert out.read_text() == before  # nothing written on a bad filter


async def test_x_in_the_browser_exports_the_shown_rows(scanned, tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    app = _app(scanned)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = app.screen
        await _wait(pilot, lambda: screen.query_one(DataTable).row_count > 0, "the rows")
        screen.view.set_filter("form=chat")
        await pilot.press("x")
        field = screen.query_one("#scan-export", Input)
        assert field.has_focus and field.value == scan_browser.EXPORT_NAME
        await pilot.press("enter")
        target = tmp_path / scan_browser.EXPORT_NAME
        await _wait(pilot, target.exists, "the exported file")
    rows = [json.loads(line) for line in target.read_text().splitlines()]
    reference = MemoryScanView(scanned[0])
    assert [r["row"] for r in rows] == [
        r["row"] for r in reference.page(0, reference.set_filter("form=chat"))
    ]
