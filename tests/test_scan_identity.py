"""A scan is keyed by its content: new weights saved into the same model folder, or a changed data file,
refuse to resume or reuse (never rows of two models in one scan); --force starts over. A failed start leaves
nothing; torn chunks and shards are redone; a second scan into a locked --out is refused; SIGTERM is 143."""

from __future__ import annotations

import fcntl
import json
import os
import shutil
import signal
from pathlib import Path

import pyarrow.parquet as pq
import pytest
import torch
from safetensors.torch import load_file, save_file
from test_scan import make_rows, read_scan, write_jsonl
from tiny import byte_bpe, save_model_folder

import tokstep.engine.scan.run as scan_module
from tokstep.tui.cli.main import main


@pytest.fixture(scope="module")
def source_model(tmp_path_factory) -> Path:
    return Path(save_model_folder(tmp_path_factory.mktemp("scan-id-llama"), byte_bpe(adds_bos=True), "llama"))


@pytest.fixture
def model_dir(source_model, tmp_path) -> Path:
    """A private copy: the tests write new weights into it, as a trainer saving a checkpoint does."""
    return Path(shutil.copytree(source_model, tmp_path / "model"))


@pytest.fixture
def data_file(tmp_path) -> str:
    return write_jsonl(tmp_path / "train.jsonl", make_rows(24))


def save_new_weights(folder: Path) -> None:
    """Overwrite model.safetensors in place with other weights (same names, same shapes)."""
    state = load_file(folder / "model.safetensors")
    generator = torch.Generator().manual_seed(7)
    changed = {k: v + 0.05 * torch.randn(v.shape, generator=generator) for k, v in state.items()}
    save_file(changed, folder / "model.safetensors", metadata={"format": "pt"})


def scan(data_file, model_dir, out, *extra) -> int:
    return main(
        ["scan", str(data_file), "--model", str(model_dir), "--out", str(out), "--chunk-rows", "4", *extra]
    )


def one_error_line(capsys) -> str:
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and err[0].startswith("tokstep: error: "), err
    return err[0]


def terminate_after(count: int, monkeypatch, writer: str = "write_atomic") -> None:
    """SIGTERM this process after the count-th file the scan commits through `writer`."""
    real = getattr(scan_module, writer)
    written = {"n": 0}

    def write(path, writer):
        real(path, writer)
        written["n"] += 1
        if written["n"] == count:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(scan_module, writer, write)


def test_new_weights_in_the_same_folder_never_mix_with_the_old_rows(
    tmp_path, model_dir, data_file, monkeypatch, capsys
):
    out = tmp_path / "scan"
    terminate_after(1, monkeypatch)  # one chunk committed, then SIGTERM
    assert scan(data_file, model_dir, out) == 128 + signal.SIGTERM
    assert "interrupted" in capsys.readouterr().err
    monkeypatch.undo()
    assert len(list((out / "chunks").glob("chunk-*.parquet"))) == 1
    save_new_weights(model_dir)
    assert scan(data_file, model_dir, out) == 2
    line = one_error_line(capsys)
    assert "files of model" in line and "changed" in line and "--force" in line
    assert not (out / "manifest.json").exists()

    assert scan(data_file, model_dir, out, "--force") == 0
    capsys.readouterr()
    fresh = tmp_path / "fresh"
    assert scan(data_file, model_dir, fresh) == 0
    capsys.readouterr()
    assert [(r["row"], r["loss"]) for r in read_scan(out)] == [
        (r["row"], r["loss"]) for r in read_scan(fresh)
    ]


def test_a_finished_scan_is_not_reused_after_the_weights_or_the_data_change(
    tmp_path, model_dir, data_file, capsys
):
    out = tmp_path / "scan"
    assert scan(data_file, model_dir, out) == 0
    capsys.readouterr()
    save_new_weights(model_dir)
    assert scan(data_file, model_dir, out) == 2
    assert "files of model" in one_error_line(capsys)
    assert scan(data_file, model_dir, out, "--force") == 0
    capsys.readouterr()
    with open(data_file, "a") as handle:
        handle.write(json.dumps({"text": "one more row"}) + "\n")
    assert scan(data_file, model_dir, out) == 2
    assert "the data file" in one_error_line(capsys)
    assert scan(data_file, model_dir, out, "--force") == 0
    assert len(read_scan(out)) == 25


