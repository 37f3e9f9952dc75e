"""Hugging Face `datasets` in: save_to_disk folders (Dataset, DatasetDict + --split), .arrow files, a hub data
set in a temporary HF cache (resolved offline as `load_dataset(name)` resolves it) and .jsonl.gz/.zst read the
same rows as JSONL, scan and lint to the JSONL result, browse in the real browser screen, and stay
memory-mapped."""

from __future__ import annotations

import gzip
import json
import sys

import datasets
import pyarrow as pa
import pyarrow.feather as feather
import pyarrow.parquet as pq
import pytest
import zstandard
from datasets.packaged_modules.json.json import Json
from test_browser import BrowserApp, cell, reference_loss, wait_for_losses
from textual.widgets import DataTable
from tiny import byte_bpe, save_model_folder, tiny_model

import tokstep.engine.inputs.data as data_module
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data_sources import open_source as open_data
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.scan.view import ScanView
from tokstep.tui.cli.main import main
from tokstep.tui.screens.backend import DataOptions

CHAT = [{"role": "user", "content": "Hello there"}, {"role": "assistant", "content": "Hi, how can I help?"}]
ROWS = [
    {"text": "the cat sat on the mat", "prompt": None, "completion": None, "messages": None},
    {"text": None, "prompt": "The capital of France is", "completion": " Paris.", "messages": None},
    {"text": None, "prompt": None, "completion": None, "messages": CHAT},
    {"text": "a dog ran to the log and back", "prompt": None, "completion": None, "messages": None},
]


