"""`tokstep report --compare ...` end to end on tiny saved models: the table, the KL summary, the JSON, the
tokenizer comparison, and every bad input as one line."""

from __future__ import annotations

import json

import numpy as np
import pytest
import tiny
import torch
from transformers import AutoModelForCausalLM

from tokstep.tui.cli.main import main

TEXT = "A lazy cat loves brown dogs and quick foxes in France."


@pytest.fixture(scope="module")
def folders(tmp_path_factory):
    """Two Llamas with the same tokenizer (different weights), a GPT-2 with another tokenizer, a non-LM."""
    root = tmp_path_factory.mktemp("compare")
    sp = tiny.sentencepiece_bpe()
    paths = {
        "a": tiny.save_model_folder(root / "a", sp, seed=0),
        "b": tiny.save_model_folder(root / "b", sp, seed=1),
        "gpt2": tiny.save_model_folder(root / "gpt2", tiny.byte_level_bpe(), "gpt2"),
    }
    tokenizer_only = root / "tokenizer"
    tiny.byte_level_bpe().save_pretrained(tokenizer_only)
    paths["tokenizer"] = str(tokenizer_only)
    return paths


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys, fragment: str, *argv: str) -> None:
    code, _out, err = run(capsys, *argv)
    assert code == 2
    lines = err.strip().splitlines()
    assert len(lines) == 1, err
    assert lines[0].startswith("tokstep: error: ") and fragment in lines[0], lines[0]


def test_report_compare_json_kl_matches_naive_reference(capsys, folders, tmp_path):
    target = tmp_path / "compare.json"
    code, out, _ = run(
        capsys,
        "report",
        "--model",
        folders["a"],
        "--compare",
        folders["b"],
        "--text",
        TEXT,
        "--json",
        str(target),
    )
    assert code == 0
    assert "KL(A‖B) in nats over" in out and "top-1 agreement" in out and "Δ loss (B − A)" in out
    assert out.count("✓ match") == 2  # both models' losses against HF's
    data = json.loads(target.read_text())
    ids = torch.tensor(data["sample"]["input_ids"])[None]
    with torch.no_grad():
        log = [
            AutoModelForCausalLM.from_pretrained(folders[w])(ids).logits[0, :-1].double().log_softmax(-1)
            for w in "ab"
        ]
    naive = (log[0].exp() * (log[0] - log[1])).sum(-1).numpy()
    ours = np.array([p["kl"] for p in data["positions"]])
    np.testing.assert_allclose(ours, naive, rtol=1e-4, atol=1e-7)
    assert data["compare"]["mean_kl"] == pytest.approx(naive.mean(), rel=1e-4)
    assert data["compare"]["delta_loss"] == pytest.approx(
        data["compare"]["hf_reference_loss_b"] - data["hf_reference_loss"], abs=1e-5
    )
    first = data["positions"][0]
    assert {"ce_b", "delta_ce", "rank_b", "top1_agree", "top_k_b"} <= set(first)


def test_compare_dtype_alone_means_the_same_weights(capsys, folders, tmp_path):
    target = tmp_path / "dtype.json"
    code, out, _ = run(
        capsys,
        "report",
        "--model",
        folders["a"],
        "--compare-dtype",
        "bfloat16",
        "--text",
        TEXT,
        "--no-reference",
        "--json",
        str(target),
    )
    assert code == 0
    data = json.loads(target.read_text())
    assert data["compare"]["model_b"]["dtype"] == "bfloat16" and data["model"]["dtype"] == "float32"
    assert 0 < data["compare"]["mean_kl"] < 1e-2  # same weights, rounded


def test_different_tokenizers_compare_bits_per_byte(capsys, folders, tmp_path):
    target = tmp_path / "tok.json"
    code, out, _ = run(
        capsys,
        "report",
        "--model",
        folders["a"],
        "--compare",
        folders["gpt2"],
        "--text",
        TEXT,
        "--json",
        str(target),
    )
    assert code == 0
    assert "two tokenizers on the same text" in out and "bits per byte" in out
    lines = out.splitlines()
    a_row = next(i for i, line in enumerate(lines) if line.startswith("A  |"))
    assert lines[a_row - 1].startswith("   A␣lazy") and lines[a_row + 1].startswith("B  |")  # stacked
    data = json.loads(target.read_text())["compare"]
    assert data["mode"] == "tokenizers" and data["text_bytes"] == len(TEXT.encode())
    assert data["bits_per_byte_a"] > 0 and data["bits_per_byte_b"] > 0


def test_compare_tokenizer_only_prints_the_boundary_diff(capsys, folders):
    code, out, _ = run(
        capsys, "report", "--model", folders["a"], "--compare-tokenizer", folders["tokenizer"], "--text", TEXT
    )
    assert code == 0
    assert "only in A" in out and "only in B" in out and "bits per byte" not in out


@pytest.mark.parametrize(
    ("fragment", "extra"),
    [
        ("model B: no such folder", ["--compare", "/nonexistent/model-b"]),
        ("not a causal language model", ["--compare", "NOT_CAUSAL"]),
        ("aligned by bytes", ["--compare", "GPT2", "--ids", "IDS"]),
        (
            "--compare-tokenizer compares tokenization only",
            ["--compare-tokenizer", "TOK", "--compare-dtype", "bfloat16"],
        ),
        ("model B: --compare-device cuda:7", ["--compare-device", "cuda:7"]),
        ("does not combine with --compare", ["--compare-dtype", "bfloat16", "--incremental"]),
    ],
)
def test_bad_compare_input_is_one_line(capsys, folders, tmp_path, fragment, extra):
    not_causal = tmp_path / "vit"
    if "NOT_CAUSAL" in extra:
        import transformers as tf

        config = tf.BertConfig(
            vocab_size=64, hidden_size=16, num_hidden_layers=1, num_attention_heads=2, intermediate_size=32
        )
        tf.BertModel(config).save_pretrained(not_causal)
        saved = json.loads((not_causal / "config.json").read_text())
        saved.update({"model_type": "vit", "architectures": ["ViTModel"]})  # no causal LM exists for it
        (not_causal / "config.json").write_text(json.dumps(saved))
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"input_ids": [1, 20, 30, 40]}))
    swap = {
        "NOT_CAUSAL": str(not_causal),
        "GPT2": folders["gpt2"],
        "IDS": str(ids),
        "TOK": folders["tokenizer"],
    }
    argv = [swap.get(a, a) for a in extra]
    if "--ids" not in argv:
        argv += ["--text", TEXT]
    expect_error(capsys, fragment, "report", "--model", folders["a"], *argv)


def test_out_of_memory_loading_b_is_one_line(capsys, folders, monkeypatch):
    import tokstep.engine.compare.session as session

    real = session.load

    def load(spec):
        if spec.dtype == "bfloat16":  # B only: A loads as usual
            raise torch.OutOfMemoryError("CUDA out of memory. Tried to allocate 2.00 GiB")
        return real(spec)

    monkeypatch.setattr(session, "load", load)
    expect_error(
        capsys,
        "cannot hold both models",
        "report",
        "--model",
        folders["a"],
        "--compare-dtype",
        "bfloat16",
        "--text",
        TEXT,
    )