@pytest.mark.parametrize(
    ("model", "device", "fragment"),
    [("./typo", "cpu", "no such folder"), (None, "cuda", "CUDA is not available"), (None, "cuda:3", "CUDA")],
)
def test_a_start_that_fails_before_the_first_row_leaves_nothing(
    tmp_path, model_dir, data_file, capsys, monkeypatch, model, device, fragment
):
    monkeypatch.chdir(tmp_path)
    out = tmp_path / "scan"
    assert scan(data_file, model or model_dir, out, "--device", device) == 2
    assert fragment in one_error_line(capsys)
    assert not out.exists()
    assert scan(data_file, model_dir, out) == 0  # the corrected command just works


def test_a_start_interrupted_before_the_first_chunk_leaves_nothing(
    tmp_path, model_dir, data_file, monkeypatch, capsys
):
    out = tmp_path / "scan"
    terminate_after(1, monkeypatch, "write_json_atomic")  # right after scan.json
    assert scan(data_file, model_dir, out) == 143
    assert "nothing was written" in capsys.readouterr().err
    assert not out.exists()


def test_an_empty_data_file_is_the_same_error_as_in_lint(tmp_path, model_dir, capsys):
    empty = tmp_path / "empty.jsonl"
    empty.write_text("")
    assert main(["lint", str(empty), "--model", str(model_dir)]) == 2
    lint_line = one_error_line(capsys)
    assert scan(empty, model_dir, tmp_path / "scan") == 2
    assert one_error_line(capsys) == lint_line == f"tokstep: error: {empty} has no rows"
    assert not (tmp_path / "scan").exists()


@pytest.mark.parametrize("damage", ["truncate", "garbage", "other-rows"])
def test_a_torn_chunk_is_redone_on_resume(tmp_path, model_dir, data_file, monkeypatch, capsys, damage):
    reference = tmp_path / "reference"
    assert scan(data_file, model_dir, reference) == 0
    out = tmp_path / "scan"
    terminate_after(3, monkeypatch)
    assert scan(data_file, model_dir, out) == 143
    monkeypatch.undo()
    chunk = out / "chunks" / "chunk-000001.parquet"
    raw = chunk.read_bytes()
    if damage == "truncate":
        chunk.write_bytes(raw[: len(raw) // 2])
    elif damage == "garbage":
        chunk.write_bytes(b"PAR1" + b"\0" * 64 + raw[-8:])
    else:
        shutil.copy(out / "chunks" / "chunk-000000.parquet", chunk)
    capsys.readouterr()
    assert scan(data_file, model_dir, out) == 0
    assert "resuming: 2 chunk(s) already done" in capsys.readouterr().err
    assert read_scan(out) == read_scan(reference)


def test_a_truncated_shard_of_a_finished_scan_is_redone(tmp_path, model_dir, data_file, capsys):
    out = tmp_path / "scan"
    assert scan(data_file, model_dir, out) == 0
    before = read_scan(out)
    shard = out / "shard-00000-of-00001.parquet"
    shard.write_bytes(shard.read_bytes()[:-100])
    capsys.readouterr()
    assert scan(data_file, model_dir, out) == 0
    assert "already holds" not in capsys.readouterr().err
    assert pq.ParquetFile(shard).metadata.num_rows == 24 and read_scan(out) == before


def test_a_second_scan_into_a_locked_folder_is_refused(tmp_path, model_dir, data_file, capsys):
    out = tmp_path / "scan"
    out.mkdir()
    holder = os.open(out, os.O_RDONLY)
    fcntl.flock(holder, fcntl.LOCK_EX | fcntl.LOCK_NB)  # as a running scan holds it
    try:
        assert scan(data_file, model_dir, out) == 2
        assert "in use by another tokstep scan" in one_error_line(capsys)
        assert list(out.iterdir()) == []
    finally:
        os.close(holder)
    assert scan(data_file, model_dir, out) == 0
