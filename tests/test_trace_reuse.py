"""Repeated traces of one model: the head check runs once, then the forward stops before the output head;
results stay identical, and a trace in another thread gets its own work buffers."""

from __future__ import annotations

import threading

import numpy as np
import pytest
import tiny

from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.reduce import Scratch
from tokstep.engine.model.trace import HIDDEN_PATH, reference_loss, trace_sample

TEXT = SampleSpec(text="The quick brown fox jumps over the lazy dog. I love dogs and I love cats.")


def count_head_calls(model) -> list[int]:
    calls = [0]

    def count(*_args):
        calls[0] += 1

    model.get_output_embeddings().register_forward_hook(count)
    return calls


@pytest.mark.parametrize("arch", ["gpt2", "llama", "gemma2"])
def test_second_trace_skips_the_models_head_and_agrees(arch, sp_tokenizer):
    loaded = wrap_model(tiny.tiny_model(arch, len(sp_tokenizer)), sp_tokenizer, arch)
    sample = build_sample(TEXT, sp_tokenizer)
    head_calls = count_head_calls(loaded.model)
    first = trace_sample(loaded, sample)
    assert head_calls[0] == 2  # the causality probe, then the model's own last logits for the head check
    second = trace_sample(loaded, sample)
    assert head_calls[0] == 2  # both once per model: the forward stopped at the hidden states
    assert first.path == second.path == HIDDEN_PATH
    np.testing.assert_array_equal(first.logprob, second.logprob)
    np.testing.assert_array_equal(first.topk_ids, second.topk_ids)
    assert second.loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)


def test_forced_logits_path_still_calls_the_head(sp_tokenizer):
    loaded = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer)), sp_tokenizer, "llama")
    sample = build_sample(TEXT, sp_tokenizer)
    trace_sample(loaded, sample)
    head_calls = count_head_calls(loaded.model)
    trace_sample(loaded, sample, force_logits_path=True)
    assert head_calls[0] == 1


def test_each_thread_has_its_own_scratch():
    here = Scratch.for_current_thread()
    assert Scratch.for_current_thread() is here
    other: list[Scratch] = []
    worker = threading.Thread(target=lambda: other.append(Scratch.for_current_thread()))
    worker.start()
    worker.join()
    assert other and other[0] is not here
