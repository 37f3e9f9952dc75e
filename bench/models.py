"""The benchmark's models and samples, built from configs with random weights (nothing downloaded)."""

from __future__ import annotations

from typing import Any

import numpy as np
import torch

from tokstep.engine.inputs.sample import MaskReason, Sample
from tokstep.engine.model.loading import LoadedModel, wrap_model

LLAMA_128K_VOCAB = 128256  # Llama-3's vocabulary size


class VocabOnly:
    """Stands in for a tokenizer: the benchmarks feed token ids directly."""

    def __init__(self, size: int) -> None:
        self.size = size

    def __len__(self) -> int:
        return self.size


def gpt2_small(max_tokens: int, device: str) -> LoadedModel:
    """GPT-2 small (GPT2Config() defaults: 124M parameters, vocab 50257), positions extended to fit."""
    from transformers import GPT2Config, GPT2LMHeadModel

    torch.manual_seed(0)
    config = GPT2Config(n_positions=max(1024, max_tokens))
    model = GPT2LMHeadModel(config).eval().to(device)
    return wrap_model(model, VocabOnly(config.vocab_size), "gpt2-small (random init)")


def small_llama_config(vocab: int, max_positions: int = 8192) -> Any:
    """A small Llama's config (hidden 256, 2 layers, 4 heads, untied head): the vocabulary dominates memory."""
    from transformers import LlamaConfig

    return LlamaConfig(
        vocab_size=vocab,
        hidden_size=256,
        intermediate_size=768,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=4,
        max_position_embeddings=max_positions,
        tie_word_embeddings=False,
    )


def llama_128k(device: str) -> LoadedModel:
    """A small Llama with a 128k-entry vocabulary: the head dominates memory, as in Llama-3-sized vocabularies."""
    from transformers import LlamaForCausalLM

    torch.manual_seed(0)
    config = small_llama_config(LLAMA_128K_VOCAB)
    model = LlamaForCausalLM(config).eval().to(device)
    return wrap_model(model, VocabOnly(config.vocab_size), "llama (vocab 128256, random init)")


def random_sample(n_tokens: int, vocab: int, seed: int = 0) -> Sample:
    """N random token ids, every target supervised (labels = input_ids)."""
    ids = np.random.default_rng(seed).integers(0, vocab, n_tokens).astype(np.int64)
    return Sample(
        input_ids=ids,
        labels=ids.copy(),
        mask_reasons=(MaskReason.SUPERVISED,) * n_tokens,
        kind="ids",
        name=f"random {n_tokens} tokens",
    )


def input_ids(loaded: LoadedModel, sample: Sample) -> torch.Tensor:
    device = loaded.model.get_input_embeddings().weight.device
    return torch.tensor(sample.input_ids, device=device)[None]  # (1, N)


def synchronize(model: Any) -> None:
    """Wait for queued GPU work so wall-clock timings are real."""
    device = model.get_input_embeddings().weight.device
    if device.type == "cuda":
        torch.cuda.synchronize(device)
