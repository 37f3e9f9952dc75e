"""Compare two models lock-step: KL(P_A || P_B), ΔCE, ranks, top-1 agreement, all checked against a naive
full float64 log_softmax of both models' own logits; non-finite positions marked, not averaged."""

from __future__ import annotations

import numpy as np
import pytest
import tiny
import torch

from tokstep.engine.compare.results import CompareResult
from tokstep.engine.compare.session import run_compare
from tokstep.engine.compare.traces import compare_traces
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.trace import HIDDEN_PATH, LOGITS_PATH, trace_sample

TEXT = SampleSpec(text="A lazy cat loves brown dogs and quick foxes in France. Hello there, general Kenobi!")
QA = SampleSpec(prompt="Question: what is the capital of France?\n", answer="Answer: Paris is.")


@pytest.fixture(scope="module")
def pair(sp_tokenizer):
    """Two tiny Llamas with different weights and the same tokenizer."""
    a = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer), seed=0), sp_tokenizer, "A")
    b = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer), seed=1), sp_tokenizer, "B")
    return a, b


def naive(loaded, sample) -> torch.Tensor:
    """(T, V) float64 log_softmax of the model's own full logits."""
    with torch.no_grad():
        logits = loaded.model(torch.tensor(sample.input_ids)[None], use_cache=False).logits[0, :-1]
    return logits.double().log_softmax(-1)


def naive_kl(log_a: torch.Tensor, log_b: torch.Tensor) -> np.ndarray:
    return (log_a.exp() * (log_a - log_b)).sum(-1).numpy()


@pytest.mark.parametrize("force_logits_path", [False, True])
def test_kl_delta_ce_ranks_match_naive_log_softmax(pair, sp_tokenizer, force_logits_path):
    a, b = pair
    sample = build_sample(TEXT, sp_tokenizer)
    trace_a, trace_b, kl = compare_traces(a, b, sample, top_k=5, force_logits_path=force_logits_path)
    assert trace_a.path == trace_b.path == (LOGITS_PATH if force_logits_path else HIDDEN_PATH)
    log_a, log_b = naive(a, sample), naive(b, sample)
    reference = naive_kl(log_a, log_b)
    assert reference.min() > 1e-3  # different weights: a real divergence
    np.testing.assert_allclose(kl, reference, rtol=1e-4, atol=1e-7)
    targets = torch.tensor(trace_a.target_ids)[:, None]
    for trace, log in ((trace_a, log_a), (trace_b, log_b)):
        np.testing.assert_allclose(trace.logprob, log.gather(-1, targets)[:, 0].numpy(), rtol=1e-5, atol=1e-5)
        rank = 1 + (log > log.gather(-1, targets)).sum(-1).numpy()
        np.testing.assert_array_equal(trace.rank, rank)
        np.testing.assert_array_equal(trace.topk_ids[:, 0], log.argmax(-1).numpy())
    # each side is exactly the Trace a separate run gives
    alone = trace_sample(b, sample, top_k=5, force_logits_path=force_logits_path)
    np.testing.assert_array_equal(alone.logprob, trace_b.logprob)
    np.testing.assert_array_equal(alone.topk_ids, trace_b.topk_ids)


def test_same_weights_in_bfloat16_small_kl_matches_naive(sp_tokenizer):
    model = tiny.tiny_model("gpt2", len(sp_tokenizer), seed=3)
    a = wrap_model(model, sp_tokenizer, "fp32")
    b = wrap_model(
        tiny.tiny_model("gpt2", len(sp_tokenizer), seed=3).to(torch.bfloat16), sp_tokenizer, "bf16"
    )
    sample = build_sample(TEXT, sp_tokenizer)
    _, _, kl = compare_traces(a, b, sample)
    reference = naive_kl(naive(a, sample), naive(b, sample))
    assert 0 < reference.max() < 1e-2  # the small divergences where float32 rounding would dominate
    np.testing.assert_allclose(kl, reference, rtol=1e-3, atol=1e-8)


def test_identical_models_have_zero_kl_and_full_agreement(pair, sp_tokenizer):
    a, _ = pair
    again = wrap_model(a.model, sp_tokenizer, "A again")
    result = run_compare(a, again, QA, with_reference=False)
    assert isinstance(result, CompareResult)
    assert np.all(result.kl == 0.0)
    summary = result.summary()
    assert summary.mean_kl == 0.0 and summary.top1_agreement == 1.0 and summary.delta_loss == 0.0


