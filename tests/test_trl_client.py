"""A real client: TRL's SFTTrainer on the bundled model, batches saved with save_batches, checked against
`trainer.compute_loss(model, batch, num_items_in_batch=...)` and against each document traced alone."""

from __future__ import annotations

import math

import pytest
import torch

from tokstep.capture import save_batches
from tokstep.engine.batches.files import read_batches
from tokstep.engine.batches.packing import trace_batches
from tokstep.engine.chat.structure import ROLES

VERSES = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void; and darkness was upon the face of the deep.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
]


@pytest.fixture(scope="module")
def mini():
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.session import load

    return load(ModelSpec(dtype="float32", device="cpu"))


def make_trainer(mini, tmp_path, **options):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    mini.model.set_attn_implementation("sdpa")
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        per_device_train_batch_size=2,
        use_cpu=True,
        seed=0,
        **options,
    )
    data = Dataset.from_dict({"text": VERSES})
    return SFTTrainer(model=mini.model, args=config, train_dataset=data, processing_class=mini.tokenizer)


@pytest.mark.parametrize(
    "options",
    [dict(packing=True, max_length=40), dict(padding_free=True, max_length=None)],
    ids=["packing", "padding_free"],
)
def test_batch_loss_equals_trl_compute_loss_and_documents_equal_their_loss_alone(mini, tmp_path, options):
    trainer = make_trainer(mini, tmp_path, **options)
    path = tmp_path / "batches.jsonl"
    batches = []
    for batch in trainer.get_train_dataloader():  # the same two batches tokstep reads back
        batches.append(batch)
        if len(batches) == 2:
            break
    save_batches(batches, path, trainer=trainer)
    loaded = read_batches(path)
    assert loaded.errors == () and len(loaded.rows) == 2
    assert all(r.packed and r.settings.use_cache is False for r in loaded.rows)
    report = trace_batches(mini, loaded, with_reference=False)
    assert report.loss.trainer_used == "num_items_in_batch"

    model = trainer.model
    model.eval()
    per_step = []
    total_items = sum(int(b["labels"][..., 1:].ne(-100).sum()) for b in batches)
    with torch.no_grad():
        for b, batch in enumerate(batches):
            items = int(batch["labels"][..., 1:].ne(-100).sum())
            theirs = float(trainer.compute_loss(model, dict(batch), num_items_in_batch=items))
            ours = report.loss.batch_mean(b)
            assert math.isclose(ours, theirs, rel_tol=1e-6), (ours, theirs)
            per_step.append(float(trainer.compute_loss(model, dict(batch), num_items_in_batch=total_items)))
    # two batches as two accumulation steps of one optimizer step: Σ over steps = the token-weighted mean
    assert math.isclose(report.loss.token_weighted, sum(per_step), rel_tol=1e-6)

    for row in report.rows:  # TRL isolates documents (position_ids restart, no mask, use_cache=False)
        assert row.findings == () and row.max_delta < 1e-4
        for document in row.documents:
            assert math.isclose(document.loss, document.alone_loss, rel_tol=1e-5)


CHATS = [
    [{"role": "user", "content": question}, {"role": "assistant", "content": answer}]
    for question, answer in [
        ("What is the capital of France?", "Paris is the capital."),
        ("Who created the earth?", "God created the heaven and the earth."),
        ("Is there light?", "And there was light."),
        ("What did God call the darkness?", "He called it Night."),
    ]
]


@pytest.mark.parametrize(
    "options",
    [dict(packing=True, max_length=64), dict(padding_free=True, max_length=None), dict(max_length=None)],
    ids=["packing", "padding_free", "padded"],
)
def test_trl_assistant_only_batches_agree_with_the_recovered_chat_turns(mini, tmp_path, options):
    """TRL's own assistant-only mask (the bundled template's {% generation %} block) is what tokstep expects
    from the recovered turns: no label finding and no disagreeing token, packed, padding-free or padded."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    mini.model.set_attn_implementation("sdpa")
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        per_device_train_batch_size=2,
        use_cpu=True,
        seed=0,
        assistant_only_loss=True,
        **options,
    )
    trainer = SFTTrainer(
        model=mini.model,
        args=config,
        train_dataset=Dataset.from_dict({"messages": CHATS}),
        processing_class=mini.tokenizer,
    )
    batches = []
    for batch in trainer.get_train_dataloader():
        batches.append(batch)
        if len(batches) == 2:
            break
    path = tmp_path / "batches.jsonl"
    save_batches(batches, path, trainer=trainer)
    report = trace_batches(mini, read_batches(path), with_reference=False)
    assert report.rows
    replies = 0
    for row in report.rows:
        layout = row.result.sample.layout
        assert layout is not None and row.disagree == 0, row.row.name
        assert [f.code for f in row.findings] == [], row.row.name
        replies += sum(t.role == "assistant" for t in layout.turns)
        supervised = row.row.labels != -100
        assert (
            supervised.any() and not supervised[layout.roles == ROLES.index("user")].any()
        )  # TRL trains no user token
    assert replies == sum(len(r.row.documents) for r in report.rows)  # every document's reply was found
    if options.get("packing") or options.get("padding_free"):
        assert any(r.row.packed for r in report.rows)
    else:
        assert any(r.row.padding for r in report.rows)
