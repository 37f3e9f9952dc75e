"""The final running mean equals Hugging Face's `model(input_ids, labels=labels).loss` (1e-6 relative, float32)."""

from __future__ import annotations

import copy

import numpy as np
import pytest
import tiny
from tolerant import assert_same_order, assert_same_rank, assert_same_ranking

from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.trace import (
    HIDDEN_PATH,
    LOGITS_PATH,
    max_drift,
    reference_loss,
    trace_incremental,
    trace_sample,
)

ARCHS = ["gpt2", "llama", "gpt_neox", "gemma2"]

SPECS = {
    "text": SampleSpec(text="I love dogs. The quick brown fox jumps over the lazy dog."),
    "prompt+answer": SampleSpec(
        prompt="Question: what is the capital of France?\nAnswer:", answer=" Paris is the capital."
    ),
    "chat": SampleSpec(chat=tuple(tiny.CHAT)),
    "ids": SampleSpec(
        ids={
            "input_ids": [5, 9, 17, 33, 2, 41, 8, 8, 60, 71, 12],
            "labels": [-100, -100, -100, 33, 2, 41, -100, 8, 60, 71, -100],
        }
    ),
}


def _traced(arch: str, tokenizer, spec: SampleSpec, **kwargs):
    loaded = wrap_model(tiny.tiny_model(arch, len(tokenizer)), tokenizer, arch)
    sample = build_sample(spec, tokenizer)
    return loaded, sample, trace_sample(loaded, sample, **kwargs)


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("arch", ARCHS)
def test_final_mean_equals_hf_loss(arch, kind, bpe_tokenizer, sp_tokenizer):
    for tokenizer in (bpe_tokenizer, sp_tokenizer):
        loaded, sample, trace = _traced(arch, tokenizer, SPECS[kind])
        reference = reference_loss(loaded, sample)
        assert trace.num_supervised == sample.num_supervised > 0
        assert trace.loss == pytest.approx(reference, rel=1e-6), (arch, kind, trace.path)


@pytest.mark.parametrize("arch", ARCHS)
def test_memory_frugal_path_runs_and_agrees_with_logits_path(arch, sp_tokenizer):
    loaded, sample, hidden = _traced(arch, sp_tokenizer, SPECS["text"])
    logits = trace_sample(loaded, sample, force_logits_path=True)
    assert hidden.path == HIDDEN_PATH
    assert logits.path == LOGITS_PATH
    np.testing.assert_allclose(hidden.logprob, logits.logprob, rtol=1e-5, atol=1e-6)
    assert_same_ranking(hidden, logits)


def test_all_masked_sample_has_undefined_mean_not_nan(sp_tokenizer):
    ids = sp_tokenizer("I love dogs and cats")["input_ids"]
    loaded, sample, trace = _traced(
        "llama", sp_tokenizer, SampleSpec(ids={"input_ids": ids, "labels": [-100] * len(ids)})
    )
    assert trace.num_supervised == 0
    assert trace.loss is None
    assert all(trace.running_mean(t) is None for t in range(len(trace)))
    assert reference_loss(loaded, sample) is None  # HF returns NaN here: we say "undefined"


def test_running_mean_is_mean_of_supervised_ce(sp_tokenizer):
    _, sample, trace = _traced("llama", sp_tokenizer, SPECS["prompt+answer"])
    counted = trace.ce[trace.supervised]
    assert trace.loss == pytest.approx(counted.mean(), rel=1e-12)
    # each position's CE is -log q(target), where the target is the NEXT token (the shift)
    np.testing.assert_array_equal(trace.target_ids, sample.input_ids[1:])


def test_labels_different_from_input_ids_are_the_targets(sp_tokenizer):
    """Pre-shifted labels: the loss scores labels[t+1], not input_ids[t+1], exactly as HF does."""
    ids = [5, 9, 17, 33, 2, 41, 8, 60]
    labels = ids[1:] + [-100]
    loaded, sample, trace = _traced(
        "gpt2", sp_tokenizer, SampleSpec(ids={"input_ids": ids, "labels": labels})
    )
    assert trace.target_ids[:6].tolist() == labels[1:7]
    assert trace.loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)