def test_summary_statistics_over_counted_positions(pair, sp_tokenizer):
    a, b = pair
    result = run_compare(a, b, QA, with_reference=True)
    assert isinstance(result, CompareResult)
    sample = result.a.sample
    counted = sample.labels[1:] != -100
    assert 0 < counted.sum() < len(counted)
    log_a, log_b = naive(a, sample), naive(b, sample)
    kl = naive_kl(log_a, log_b)[counted]
    summary = result.summary()
    assert summary.scope == "counted" and summary.positions == counted.sum() and summary.nonfinite == 0
    assert summary.mean_kl == pytest.approx(kl.mean(), rel=1e-4)
    assert summary.median_kl == pytest.approx(np.median(kl), rel=1e-4)
    assert summary.p99_kl == pytest.approx(np.percentile(kl, 99), rel=1e-4)
    assert summary.p999_kl == pytest.approx(np.percentile(kl, 99.9), rel=1e-4)
    agree = (log_a.argmax(-1) == log_b.argmax(-1)).numpy()[counted]
    assert summary.top1_agreement == pytest.approx(agree.mean())
    # Δ loss against HF's own losses of both models
    assert summary.delta_loss == pytest.approx(result.b.reference - result.a.reference, abs=1e-5)
    assert result.by_kl().any()


def test_nonfinite_positions_in_b_are_marked_not_averaged(pair, sp_tokenizer):
    a, _ = pair
    broken = tiny.tiny_model("llama", len(sp_tokenizer), seed=0)  # A's weights
    bad_rows = [6, 7, 11]

    def overflow(_module, _args, output):  # the final hidden states blow up at three positions
        output[0, bad_rows] = float("inf")
        return output

    broken.model.norm.register_forward_hook(overflow)
    b = wrap_model(broken, sp_tokenizer, "broken")
    result = run_compare(a, b, TEXT, with_reference=False)
    bad = np.isin(np.arange(len(result)), bad_rows)
    np.testing.assert_array_equal(~result.both_finite, bad)
    assert np.isnan(result.kl[bad]).all() and np.isfinite(result.kl[~bad]).all()
    summary = result.summary()
    assert summary.nonfinite == bad.sum() and summary.positions == (~bad).sum()
    assert summary.mean_kl == pytest.approx(0.0, abs=1e-6)  # same weights elsewhere
    assert summary.delta_loss == pytest.approx(0.0, abs=1e-6)
    assert np.isnan(result.delta_ce[bad]).all()
    assert result.by_kl()[bad].all()


def test_different_head_sizes_are_one_line(sp_tokenizer):
    a = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer)), sp_tokenizer, "A")
    b = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer) + 64), sp_tokenizer, "B")
    with pytest.raises(TokstepError, match="rows"):
        compare_traces(a, b, build_sample(TEXT, sp_tokenizer))


def test_ids_sample_with_different_vocabularies_is_an_error(sp_tokenizer, bpe_tokenizer):
    a = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer)), sp_tokenizer, "A")
    b = wrap_model(tiny.tiny_model("gpt2", len(bpe_tokenizer)), bpe_tokenizer, "B")
    ids = SampleSpec(ids={"input_ids": [1, 20, 30, 40]})
    with pytest.raises(TokstepError, match="aligned by bytes"):
        run_compare(a, b, ids, with_reference=False)


def test_after_the_first_compare_neither_models_head_runs_inside_the_forward(pair, sp_tokenizer):
    """Both forwards stop at the final hidden states: each head only runs in the engine's chunks, so
    no [T, vocab] logits of either model are made."""
    a, b = pair
    sample = build_sample(TEXT, sp_tokenizer)
    compare_traces(a, b, sample)  # checks both heads once
    calls = [0]

    def count(*_args):
        calls[0] += 1

    handles = [m.model.get_output_embeddings().register_forward_hook(count) for m in (a, b)]
    try:
        trace_a, trace_b, _ = compare_traces(a, b, sample)
    finally:
        for handle in handles:
            handle.remove()
    assert calls[0] == 0 and trace_a.path == trace_b.path == HIDDEN_PATH


def test_lock_step_with_one_model_on_the_fallback_path(pair, sp_tokenizer):
    """B has a post-head transform the engine does not know (a hook doubling its logits): B falls back to
    its own full logits, A stays on the hidden path, and the chunks still line up position by position."""
    a, _ = pair
    odd = tiny.tiny_model("llama", len(sp_tokenizer), seed=5)
    odd.get_output_embeddings().register_forward_hook(lambda _m, _a, out: out * 2.0)
    b = wrap_model(odd, sp_tokenizer, "odd head")
    sample = build_sample(TEXT, sp_tokenizer)
    trace_a, trace_b, kl = compare_traces(a, b, sample)
    assert (trace_a.path, trace_b.path) == (HIDDEN_PATH, LOGITS_PATH)
    np.testing.assert_allclose(kl, naive_kl(naive(a, sample), naive(b, sample)), rtol=1e-4, atol=1e-7)
