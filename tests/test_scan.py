"""`tokstep scan`: batched losses equal each row traced alone and HF's loss; bad rows become error rows;
the output folder is guarded; a SIGKILLed scan resumes to the same result; 2 gloo processes give the
1-process result; a full disk is one line and the rerun resumes."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch
from tiny import byte_bpe, save_model_folder, tiny_model

import tokstep.engine.scan.run as scan_module
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.trace import reference_loss, trace_sample
from tokstep.engine.scan.batched import length_buckets, score_batch
from tokstep.tui.cli.main import main

REPO = Path(__file__).resolve().parents[1]
WORDS = [
    "the",
    "cat",
    "sat",
    "on",
    "the",
    "mat",
    "and",
    "the",
    "dog",
    "ran",
    "to",
    "the",
    "log",
    "while",
    "a",
    "bird",
    "sang",
    "in",
    "the",
    "tree",
]


def _sentence(rng: np.random.Generator, low: int, high: int) -> str:
    return " ".join(rng.choice(WORDS, size=int(rng.integers(low, high)))).capitalize() + "."


def make_rows(count: int, seed: int = 0) -> list[object]:
    """Rows of every form and length, with a few bad ones among them."""
    rng = np.random.default_rng(seed)
    rows: list[object] = []
    for i in range(count):
        kind = i % 4
        if kind == 0:
            rows.append({"text": _sentence(rng, 3, 40)})
        elif kind == 1:
            rows.append({"prompt": _sentence(rng, 2, 10), "completion": " " + _sentence(rng, 2, 20)})
        elif kind == 2:
            rows.append(
                {
                    "messages": [
                        {"role": "user", "content": _sentence(rng, 2, 12)},
                        {"role": "assistant", "content": _sentence(rng, 2, 25)},
                    ]
                }
            )
        else:
            ids = rng.integers(3, 300, size=int(rng.integers(3, 30))).tolist()
            rows.append({"input_ids": ids, "labels": [-100] * 2 + ids[2:]})
    rows[5] = "{broken json"
    rows[9] = {"prompt": "no answer", "completion": ""}
    rows[13] = {"input_ids": [1, 99999, 3]}
    return rows


def write_jsonl(path: Path, rows: list[object]) -> str:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r)) + "\n" for r in rows))
    return str(path)


@pytest.fixture(scope="module")
def tokenizer():
    return byte_bpe(adds_bos=True)


@pytest.fixture(scope="module")
def model_dir(tmp_path_factory, tokenizer):
    return save_model_folder(tmp_path_factory.mktemp("tiny-llama"), tokenizer, "llama")


@pytest.fixture(scope="module")
def data_file(tmp_path_factory):
    """40 rows; rows 33 and 37 copy rows 10 and 2 (other chunks, other ranks, other runs of a resumed scan)."""
    rows = make_rows(40)
    rows[33], rows[37] = rows[10], rows[2]
    return write_jsonl(tmp_path_factory.mktemp("data") / "train.jsonl", rows)


def read_scan(out: Path) -> list[dict]:
    manifest = json.loads((out / "manifest.json").read_text())
    table = pa.concat_tables([pq.read_table(out / shard) for shard in manifest["shards"]])
    return sorted(table.to_pylist(), key=lambda r: r["row"])


def assert_same_rows(a: list[dict], b: list[dict]) -> None:
    assert len(a) == len(b)
    for x, y in zip(a, b, strict=True):
        for key in x:
            if key in ("loss", "max_ce") and x[key] is not None:
                assert y[key] == pytest.approx(x[key], rel=1e-6), (x["row"], key)
            elif key == "worst_ce":
                assert y[key] == pytest.approx(x[key], rel=1e-5), (x["row"], key)
            elif key not in ("worst_t", "worst_token"):  # ties among equal CEs may order differently
                assert x[key] == y[key], (x["row"], key)


# ---------------------------------------------------------------- the batched forward


@pytest.mark.parametrize("arch", ["llama", "gpt2", "gemma2"])
def test_each_rows_loss_equals_the_row_traced_alone_and_hf(arch, tokenizer):
    loaded = wrap_model(tiny_model(arch, len(tokenizer)), tokenizer, arch)
    rng = np.random.default_rng(1)
    specs = [SampleSpec(text=_sentence(rng, 2, 60)) for _ in range(7)]
    specs.append(SampleSpec(prompt="The cat", answer=" sat on the mat."))
    specs.append(SampleSpec(ids={"input_ids": [5, 6, 7, 8, 9, 10], "attention_mask": [1, 1, 1, 1, 0, 0]}))
    samples = [build_sample(spec, tokenizer) for spec in specs]
    assert len({len(s) for s in samples}) > 4  # really different lengths: real padding
    scores = score_batch(loaded, samples)
    for sample, score in zip(samples, scores, strict=True):
        alone = trace_sample(loaded, sample, top_k=1)
        assert score.loss == pytest.approx(alone.loss, rel=1e-6)
        np.testing.assert_allclose(score.logprob, alone.logprob, rtol=1e-5, atol=1e-5)
        assert score.loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)


def test_an_unknown_post_head_transform_falls_back_to_the_models_logits(tokenizer):
    model = tiny_model("llama", len(tokenizer), seed=3)
    inner = model.forward

    def doubled(*args, **kwargs):  # a post-head transform the engine does not know
        out = inner(*args, **kwargs)
        out.logits = out.logits * 2
        if out.loss is not None:  # HF's loss on the doubled logits, as such a model would compute it
            out.loss = model.loss_function(out.logits, kwargs["labels"], vocab_size=out.logits.shape[-1])
        return out

    model.forward = doubled
    loaded = wrap_model(model, tokenizer, "odd")
    samples = [build_sample(SampleSpec(text=t), tokenizer) for t in ("the cat sat", "a dog ran to the log")]
    for sample, score in zip(samples, score_batch(loaded, samples), strict=True):
        assert score.loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)


def test_length_buckets_keep_every_row_once_within_the_token_budget():
    lengths = [5, 300, 7, 7, 120, 64, 3, 300, 9]
    batches = length_buckets(lengths, batch_tokens=400)
    assert sorted(i for b in batches for i in b) == list(range(len(lengths)))
    for batch in batches:
        assert len(batch) == 1 or len(batch) * max(lengths[i] for i in batch) <= 400


# ---------------------------------------------------------------- the command


def test_scan_writes_one_record_per_row_and_matches_tracing(
    tmp_path, model_dir, data_file, tokenizer, capsys
):
    out = tmp_path / "scan"
    assert main(["scan", data_file, "--model", model_dir, "--out", str(out), "--chunk-rows", "16"]) == 0
    err = capsys.readouterr().err
    assert "40 rows" in err
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["rows"] == 40 and manifest["shards"] == ["shard-00000-of-00001.parquet"]
    assert not (out / "chunks").exists()
    rows = read_scan(out)
    assert [r["row"] for r in rows] == list(range(40))
    assert rows[5]["error"].startswith("not valid JSON") and rows[5]["lints"] == ["bad-row"]
    assert "answer is empty" in rows[9]["error"] and rows[9]["loss"] is None
    assert "outside the model's vocabulary" in rows[13]["error"]
    loaded = wrap_model(
        __import__("transformers").AutoModelForCausalLM.from_pretrained(model_dir), tokenizer, "tiny"
    )
    from tokstep.engine.inputs.data import open_data

    data = open_data(data_file)
    for record in rows[:12]:
        if record["error"]:
            continue
        sample = build_sample(data.row(record["row"]).spec, tokenizer)
        trace = trace_sample(loaded, sample, top_k=1)
        assert record["loss"] == pytest.approx(trace.loss, rel=1e-6)
        assert record["tokens"] == len(sample) and record["supervised"] == sample.num_supervised
        ce = np.where(trace.supervised, trace.ce, -np.inf)
        assert record["max_ce"] == pytest.approx(float(ce.max()), rel=1e-6)
        assert record["worst_t"][0] == int(np.argmax(ce))
        assert record["masked_first"] == 1
        reasons = [r.name.lower() for r in sample.mask_reasons]
        assert record["masked_prompt"] == reasons.count("prompt")
    assert rows[1]["masked_prompt"] > 0 and rows[2]["masked_user"] > 0
    data.close()

    # one truth: the scan's duplicate-rows are lint's (rows 33 and 37 copy rows 10 and 2)
    capsys.readouterr()
    assert main(["lint", data_file, "--model", model_dir, "--json"]) == 1
    linted = json.loads(capsys.readouterr().out)["findings"]
    expected = [(f["line"] - 1, f["message"]) for f in linted if f["code"] == "duplicate-rows"]
    found = [(r["row"], f["message"]) for r in rows for f in r["findings"] if f["code"] == "duplicate-rows"]
    assert found == expected == [(33, found[0][1]), (37, found[1][1])]
    assert "identical to line 11" in found[0][1] and "identical to line 3" in found[1][1]

    # the same command again: nothing to do
    assert main(["scan", data_file, "--model", model_dir, "--out", str(out), "--chunk-rows", "16"]) == 0
    assert "already holds this scan" in capsys.readouterr().err
    # a different scan into the same folder: refused, unless --force
    assert main(["scan", data_file, "--model", model_dir, "--out", str(out), "--truncate", "8"]) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "holds a different scan" in err and "--force" in err
    assert (
        main(["scan", data_file, "--model", model_dir, "--out", str(out), "--truncate", "8", "--force"]) == 0
    )
    assert max(r["tokens"] or 0 for r in read_scan(out)) == 8


def test_a_folder_that_is_not_a_scan_is_refused(tmp_path, model_dir, data_file, capsys):
    out = tmp_path / "mine"
    out.mkdir()
    (out / "notes.txt").write_text("keep me")
    assert main(["scan", data_file, "--model", model_dir, "--out", str(out)]) == 2
    assert "not empty and holds no tokstep scan" in capsys.readouterr().err
    assert (out / "notes.txt").read_text() == "keep me"


def test_a_full_disk_is_one_line_and_the_rerun_resumes(tmp_path, model_dir, data_file, monkeypatch, capsys):
    out = tmp_path / "scan"
    real = scan_module.write_atomic
    calls = {"n": 0}

    def fills_up(path, write):
        calls["n"] += 1
        if calls["n"] == 2:
            raise OSError(28, "No space left on device")
        return real(path, write)

    monkeypatch.setattr(scan_module, "write_atomic", fills_up)
    args = ["scan", data_file, "--model", model_dir, "--out", str(out), "--chunk-rows", "10"]
    assert main(args) == 2
    err = capsys.readouterr().err
    assert err.count("\n") == 1 and "No space left on device" in err and "rerun the same command" in err
    assert len(list((out / "chunks").glob("chunk-*.parquet"))) == 1
    assert not list((out / "chunks").glob(".*"))  # no torn temporary file left
    monkeypatch.setattr(scan_module, "write_atomic", real)
    assert main(args) == 0
    assert "resuming: 1 chunk(s) already done" in capsys.readouterr().err
    assert len(read_scan(out)) == 40


def _env() -> dict[str, str]:
    env = dict(os.environ, PYTHONPATH=f"{REPO}{os.pathsep}{REPO / 'tests'}", HF_HUB_OFFLINE="1")
    env.update(OMP_NUM_THREADS="1", TOKENIZERS_PARALLELISM="false")
    return env


# `python -m tokstep` with a pause after each committed chunk: time to kill it mid-run
_SLOW_SCAN = """
import time
import tokstep.engine.scan.run as scan
from tokstep.tui.cli.main import console_main
real = scan.write_atomic
def slow(path, write):
    real(path, write)
    time.sleep(0.2)