def test_padded_vocab_rows_beyond_tokenizer_count_in_softmax(sp_tokenizer):
    vocab = len(sp_tokenizer) + 37  # like models whose head is padded to a multiple of 64
    loaded = wrap_model(tiny.tiny_model("llama", vocab), sp_tokenizer)
    sample = build_sample(SPECS["text"], sp_tokenizer)
    trace = trace_sample(loaded, sample, top_k=vocab)  # every row, including the padded ones
    assert loaded.info.vocab_size == vocab > loaded.info.tokenizer_size
    assert trace.topk_ids.max() >= len(sp_tokenizer)
    assert trace.loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)


def test_unknown_post_head_transform_falls_back_to_the_models_own_logits(sp_tokenizer):
    """A model that rescales logits after the head: the on-the-fly check catches it, parity still holds."""
    model = tiny.tiny_model("llama", len(sp_tokenizer))
    scaled = copy.deepcopy(model)
    original_forward = scaled.forward

    def forward_with_scale(*args, **kwargs):
        out = original_forward(*args, **kwargs)
        out.logits = out.logits * 3.0
        if out.loss is not None:  # recompute HF's loss on the scaled logits, as such a model would
            out.loss = scaled.loss_function(out.logits, kwargs["labels"], vocab_size=out.logits.shape[-1])
        return out

    scaled.forward = forward_with_scale
    loaded = wrap_model(scaled, sp_tokenizer)
    sample = build_sample(SPECS["text"], sp_tokenizer)
    trace = trace_sample(loaded, sample)
    assert trace.path == LOGITS_PATH
    assert trace.loss == pytest.approx(reference_loss(loaded, sample), rel=1e-6)


@pytest.mark.parametrize("arch", ["gpt2", "llama"])
def test_incremental_kv_cache_trace_matches_single_pass(arch, bpe_tokenizer):
    loaded, sample, trace = _traced(arch, bpe_tokenizer, SPECS["text"])
    stepped = trace_incremental(loaded, sample)
    assert max_drift(trace, stepped) < 1e-4
    assert_same_ranking(trace, stepped)
    assert stepped.loss == pytest.approx(trace.loss, rel=1e-5)


@pytest.mark.parametrize("arch", ["llama", "gpt2"])
def test_bfloat16_parity_within_stated_tolerance(arch, sp_tokenizer):
    from tokstep.engine.model.results import parity_tolerance

    model = tiny.tiny_model(arch, len(sp_tokenizer)).to(dtype=__import__("torch").bfloat16)
    loaded = wrap_model(model, sp_tokenizer)
    sample = build_sample(SPECS["text"], sp_tokenizer)
    trace = trace_sample(loaded, sample)
    reference = reference_loss(loaded, sample)
    assert loaded.info.dtype == "bfloat16"
    assert abs(trace.loss - reference) <= parity_tolerance("bfloat16") * reference


def test_topk_rank_entropy_match_a_naive_full_log_softmax(sp_tokenizer):
    """Every per-position number against torch's log_softmax over the model's own full logits."""
    import torch

    loaded, sample, trace = _traced("gemma2", sp_tokenizer, SPECS["text"], top_k=7)
    with torch.no_grad():
        logits = (
            loaded.model(torch.tensor(sample.input_ids)[None]).logits[0, :-1].float()
        )  # (T, V), t predicts t+1
    logp = torch.log_softmax(logits, dim=-1).double()
    targets = torch.tensor(trace.target_ids)
    target_logp = logp.gather(1, targets[:, None])[:, 0]
    np.testing.assert_allclose(trace.logprob, target_logp.numpy(), rtol=1e-5, atol=1e-5)
    target_logit = logits.gather(1, targets[:, None])
    naive_rank = (1 + (logits > target_logit).sum(-1)).numpy()
    entropy = -(logp.exp() * logp).sum(-1)
    np.testing.assert_allclose(trace.entropy, entropy.numpy(), rtol=1e-4, atol=1e-5)
    for t in range(len(trace)):  # order: logit desc, then id asc (exact ties and near-ties: see tolerant)
        order = sorted(range(logits.shape[1]), key=lambda i: (-float(logits[t, i]), i))[:7]
        assert_same_order(trace.topk_ids[t], trace.topk_logprobs[t], order)
        assert_same_rank(trace.rank[t], naive_rank[t], float(trace.logprob[t]), trace.topk_logprobs[t])
        np.testing.assert_allclose(trace.topk_logprobs[t], logp[t, order].numpy(), rtol=1e-5, atol=1e-5)
