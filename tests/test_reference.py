"""The chunked HF reference (HF's head + HF's loss_function over chunks) equals HF's full
`model(input_ids, labels=labels).loss` within 1e-6 (float32), and says so when it cannot run."""

from __future__ import annotations

import copy

import pytest
import tiny
from test_parity import ARCHS, SPECS

from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model import reference
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.reference import chunked_reference_loss, compute_reference
from tokstep.engine.model.trace import reference_loss


def _loaded(arch, tokenizer, model=None):
    return wrap_model(model or tiny.tiny_model(arch, len(tokenizer)), tokenizer, arch)


@pytest.mark.parametrize("kind", list(SPECS))
@pytest.mark.parametrize("arch", ARCHS)
def test_chunked_reference_equals_hf_full_loss(arch, kind, sp_tokenizer):
    loaded = _loaded(arch, sp_tokenizer)
    sample = build_sample(SPECS[kind], sp_tokenizer)
    full = reference_loss(loaded, sample)
    # 3 positions per chunk: many chunks, some all-masked
    chunked = chunked_reference_loss(loaded, sample, chunk_elements=3 * loaded.info.vocab_size)
    assert chunked == pytest.approx(full, rel=1e-6), (arch, kind)
    loss, computed, note = compute_reference(loaded, sample)
    assert computed and "chunks" in note
    assert loss == pytest.approx(full, rel=1e-6)


def test_all_masked_reference_is_undefined_in_every_mode(sp_tokenizer):
    ids = sp_tokenizer("I love dogs and cats")["input_ids"]
    loaded = _loaded("llama", sp_tokenizer)
    sample = build_sample(SampleSpec(ids={"input_ids": ids, "labels": [-100] * len(ids)}), sp_tokenizer)
    assert compute_reference(loaded, sample, "chunked")[:2] == (None, True)
    assert compute_reference(loaded, sample, "full")[:2] == (None, True)


def test_off_mode_says_how_to_turn_it_on(sp_tokenizer):
    loaded = _loaded("llama", sp_tokenizer)
    sample = build_sample(SPECS["text"], sp_tokenizer)
    loss, computed, note = compute_reference(loaded, sample, "off")
    assert (loss, computed) == (None, False) and "--reference" in note


def _scaled_model(tokenizer):
    """A model that rescales its logits after the head: its head cannot be applied in chunks."""
    model = copy.deepcopy(tiny.tiny_model("llama", len(tokenizer)))
    original_forward = model.forward

    def forward_with_scale(*args, **kwargs):
        out = original_forward(*args, **kwargs)
        out.logits = out.logits * 3.0
        if kwargs.get("labels") is not None:
            out.loss = model.loss_function(out.logits, kwargs["labels"], vocab_size=out.logits.shape[-1])
        return out

    model.forward = forward_with_scale
    return model


def test_unknown_post_head_transform_falls_back_to_full_within_budget(sp_tokenizer):
    loaded = _loaded("llama", sp_tokenizer, _scaled_model(sp_tokenizer))
    sample = build_sample(SPECS["text"], sp_tokenizer)
    assert chunked_reference_loss(loaded, sample) is reference._UNAVAILABLE
    loss, computed, note = compute_reference(loaded, sample)
    assert computed and note == reference.FULL_NOTE
    assert loss == pytest.approx(reference_loss(loaded, sample), rel=1e-12)


def test_over_budget_reference_is_skipped_with_the_reason_and_the_flag(sp_tokenizer, monkeypatch):
    loaded = _loaded("llama", sp_tokenizer, _scaled_model(sp_tokenizer))
    sample = build_sample(SPECS["text"], sp_tokenizer)
    monkeypatch.setattr(reference, "FULL_BUDGET_BYTES", 1024)
    loss, computed, note = compute_reference(loaded, sample)
    assert (loss, computed) == (None, False)
    assert "skipped" in note and "--reference full" in note
    forced, computed, _ = compute_reference(loaded, sample, "full")
    assert computed and forced == pytest.approx(reference_loss(loaded, sample))


def test_trace_and_reference_in_two_threads_do_not_see_each_others_hooks(sp_tokenizer):
    """The TUI traces a new sample while the last one's reference computes: both hook the same base model."""
    from concurrent.futures import ThreadPoolExecutor

    from tokstep.engine.model.trace import HIDDEN_PATH, trace_sample

    loaded = _loaded("llama", sp_tokenizer)
    sample = build_sample(SPECS["text"], sp_tokenizer)
    other = build_sample(SPECS["prompt+answer"], sp_tokenizer)
    full = reference_loss(loaded, sample)
    trace_sample(loaded, other)  # verified head: later traces stop at the hidden states (raise in the hook)
    with ThreadPoolExecutor(2) as pool:
        for _ in range(10):
            traced = pool.submit(trace_sample, loaded, other)
            chunked = pool.submit(chunked_reference_loss, loaded, sample)
            assert chunked.result() == pytest.approx(full, rel=1e-6)
            assert traced.result().path == HIDDEN_PATH
