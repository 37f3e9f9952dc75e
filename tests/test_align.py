"""Two tokenizers on the same text: byte spans against an independent derivation (decoding prefixes),
boundary differences, and bits per byte against Hugging Face's own loss of each model."""

from __future__ import annotations

import math

import numpy as np
import pytest
import tiny

from tokstep.engine.compare.align import byte_spans
from tokstep.engine.compare.results import TokenizerCompareResult
from tokstep.engine.compare.session import run_compare
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.trace import reference_loss

ASCII = "A lazy cat loves brown dogs and quick foxes in France. Hello there, general Kenobi!"


def prefix_ends(tokenizer, text: str) -> list[int]:
    """Byte offset where each text token ends, by decoding longer and longer prefixes (no offsets used)."""
    ids = tokenizer(text, add_special_tokens=False)["input_ids"]
    return [len(tokenizer.decode(ids[: k + 1]).encode("utf-8")) for k in range(len(ids))]


@pytest.mark.parametrize("which", ["sp_tokenizer", "bpe_tokenizer"])
def test_byte_spans_agree_with_decoded_prefixes(which, request):
    tokenizer = request.getfixturevalue(which)
    spec = SampleSpec(text=ASCII, bos="add", eos="add")
    sample = build_sample(spec, tokenizer)
    text, spans = byte_spans(tokenizer, spec, sample)
    assert text == ASCII
    with_text = spans[spans[:, 1] > spans[:, 0]]
    assert (spans[0] == -1).all() and (spans[-1] == -1).all()  # BOS and EOS carry no bytes
    # SentencePiece's prepended "▁" decodes to nothing; its offsets give it the first character: same ends
    assert sorted(set(with_text[:, 1].tolist())) == sorted(set(prefix_ends(tokenizer, ASCII)) - {0})
    assert with_text[0, 0] == 0 and (with_text[1:, 0] <= with_text[:-1, 1]).all()  # no gap


def test_prompt_answer_spans_cover_both_parts(sp_tokenizer):
    spec = SampleSpec(prompt="Question: où est Paris?\n", answer="Answer: en France ☕.")
    sample = build_sample(spec, sp_tokenizer)
    text, spans = byte_spans(sp_tokenizer, spec, sample)
    raw = text.encode("utf-8")
    covered = np.zeros(len(raw), dtype=bool)
    for start, end in spans[spans[:, 1] > spans[:, 0]]:
        covered[start:end] = True
    assert covered.all()  # every byte, including the 3-byte ☕ (byte fallback pieces)


@pytest.fixture(scope="module")
def two_models(sp_tokenizer, bpe_tokenizer):
    a = wrap_model(tiny.tiny_model("llama", len(sp_tokenizer), seed=0), sp_tokenizer, "A")
    b = wrap_model(tiny.tiny_model("gpt2", len(bpe_tokenizer), seed=1), bpe_tokenizer, "B")
    return a, b


def test_bits_per_byte_match_hf_losses(two_models):
    a, b = two_models
    spec = SampleSpec(text=ASCII, bos="add")  # both score every byte: BOS first, every text token a target
    result = run_compare(a, b, spec, with_reference=False)
    assert isinstance(result, TokenizerCompareResult) and result.b is not None
    n_bytes = len(ASCII.encode())
    bpb_a, bpb_b, n = result.alignment.bits_per_byte()
    assert n == n_bytes
    for loaded, sample, bpb in ((a, result.a.sample, bpb_a), (b, result.b.sample, bpb_b)):
        hf = reference_loss(loaded, sample)  # mean CE over the N-1 targets, all of them text tokens
        assert bpb == pytest.approx(hf * (len(sample) - 1) / math.log(2) / n_bytes, rel=1e-5)


def test_boundaries_differ_where_the_tokenizers_cut_differently(two_models):
    a, b = two_models
    result = run_compare(a, b, SampleSpec(text=ASCII), with_reference=False)
    alignment = result.alignment
    starts_a = {0, *prefix_ends(a.tokenizer, ASCII)[:-1]} - {len(ASCII)}
    starts_b = {0, *prefix_ends(b.tokenizer, ASCII)[:-1]} - {len(ASCII)}
    assert set(alignment.only_a.tolist()) == starts_a - starts_b
    assert set(alignment.only_b.tolist()) == starts_b - starts_a
    assert alignment.shared == len(starts_a & starts_b)
    assert alignment.only_a.size + alignment.only_b.size > 0


def test_a_second_tokenizer_alone_gives_the_boundary_diff(two_models, bpe_tokenizer):
    a, _ = two_models
    result = run_compare(a, bpe_tokenizer, SampleSpec(text=ASCII), with_reference=False)
    assert result.b is None and result.alignment.byte_loss_b is None
    assert result.alignment.bits_per_byte() == (None, None, 0)
    assert result.alignment.boundaries_b.size == len(set(prefix_ends(bpe_tokenizer, ASCII)))
