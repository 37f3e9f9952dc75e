"""Parity with the trainer people use: TRL's SFTTrainer (trl 1.16). For the same rows and tokenizer, tokstep's
labels equal the labels SFTTrainer trains on, and tokstep's loss equals the trainer's `compute_loss` on that
batch (float32, <= 1e-6 relative)."""

from __future__ import annotations

import os

import numpy as np
import pytest
import tiny
import torch

from tokstep.engine.inputs.sample import IGNORE_INDEX
from tokstep.engine.inputs.spec import SampleSpec, build_sample
from tokstep.engine.model.loading import wrap_model
from tokstep.engine.model.trace import trace_sample

os.environ.setdefault("HF_HUB_OFFLINE", "1")
trl = pytest.importorskip("trl")  # in the test extras; importorskip only so a bare install still collects

CHATS = [
    list(tiny.CHAT),
    list(tiny.CHAT[1:3]),
    [
        {"role": "user", "content": "Hello world!"},
        {"role": "assistant", "content": "Hello there, general Kenobi."},
    ],
]
PAIRS = [
    ("Question: what is the capital of France?\nAnswer:", " Paris is the capital of France."),
    ("I love dogs and", " I love cats."),
    ("The quick brown fox", " jumps over the lazy dog."),
]


@pytest.fixture(scope="module")
def setup(tmp_path_factory):
    tokenizer = tiny.byte_level_bpe(chat_template=tiny.CHATML)
    torch.manual_seed(0)
    model = tiny.tiny_model("llama", len(tokenizer))
    return tokenizer, model, tmp_path_factory.mktemp("trl")


def _trainer(setup, rows, **config):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    tokenizer, model, out = setup
    args = SFTConfig(
        output_dir=str(out),
        per_device_train_batch_size=len(rows),
        report_to=[],
        max_length=None,
        use_cpu=True,
        bf16=False,
        fp16=False,
        **config,
    )
    return SFTTrainer(
        model=model, args=args, train_dataset=Dataset.from_list(rows), processing_class=tokenizer
    )


def _check(setup, trainer, specs):
    tokenizer, model, _ = setup
    features = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(features)  # padded [B, L] input_ids / labels / attention_mask
    loaded = wrap_model(model, tokenizer, "tiny-llama")
    total, count = 0.0, 0
    for row, spec in enumerate(specs):
        sample = build_sample(spec, tokenizer)
        n = len(sample)
        assert batch["input_ids"][row, :n].tolist() == sample.input_ids.tolist()
        assert batch["attention_mask"][row, :n].all() and not batch["attention_mask"][row, n:].any()
        theirs = batch["labels"][row, :n].numpy()
        assert (theirs[1:] == sample.labels[1:]).all(), (theirs, sample.labels)  # labels[0] predicts nothing
        assert (batch["labels"][row, n:] == IGNORE_INDEX).all()
        trace = trace_sample(loaded, sample)
        total += float(trace.running_sum[-1])
        count += int(trace.running_count[-1])
    model.eval()
    with torch.no_grad():
        loss = float(trainer.compute_loss(model, dict(batch)))
    ours = total / count
    assert abs(ours - loss) <= 1e-6 * abs(loss), (ours, loss)
    return count


def test_assistant_only_loss_labels_and_loss_match_sft_trainer(setup):
    trainer = _trainer(setup, [{"messages": chat} for chat in CHATS], assistant_only_loss=True)
    count = _check(setup, trainer, [SampleSpec(chat=tuple(chat)) for chat in CHATS])
    assert count > 20


def test_completion_only_loss_labels_and_loss_match_sft_trainer(setup):
    rows = [{"prompt": p, "completion": c} for p, c in PAIRS]
    trainer = _trainer(setup, rows, completion_only_loss=True)
    count = _check(setup, trainer, [SampleSpec(prompt=p, answer=c) for p, c in PAIRS])
    assert count > 15


def test_a_template_without_generation_markers_masks_like_the_marked_one(setup):
    """tokstep's located mask (no markers) equals TRL's labels from the marked template on the same chats."""
    import copy

    tokenizer = copy.deepcopy(setup[0])
    tokenizer.chat_template = tiny.CHATML_NO_GENERATION
    trainer = _trainer(setup, [{"messages": chat} for chat in CHATS], assistant_only_loss=True)
    features = [trainer.train_dataset[i] for i in range(len(trainer.train_dataset))]
    batch = trainer.data_collator(features)
    for row, chat in enumerate(CHATS):
        sample = build_sample(SampleSpec(chat=tuple(chat)), tokenizer)
        n = len(sample)
        assert np.array_equal(batch["labels"][row, 1:n].numpy(), sample.labels[1:])
