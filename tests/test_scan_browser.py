"""`tokstep --data DIR` on a scan's folder: sorting and filtering act on ALL rows (not a page), Enter steps
into the row with the model, Escape comes back; an unfinished scan is one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
from test_scan import make_rows, write_jsonl
from textual.widgets import DataTable, Input
from tiny import byte_bpe, save_model_folder
from tui_wait import wait_for

from tokstep.engine.data import open_data
from tokstep.engine.errors import TokstepError
from tokstep.engine.loading import ModelSpec
from tokstep.engine.scan_view import ScanView
from tokstep.tui import scan_browser
from tokstep.tui.app import TokstepApp
from tokstep.tui.cli import main
from tokstep.tui.scan_browser import ScanBrowserScreen
from tokstep.tui.stepper import StepperScreen


@pytest.fixture(scope="module")
def scanned(tmp_path_factory):
    """A finished scan of 60 rows (several chunks) with the tiny model; returns (folder, model, data)."""
    root = tmp_path_factory.mktemp("scan-browser")
    model = save_model_folder(root / "model", byte_bpe(adds_bos=True), "llama")
    data = write_jsonl(root / "train.jsonl", make_rows(60, seed=4))
    out = root / "scan"
    assert main(["scan", data, "--model", model, "--out", str(out), "--chunk-rows", "16"]) == 0
    return str(out), model, data


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
    assert view.page(0, 1)[0]["max_ce"] == np.nanmax(view.column("max_ce")[view.order])
    with pytest.raises(TokstepError, match="filter 'loss>>3'"):
        view.set_filter("loss>>3")


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
    app = _app(scanned)
    async with app.run_test(size=(150, 40)) as pilot:
        screen = app.screen
        assert isinstance(screen, ScanBrowserScreen)
        await _wait(pilot, lambda: screen.query_one(DataTable).row_count == 10, "the first rows")
        await pilot.press("L")
        table = screen.query_one(DataTable)
        top = int(table.coordinate_to_cell_key((0, 0)).row_key.value)
        all_losses = screen.view.column("loss")
        assert top == int(np.nanargmax(all_losses))  # the worst row of all 60, not of the first 10
        await pilot.press("n")
        assert screen.start == 10 and table.row_count == 10

        await pilot.press("slash")
        field = screen.query_one("#scan-filter", Input)
        assert field.has_focus
        for key in "form=chat":
            await pilot.press(key if key != "=" else "equals_sign")
        await pilot.press("enter")
        assert screen.view.filter is not None and screen.view.filter.text == "form=chat"
        assert all(r["form"] == "chat" for r in screen.records.values())
        assert "filter 'form=chat'" in str(screen.query_one("#scan-status").content)

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
