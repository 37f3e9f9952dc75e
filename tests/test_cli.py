"""`tokstep report` end to end on tiny saved models, and every bad input: one line, non-zero exit, no traceback."""

from __future__ import annotations

import json
import subprocess
import sys

import pytest
import tiny
import torch

from tokstep.tui.cli.main import main


@pytest.fixture(scope="session")
def model_dir(tmp_path_factory):
    """A tiny Llama with a SentencePiece-style tokenizer and a Llama-3 chat template, saved as safetensors."""
    path = tmp_path_factory.mktemp("llama")
    tiny.save_model_folder(path, tiny.sentencepiece_bpe(chat_template=tiny.LLAMA3), max_positions=128)
    return path


@pytest.fixture(scope="session")
def plain_gpt2_dir(tmp_path_factory):
    """GPT-2 style model and tokenizer with no chat template."""
    path = tmp_path_factory.mktemp("gpt2")
    tiny.save_model_folder(path, tiny.byte_level_bpe(), "gpt2")
    return path


def run(capsys, *argv: str) -> tuple[int, str, str]:
    code = main(list(argv))
    out, err = capsys.readouterr()
    return code, out, err


def expect_error(capsys, fragment: str, *argv: str, code: int = 2) -> None:
    status, _out, err = run(capsys, *argv)
    assert status == code
    lines = err.strip().splitlines()
    assert len(lines) == 1, err  # one line, never a traceback
    assert lines[0].startswith("tokstep: error: ")
    assert fragment in lines[0], lines[0]


def test_report_prints_table_and_matching_hf_loss(capsys, model_dir):
    code, out, _ = run(
        capsys,
        "report",
        "--model",
        str(model_dir),
        "--prompt",
        "Question: hello?",
        "--answer",
        " I love dogs.",
    )
    assert code == 0
    assert "HF loss" in out and "HF loss_function over HF's head" in out
    assert "✓ match" in out
    assert " prompt " in out  # masked positions say why


def test_report_json_has_hf_reference_equal_to_our_loss(capsys, model_dir, tmp_path):
    target = tmp_path / "trace.json"
    code, _, _ = run(
        capsys, "report", "--model", str(model_dir), "--text", "I love dogs and cats.", "--json", str(target)
    )
    assert code == 0
    data = json.loads(target.read_text())
    assert data["loss"] == pytest.approx(data["hf_reference_loss"], rel=1e-6)
    assert len(data["positions"]) == len(data["sample"]["input_ids"]) - 1
    assert data["positions"][-1]["running_mean"] == pytest.approx(data["loss"])


def test_report_json_never_overwrites_without_force(capsys, model_dir, tmp_path):
    target = tmp_path / "mine.json"
    target.write_text("precious")
    expect_error(
        capsys,
        "already exists",
        "report",
        "--model",
        str(model_dir),
        "--text",
        "I love dogs",
        "--json",
        str(target),
    )
    assert target.read_text() == "precious"


def test_report_incremental_reports_drift(capsys, model_dir):
    code, out, _ = run(
        capsys, "report", "--model", str(model_dir), "--text", "I love dogs and cats.", "--incremental"
    )
    assert code == 0
    assert "incremental (KV cache) vs single pass" in out


def test_report_chat_and_ids_files(capsys, model_dir, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(tiny.CHAT))
    code, out, _ = run(capsys, "report", "--model", str(model_dir), "--chat", str(chat))
    assert code == 0 and "✓ match" in out and " user " in out
    ids = tmp_path / "ids.json"
    ids.write_text(json.dumps({"input_ids": [1, 40, 41, 42, 43], "labels": [-100, -100, 41, 42, 43]}))
    code, out, _ = run(capsys, "report", "--model", str(model_dir), "--ids", str(ids))
    assert code == 0 and "✓ match" in out
    # a -100 from the user's labels is named for its source, never like a user turn
    assert "masked (-100): 1 masked in your labels" in out and "given" not in out and " user " not in out


def test_all_masked_sample_says_undefined(capsys, model_dir, tmp_path):
    ids = tmp_path / "masked.json"
    ids.write_text(json.dumps({"input_ids": [1, 40, 41, 42], "labels": [-100] * 4}))
    code, out, _ = run(capsys, "report", "--model", str(model_dir), "--ids", str(ids))
    assert code == 1 and "nothing-trained" in out  # an error-level lint: the findings status, as lint's
    assert "undefined" in out and "nan" not in out.lower()


def test_too_long_is_an_error_naming_both_numbers_unless_truncated(capsys, model_dir):
    long_text = "I love dogs and cats. " * 200
    expect_error(
        capsys,
        "but the model accepts at most 128 positions",
        "report",
        "--model",
        str(model_dir),
        "--text",
        long_text,
    )
    code, out, _ = run(capsys, "report", "--model", str(model_dir), "--text", long_text, "--truncate", "128")
    assert code == 0 and "truncated from" in out


@pytest.mark.parametrize(
    ("argv", "fragment"),
    [
        (["--model", "./no/such/model", "--text", "hi"], "no such folder"),
        (["--model", "nonexistent-org-xyz/nonexistent-model", "--text", "hi"], "no such folder"),
        (["--text", ""], "empty"),
        (["--text", "I love", "--prompt", "x", "--answer", "y"], "give one sample source"),
        (["--prompt", "only a prompt"], "go together"),
        (["--top-k", "0", "--text", "I love dogs"], "--top-k"),
        (["--device", "cuda:7", "--text", "I love dogs"], "CUDA"),
    ],
)
def test_bad_flags(capsys, model_dir, argv, fragment):
    if "--model" not in argv:
        argv = ["--model", str(model_dir), *argv]
    expect_error(capsys, fragment, "report", *argv)


