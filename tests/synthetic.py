"""A synthetic `TraceResult` of any length, no model needed: for UI tests and bench/tui_step_latency.py
(test data: it does not ship in the package).

The numbers are random but self-consistent the way a real Trace is: the target's log-prob equals its
top-k entry when its rank is inside the top-k, running sums are cumulative over supervised positions.
"""

from __future__ import annotations

import numpy as np

from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason, Sample
from tokstep.engine.model.results import ModelInfo, Trace, TraceResult
from tokstep.engine.model.tokens import TokenTexts

WORDS = [
    "the",
    "of",
    "and",
    "to",
    "in",
    "is",
    "was",
    "for",
    "on",
    "that",
    "with",
    "as",
    "by",
    "at",
    "from",
    "his",
    "her",
    "it",
    "an",
    "were",
    "which",
    "are",
    "this",
    "be",
    "loss",
    "token",
    "model",
    "train",
    "step",
    "answer",
    "question",
    "paris",
    "france",
    "capital",
    "gradient",
    "label",
    "mask",
    "layer",
]


class SyntheticTokenizer:
    """Just enough of a Hugging Face tokenizer for `TokenTexts`: `Ġ` marks a space, `Ċ` a newline."""

    def __init__(self, vocab_size: int = 4096) -> None:
        specials = ["<s>", "</s>", "<pad>"]
        pieces = ["Ċ", "Ġ"] + [f"Ġ{w}" for w in WORDS] + WORDS
        pieces += [f"Ġw{i}" for i in range(vocab_size - len(specials) - len(pieces))]
        self.vocab = specials + pieces
        self.all_special_ids = [0, 1, 2]
        self.bos_token_id, self.eos_token_id, self.pad_token_id = 0, 1, 2

    def __len__(self) -> int:
        return len(self.vocab)

    def convert_ids_to_tokens(self, token_id: int) -> str:
        return self.vocab[token_id]

    def decode(self, ids: list[int], **_options: object) -> str:
        return "".join(self.vocab[i] for i in ids).replace("Ġ", " ").replace("Ċ", "\n")


def synthetic_result(
    num_tokens: int = 8193,
    *,
    vocab_size: int = 4096,
    top_k: int = 10,
    prompt_fraction: float = 0.2,
    seed: int = 0,
) -> TraceResult:
    """A prompt (masked) + answer sample of `num_tokens` tokens and a plausible trace over it."""
    rng = np.random.default_rng(seed)
    positions = num_tokens - 1  # T: the last token predicts nothing
    tokenizer = SyntheticTokenizer(vocab_size)
    common = np.arange(3, 3 + 2 + 2 * len(WORDS))  # ids of the readable pieces

    # Top-k: k distinct ids per row and a descending distribution with some mass left for the rest.
    topk_ids = np.empty((positions, top_k), dtype=np.int64)  # (T, k)
    for t in range(positions):
        topk_ids[t] = rng.choice(common, size=top_k, replace=False)
    mass = rng.dirichlet(np.full(top_k + 1, 0.6), size=positions)  # (T, k+1), last column = everything else
    topk_probs = -np.sort(-mass[:, :top_k], axis=1)  # (T, k) descending
    topk_logprobs = np.log(np.maximum(topk_probs, 1e-12)).astype(np.float32)

    # Target: usually inside the top-k (geometric rank), sometimes far outside it.
    rank = np.minimum(rng.geometric(0.45, size=positions), 200).astype(np.int64)  # (T,)
    inside = rank <= top_k
    rows = np.arange(positions)
    target_ids = np.where(
        inside, topk_ids[rows, np.minimum(rank, top_k) - 1], rng.integers(3, vocab_size, positions)
    )
    outside_logprob = np.log(topk_probs[:, -1] * rng.uniform(0.01, 0.9, positions))
    logprob = np.where(inside, topk_logprobs[rows, np.minimum(rank, top_k) - 1], outside_logprob).astype(
        np.float32
    )
    entropy = (-(topk_probs * np.log(np.maximum(topk_probs, 1e-12))).sum(axis=1) + 0.5).astype(np.float32)

    input_ids = np.empty(num_tokens, dtype=np.int64)
    input_ids[0] = tokenizer.bos_token_id
    input_ids[1:] = target_ids  # position t predicts token t+1
    prompt_end = max(2, int(num_tokens * prompt_fraction))
    labels = input_ids.copy()
    labels[:prompt_end] = IGNORE_INDEX
    reasons = tuple(
        MaskReason.FIRST if i == 0 else MaskReason.PROMPT if i < prompt_end else MaskReason.SUPERVISED
        for i in range(num_tokens)
    )
    sample = Sample(input_ids, labels, reasons, kind="prompt+answer", name=f"synthetic ({num_tokens} tokens)")

    supervised = labels[1:] != IGNORE_INDEX  # (T,)
    ce = -logprob.astype(np.float64)
    trace = Trace(
        sample=sample,
        target_ids=target_ids.astype(np.int64),
        supervised=supervised,
        logprob=logprob,
        rank=rank,
        ties=np.zeros(positions, dtype=np.int64),
        entropy=entropy,
        topk_ids=topk_ids,
        topk_logprobs=topk_logprobs,
        finite=np.ones(positions, dtype=bool),
        running_sum=np.cumsum(np.where(supervised, ce, 0.0)),
        running_count=np.cumsum(supervised.astype(np.int64)),
        path="synthetic",
        model_vocab_size=vocab_size,
    )
    info = ModelInfo(
        name="synthetic",
        architecture="SyntheticForCausalLM",
        dtype="float32",
        device="cpu",
        vocab_size=vocab_size,
        tokenizer_size=len(tokenizer),
        max_positions=None,
        num_parameters=0,
    )
    return TraceResult(
        info=info,
        sample=sample,
        trace=trace,
        texts=TokenTexts(tokenizer, vocab_size),
        reference=None,  # there is no model to ask
        reference_computed=False,
        incremental_drift=None,
    )