scan.write_atomic = slow
console_main()
"""


def test_a_killed_scan_resumes_to_the_uninterrupted_result(
    tmp_path, model_dir, data_file, monkeypatch, capsys
):
    args = ["--model", model_dir, "--chunk-rows", "4"]
    reference = tmp_path / "reference"
    assert main(["scan", data_file, "--out", str(reference), *args]) == 0
    out = tmp_path / "killed"
    command = [sys.executable, "-c", _SLOW_SCAN, "scan", data_file, "--out", str(out), *args]
    process = subprocess.Popen(command, env=_env(), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.monotonic() + 120
    while time.monotonic() < deadline and len(list(out.glob("chunks/chunk-*.parquet"))) < 2:
        time.sleep(0.02)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=60)
    committed = len(list(out.glob("chunks/chunk-*.parquet")))
    assert 2 <= committed < 10 and not (out / "manifest.json").exists()  # really stopped mid-run
    for chunk in out.glob("chunks/chunk-*.parquet"):
        pq.read_table(chunk)  # every committed chunk is whole

    # SIGTERM (as a scheduler sends it) in the next run: stops cleanly, one line, chunks kept
    real = scan_module.write_atomic
    written = {"n": 0}

    def terminate_after_two(path, write):
        real(path, write)
        written["n"] += 1
        if written["n"] == 2:
            os.kill(os.getpid(), signal.SIGTERM)

    monkeypatch.setattr(scan_module, "write_atomic", terminate_after_two)
    assert main(["scan", data_file, "--out", str(out), *args]) == 143
    err = capsys.readouterr().err
    assert f"resuming: {committed} chunk(s) already done" in err
    assert "interrupted" in err and "rerun the same command to continue" in err and "Traceback" not in err
    assert len(list(out.glob("chunks/chunk-*.parquet"))) == committed + 2
    monkeypatch.setattr(scan_module, "write_atomic", real)
    assert main(["scan", data_file, "--out", str(out), *args]) == 0
    assert f"resuming: {committed + 2} chunk(s) already done" in capsys.readouterr().err
    assert_same_rows(read_scan(reference), read_scan(out))


def test_settling_duplicates_rewrites_only_what_changed_row_group_by_row_group(tmp_path, model_dir):
    """A shard in small row groups whose copy lost its `duplicate-rows` gets it back, every other row as it
    was, the row groups kept."""
    from tokstep.engine.scan.duplicates import settle_duplicates
    from tokstep.engine.scan.run import LINT_BIT

    rows = make_rows(24)
    rows[20] = rows[3]
    out = tmp_path / "scan"
    assert (
        main(["scan", write_jsonl(tmp_path / "d.jsonl", rows), "--model", model_dir, "--out", str(out)]) == 0
    )
    shard = out / json.loads((out / "manifest.json").read_text())["shards"][0]
    table = pq.read_table(shard)
    records, bit = table.to_pylist(), LINT_BIT["duplicate-rows"]
    whole = [r["findings"] for r in records]
    copy = records[20]
    assert [f["code"] for f in copy["findings"]].count("duplicate-rows") == 1
    copy["findings"] = [f for f in copy["findings"] if f["code"] != "duplicate-rows"]
    copy["lints"], copy["lint_bits"] = [f["code"] for f in copy["findings"]], copy["lint_bits"] & ~bit
    copy["lint_warnings"] -= 1
    pq.write_table(pa.Table.from_pylist(records, schema=table.schema), shard, row_group_size=4)
    assert settle_duplicates(out, [shard.name], bit=bit, row_group=4) == 1
    assert [r["findings"] for r in pq.read_table(shard).to_pylist()] == whole
    assert pq.ParquetFile(shard).metadata.num_row_groups == 6
    assert settle_duplicates(out, [shard.name], bit=bit, row_group=4) == 0  # settled: nothing to rewrite


def test_two_gloo_processes_give_the_one_process_result(tmp_path, model_dir, data_file):
    single = tmp_path / "single"
    assert main(["scan", data_file, "--model", model_dir, "--out", str(single), "--chunk-rows", "8"]) == 0
    out = tmp_path / "two"
    command = [sys.executable, "-m", "torch.distributed.run", "--standalone", "--nproc_per_node=2"]
    command += ["-m", "tokstep", "scan", data_file, "--model", model_dir, "--out", str(out)]
    command += ["--chunk-rows", "8", "--device", "cpu"]
    done = subprocess.run(command, env=_env(), capture_output=True, text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    manifest = json.loads((out / "manifest.json").read_text())
    assert manifest["world_size"] == 2
    assert manifest["shards"] == ["shard-00000-of-00002.parquet", "shard-00001-of-00002.parquet"]
    shard_rows = [pq.ParquetFile(out / s).metadata.num_rows for s in manifest["shards"]]
    assert shard_rows == [24, 16]  # chunks 0, 2, 4 and 1, 3 of 8 rows
    assert_same_rows(read_scan(single), read_scan(out))


def test_progress_lines_when_not_a_terminal():
    import io

    from tokstep.tui.cli.progress import RowProgress

    stream = io.StringIO()
    with RowProgress("tokstep scan", 100, stream=stream, tty=False, every=0.0) as bar:
        bar.update(40, 4000)
        bar.update(100, 10000)
    lines = stream.getvalue().splitlines()
    assert lines[0].startswith("tokstep scan: 40 / 100 rows (40%)") and "tokens/s" in lines[0]
    assert "ETA" in lines[0] and lines[-1].startswith("tokstep scan: 100 / 100 rows (100%)")


def test_gpu_rank_uses_its_local_device(monkeypatch):
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    ranks = scan_module.Ranks(rank=3, world=8, local=3)
    assert scan_module.device_for(ranks, "auto") == "cuda:3"
    assert scan_module.device_for(ranks, "cuda:0") == "cuda:0"  # an explicit device wins
    assert scan_module.device_for(scan_module.Ranks(), "auto") == "auto"


def test_parquet_and_json_inputs_give_the_jsonl_result(tmp_path, model_dir):
    rows = [{"text": t} for t in ("the cat sat on the mat", "a dog ran to the log", "hello world the end")]
    write_jsonl(tmp_path / "rows.jsonl", rows)
    (tmp_path / "rows.json").write_text(json.dumps(rows))
    pq.write_table(pa.Table.from_pylist(rows), tmp_path / "rows.parquet")
    results = {}
    for name in ("rows.jsonl", "rows.json", "rows.parquet"):
        out = tmp_path / f"scan-{name}"
        assert main(["scan", str(tmp_path / name), "--model", model_dir, "--out", str(out)]) == 0
        results[name] = read_scan(out)
    assert [r["line"] for r in results["rows.parquet"]] == [None, None, None]
    for name in ("rows.json", "rows.parquet"):
        assert [r["loss"] for r in results[name]] == pytest.approx([r["loss"] for r in results["rows.jsonl"]])