@pytest.fixture(scope="module")
def tokenizer():
    return byte_bpe(adds_bos=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    return save_model_folder(tmp_path_factory.mktemp("tiny-llama"), tokenizer, "llama")


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    """The same rows as JSONL (the reference reader), save_to_disk, a DatasetDict, .arrow, .gz and .zst."""
    root = tmp_path_factory.mktemp("hf")
    body = "".join(json.dumps(r) + "\n" for r in ROWS)
    (root / "rows.jsonl").write_text(body)
    with gzip.open(root / "rows.jsonl.gz", "wt") as handle:
        handle.write(body)
    (root / "rows.jsonl.zst").write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
    dataset = datasets.Dataset.from_list(ROWS)
    dataset.save_to_disk(str(root / "saved"))
    datasets.DatasetDict({"train": dataset, "test": dataset.select([2, 3])}).save_to_disk(str(root / "dict"))
    arrow = next((root / "saved").glob("*.arrow"))  # the IPC stream datasets writes
    feather.write_feather(pa.Table.from_pylist(ROWS), root / "rows.arrow")  # an IPC file (Feather v2)
    return {
        "jsonl": root / "rows.jsonl",
        "gz": root / "rows.jsonl.gz",
        "zst": root / "rows.jsonl.zst",
        "saved": root / "saved",
        "dict": root / "dict",
        "stream": arrow,
        "feather": root / "rows.arrow",
    }


@pytest.fixture(scope="module")
def hub_cache(tmp_path_factory, files):
    """`acme/tiny-chat` laid out in a fresh HF_DATASETS_CACHE by the json builder, as `load_dataset` caches a
    hub repo (`acme___tiny-chat/default/0.0.0/<commit>/`), with a train and a test split."""
    cache = tmp_path_factory.mktemp("hf-home") / "datasets"
    test_split = files["jsonl"].with_name("test.jsonl")
    test_split.write_text("".join(json.dumps(r) + "\n" for r in ROWS[2:]))
    builder = Json(
        cache_dir=str(cache),
        dataset_name="tiny-chat",
        config_id="default",
        hash="0123abcd",
        data_files={"train": str(files["jsonl"]), "test": str(test_split)},
    )
    builder.repo_id = "acme/tiny-chat"  # as for a hub repo (its data files would be hf:// paths)
    builder._cache_dir = builder._build_cache_dir()
    builder.download_and_prepare()
    return cache


@pytest.fixture
def offline_cache(hub_cache, monkeypatch):
    monkeypatch.setattr(datasets.config, "HF_DATASETS_CACHE", hub_cache)
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    return hub_cache


def specs(path, split=None) -> list:
    return [(row.spec, row.error) for row in open_data(path, split=split).rows()]


def plain(pairs) -> list:
    """Specs without their names (file:line vs folder#row)."""
    return [(None if spec is None else spec.__class__(**{**vars(spec), "name": ""}), e) for spec, e in pairs]


@pytest.mark.parametrize("form", ["gz", "zst", "saved", "stream", "feather"])
def test_every_form_reads_the_rows_jsonl_reads(files, form):
    reference = plain(specs(files["jsonl"]))
    assert [spec.chat is not None for spec, _ in reference] == [False, False, True, False]
    assert plain(specs(files[form])) == reference


def test_compressed_jsonl_keeps_line_numbers(files):
    rows = list(open_data(files["gz"]).rows())
    assert [r.line for r in rows] == [1, 2, 3, 4] and rows[0].spec.name == "rows.jsonl.gz:1"


@pytest.mark.parametrize("form", ["gz", "zst"])
def test_compressed_lines_split_across_decompression_steps(tmp_path, monkeypatch, form):
    monkeypatch.setattr(data_module, "SCAN_BYTES", 7)  # every line straddles a decompressed step
    texts = [f"row number {i}" for i in range(30)]
    body = "".join(json.dumps({"text": t}) + "\n" for t in texts) + '\n   \n{"text": "last, no newline"}'
    path = tmp_path / f"rows.jsonl.{form}"
    if form == "gz":
        path.write_bytes(gzip.compress(body.encode()))
    else:
        path.write_bytes(zstandard.ZstdCompressor().compress(body.encode()))
    rows = list(open_data(path).rows())
    assert [r.spec.text for r in rows] == [*texts, "last, no newline"]
    assert [r.line for r in rows] == [*range(1, 31), 33]


def test_a_corrupt_archive_is_one_line(tmp_path):
    path = tmp_path / "rows.jsonl.gz"
    whole = gzip.compress(
        "".join(json.dumps({"text": f"row {i * 7919}"}) + "\n" for i in range(2000)).encode()
    )
    path.write_bytes(whole[: len(whole) // 2])  # cut short: a download that stopped
    with pytest.raises(TokstepError, match="cannot decompress"):
        list(open_data(path).rows())


def test_dataset_dict_split_is_chosen_and_needed(files):
    assert plain(specs(files["dict"], "test")) == plain(specs(files["jsonl"]))[2:]
    with pytest.raises(TokstepError, match="has the splits train, test: choose one with --split"):
        open_data(files["dict"])
    with pytest.raises(TokstepError, match="no split 'dev'"):
        open_data(files["dict"], split="dev")


def test_cached_hub_data_set_reads_as_load_dataset_reads_it_offline(offline_cache):
    ours = [row.spec for row in open_data("acme/tiny-chat", split="train").rows()]
    theirs = datasets.load_dataset("acme/tiny-chat", split="train")  # the library's own offline resolution
    assert len(ours) == len(theirs) == len(ROWS)
    assert [s.text for s in ours] == theirs["text"]
    assert [s.answer for s in ours] == theirs["completion"]
    assert ours[2].chat == tuple(theirs[2]["messages"])
    assert len(open_data("acme/tiny-chat", split="test")) == 2


def test_a_name_not_in_the_cache_is_one_clear_line(offline_cache, tmp_path, model_dir, capsys):
    assert main(["lint", "acme/not-cached", "--model", model_dir]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1
    assert "acme/not-cached" in err and "not a data set in the Hugging Face cache" in err
    assert str(offline_cache) in err


def test_without_datasets_installed_one_line(files, monkeypatch):
    monkeypatch.setitem(sys.modules, "datasets", None)
    with pytest.raises(TokstepError, match=r"needs the Hugging Face `datasets` package: pip install"):
        open_data(files["saved"])
    with pytest.raises(
        TokstepError, match=r"data file not found: acme/tiny-chat \(looking it up as a cached"
    ):
        open_data("acme/tiny-chat")


def test_reading_a_row_keeps_the_data_set_memory_mapped(tmp_path):
    """Rows are read a slice at a time from the mapped file: Arrow allocates next to nothing."""
    big = datasets.Dataset.from_dict({"text": ["x" * 2000] * 20000})  # ~40 MB of text
    big.save_to_disk(str(tmp_path / "big"), max_shard_size="16MB")
    del big
    before = pa.total_allocated_bytes()
    data = open_data(tmp_path / "big")
    last = data.row(len(data) - 1)
    assert len(data) == 20000 and last.spec.text == "x" * 2000
    assert pa.total_allocated_bytes() - before < 4 << 20  # far below the 40 MB on disk


def read_scan(out) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    rows = pa.concat_tables([pq.read_table(out / shard) for shard in manifest["shards"]]).to_pylist()
    return sorted(rows, key=lambda r: r["row"])


def test_scan_of_saved_and_cached_data_sets_gives_the_jsonl_result(files, offline_cache, model_dir, tmp_path):
    results = {}
    for name, args in {
        "jsonl": [str(files["jsonl"])],
        "saved": [str(files["saved"])],
        "hub": ["acme/tiny-chat", "--split", "train"],
    }.items():
        out = tmp_path / name
        assert main(["scan", *args, "--model", model_dir, "--out", str(out)]) == 0
        results[name] = read_scan(out)
    losses = [r["loss"] for r in results["jsonl"]]
    assert all(loss is not None for loss in losses)
    for name in ("saved", "hub"):
        assert [r["loss"] for r in results[name]] == pytest.approx(losses, rel=1e-6)
        assert [r["line"] for r in results[name]] == [None] * len(ROWS)
    reopened = ScanView(tmp_path / "hub").open_data()  # what the scan browser reads a row back with
    assert reopened.row(2).spec.chat == tuple(CHAT)
    # a rerun resumes (same identity: name, split and the cache files' stamp)
    assert (
        main(
            [
                "scan",
                "acme/tiny-chat",
                "--split",
                "train",
                "--model",
                model_dir,
                "--out",
                str(tmp_path / "hub"),
            ]
        )
        == 0
    )


def test_lint_of_a_dataset_dict_split_equals_lint_of_the_jsonl(files, model_dir, tmp_path, capsys):
    assert main(["lint", str(files["jsonl"]), "--model", model_dir, "--json"]) in (0, 1)
    reference = json.loads(capsys.readouterr().out)
    assert main(["lint", str(files["dict"]), "--split", "train", "--model", model_dir, "--json"]) in (0, 1)
    ours = json.loads(capsys.readouterr().out)
    assert ours["rows"] == reference["rows"] == len(ROWS)
    assert ours["counts"] == reference["counts"]
    codes = [sorted(f["code"] for f in r["findings"]) for r in ours["results"]]
    assert codes == [sorted(f["code"] for f in r["findings"]) for r in reference["results"]]


@pytest.fixture(scope="module")
def loaded():
    tokenizer = byte_bpe(adds_bos=True)
    return wrap_model(tiny_model("llama", len(tokenizer)), tokenizer, "tiny-llama")


async def test_browser_lists_a_dataset_dict_split_with_row_numbers_and_hf_losses(files, loaded):
    app = BrowserApp(str(files["dict"]), loaded, DataOptions(split="test"))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, 2)
        table = screen.query_one(DataTable)
        assert table.row_count == 2
        assert str(table.columns["line"].label) == "row"  # an Arrow data set has rows, not lines
        assert [cell(table, i, "form") for i in range(2)] == ["chat", "text"]
        assert cell(table, 0, "line") == "1"
        for index in (0, 1):
            expected = reference_loss(loaded, screen.rows[index].spec)
            assert screen.losses[index][0] == pytest.approx(expected, rel=1e-4)


async def test_browser_opens_a_cached_hub_data_set(offline_cache, loaded):
    app = BrowserApp("acme/tiny-chat", loaded, DataOptions(split="train"))
    async with app.run_test(size=(140, 40)) as pilot:
        screen = app.screen
        await wait_for_losses(pilot, screen, len(ROWS))
        assert screen.query_one(DataTable).row_count == len(ROWS)
        assert screen.rows[1].spec.answer == " Paris."