@pytest.mark.parametrize(
    ("content", "fragment"),
    [
        ("{not json", "not valid JSON"),
        ('{"ids": [1, 2]}', '"input_ids"'),
        ('{"input_ids": [1, 2, 3], "labels": [1, 2]}', "labels has 2 entries but input_ids has 3"),
        ('{"input_ids": [1, 2, 99999]}', "outside the model's vocabulary"),
        ('{"input_ids": [1, 2, 3], "labels": [1, 2, 99999]}', "neither -100 nor inside"),
        ('{"input_ids": [5]}', "single token"),
        ("[1, 2, 3]", "JSON object"),
    ],
)
def test_bad_ids_files(capsys, model_dir, tmp_path, content, fragment):
    path = tmp_path / "bad.json"
    path.write_text(content)
    expect_error(capsys, fragment, "report", "--model", str(model_dir), "--ids", str(path))


def test_missing_sample_file(capsys, model_dir):
    expect_error(capsys, "not found", "report", "--model", str(model_dir), "--ids", "/no/such.json")


def test_chat_without_template(capsys, plain_gpt2_dir, tmp_path):
    chat = tmp_path / "chat.json"
    chat.write_text(json.dumps(tiny.CHAT))
    expect_error(capsys, "no chat template", "report", "--model", str(plain_gpt2_dir), "--chat", str(chat))


def test_single_token_text(capsys, plain_gpt2_dir):
    expect_error(capsys, "single token", "report", "--model", str(plain_gpt2_dir), "--text", "I")


def test_not_a_causal_lm(capsys, tmp_path):
    from transformers import BertConfig, BertModel

    BertModel(
        BertConfig(
            vocab_size=50, hidden_size=8, num_hidden_layers=1, num_attention_heads=2, intermediate_size=8
        )
    ).save_pretrained(tmp_path)
    with open(tmp_path / "config.json") as f:
        config = json.load(f)
    config["model_type"] = "vit"  # a vision encoder config: no causal LM exists for it
    config.update({"architectures": ["ViTModel"]})
    (tmp_path / "config.json").write_text(json.dumps(config))
    expect_error(capsys, "is not a causal language model", "report", "--model", str(tmp_path), "--text", "hi")


def test_nan_logits_are_reported_not_shown(capsys, tmp_path):
    tokenizer = tiny.sentencepiece_bpe()
    model = tiny.tiny_model("llama", len(tokenizer))
    with torch.no_grad():
        model.model.norm.weight.fill_(float("inf"))  # as an fp16 overflow would
    model.save_pretrained(tmp_path)
    tokenizer.save_pretrained(tmp_path)
    expect_error(
        capsys, "NaN/inf logits", "report", "--model", str(tmp_path), "--text", "I love dogs", code=3
    )


def test_real_process_prints_one_line_and_no_traceback(tmp_path):
    proc = subprocess.run(
        [sys.executable, "-m", "tokstep", "report", "--model", str(tmp_path / "missing"), "--text", "hi"],
        capture_output=True,
        text=True,
        timeout=120,
        env={"HF_HUB_OFFLINE": "1", "PATH": "/usr/bin:/bin"},
    )
    assert proc.returncode == 2
    assert "Traceback" not in proc.stderr
    assert proc.stderr.strip().count("\n") == 0 and "no such folder" in proc.stderr


def test_flags_before_the_sub_command_are_kept(capsys, model_dir):
    code, out, _ = run(capsys, "--model", str(model_dir), "--text", "I love dogs", "report")
    assert code == 0
    assert str(model_dir) in out and "[text]" in out  # not the bundled model, not the demo


def test_flags_after_the_sub_command_win(capsys, model_dir):
    code, out, _ = run(capsys, "--text", "I love cats", "report", "--model", str(model_dir), "--demo", "text")
    assert code == 2  # two sample sources: the top-level --text is kept, not silently dropped


def test_report_counted_column_names_every_mask_reason(capsys, tmp_path):
    """Every masked reason gets its own word in the `counted` column (never the bare fallback `masked`):
    --eot mask on a chat writes `end-of-turn` at each end-of-turn after a reply."""
    from tokstep.engine.inputs.sample import MaskReason
    from tokstep.tui.cli.report import SHORT_REASON

    assert {r.value for r in MaskReason if not r.counted} <= set(SHORT_REASON)
    chat = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": "Who said it?"},
        {"role": "assistant", "content": "God said it."},
    ]
    path = tmp_path / "chat.json"
    path.write_text(json.dumps(chat))
    assert main(["report", "--chat", str(path), "--eot", "mask"]) == 0
    rows = [line.split() for line in capsys.readouterr().out.splitlines() if line[:3].strip().isdigit()]
    counted = [r[-1] for r in rows]
    assert "end-of-turn" in counted and "masked" not in counted
    assert [r for r in rows if r[-1] == "end-of-turn"][0][2] == "<|im_end|>"  # the target its label masks
