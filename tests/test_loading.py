"""Loading: local folders never touch the network, remote code never runs unless asked, safetensors preferred."""

from __future__ import annotations

import json
import socket

import pytest
import tiny

from tokstep.engine.errors import TokstepError
from tokstep.engine.model.loading import load_model


@pytest.fixture()
def saved_llama(tmp_path):
    tiny.save_model_folder(tmp_path, tiny.sentencepiece_bpe(chat_template=tiny.CHATML))
    return tmp_path


def test_local_folder_loads_without_any_network_call(saved_llama, monkeypatch):
    def no_network(*_args, **_kwargs):
        raise AssertionError("tokstep tried to open a network connection for a local model")

    monkeypatch.setattr(socket.socket, "connect", no_network)
    monkeypatch.setattr(socket, "create_connection", no_network)
    loaded = load_model(str(saved_llama), dtype="float32", device="cpu")
    assert loaded.info.architecture == "LlamaForCausalLM"
    assert loaded.info.dtype == "float32"
    assert loaded.info.vocab_size == len(loaded.tokenizer)
    assert (saved_llama / "model.safetensors").exists()


def test_dtype_flag_is_applied(saved_llama):
    assert load_model(str(saved_llama), dtype="bfloat16", device="cpu").info.dtype == "bfloat16"


def test_remote_code_is_not_run_unless_asked(tmp_path):
    marker = tmp_path / "remote_code_ran"
    (tmp_path / "configuration_evil.py").write_text(
        f"open({str(marker)!r}, 'w').write('yes')\n"
        "from transformers import PretrainedConfig\n"
        "class EvilConfig(PretrainedConfig):\n    model_type = 'evil-xyz'\n"
    )
    config = {"model_type": "evil-xyz", "auto_map": {"AutoConfig": "configuration_evil.EvilConfig"}}
    (tmp_path / "config.json").write_text(json.dumps(config))
    with pytest.raises(TokstepError, match="cannot load model"):
        load_model(str(tmp_path), device="cpu")
    assert not marker.exists()


def test_unknown_dtype_and_device_are_one_line_errors(saved_llama):
    with pytest.raises(TokstepError, match="--dtype"):
        load_model(str(saved_llama), dtype="float8")
    with pytest.raises(TokstepError, match="--device"):
        load_model(str(saved_llama), device="tpu")


def test_folder_without_tokenizer(tmp_path):
    tiny.tiny_model("gpt2", 300).save_pretrained(tmp_path)
    with pytest.raises(TokstepError, match="tokenizer"):
        load_model(str(tmp_path), device="cpu")


def test_device_map_auto_loads_through_accelerate_and_traces(saved_llama):
    from tokstep.engine.inputs.spec import SampleSpec, build_sample
    from tokstep.engine.model.trace import reference_loss, trace_sample

    loaded = load_model(str(saved_llama), dtype="float32", device_map="auto")
    sample = build_sample(SampleSpec(text="I love dogs and cats."), loaded.tokenizer)
    assert trace_sample(loaded, sample).loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)
