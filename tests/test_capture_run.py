"""`tokstep.capture.record` on a real `SFTTrainer.train()` (bundled model; packing, padding-free, padded): the
file holds what the forward received, with num_items_in_batch and the accumulation step of each batch; opened
with `report --batches`, each batch's loss is what the trainer computed for it; the hook is gone after N."""

from __future__ import annotations

import json
import math

import pytest

from tokstep.capture import record
from tokstep.engine.batches.files import read_batches
from tokstep.tui.cli.main import main

VERSES = [
    "In the beginning God created the heaven and the earth.",
    "And the earth was without form, and void.",
    "And God said, Let there be light: and there was light.",
    "And God saw the light, that it was good.",
    "And God called the light Day, and the darkness he called Night.",
    "And the evening and the morning were the first day.",
    "And God made the firmament.",
    "And it was so.",
]
LIMIT = 3  # batches recorded: two of the first optimizer step, one of the second


@pytest.fixture(scope="module")
def mini():
    from tokstep.engine.model.loading import ModelSpec
    from tokstep.engine.model.session import load

    return load(ModelSpec(dtype="float32", device="cpu"))


def train_recording(mini, tmp_path, **options):
    """Train 2 optimizer steps of 2 micro-batches at learning rate 0 (so every step sees the same weights
    tokstep later traces with), recording LIMIT batches; returns the file, the recorder and the trainer's
    own loss for each micro-batch (what `compute_loss` returned)."""
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    mini.model.set_attn_implementation("sdpa")
    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        per_device_train_batch_size=2,
        gradient_accumulation_steps=2,
        max_steps=2,
        learning_rate=0.0,
        use_cpu=True,
        bf16=False,  # TRL's default autocast would make the trainer's loss differ from float32 tracing
        seed=0,
        save_strategy="no",
        **options,
    )
    trainer = SFTTrainer(
        model=mini.model,
        args=config,
        train_dataset=Dataset.from_dict({"text": VERSES}),
        processing_class=mini.tokenizer,
    )
    losses: list[float] = []
    compute_loss = trainer.compute_loss

    def recorded_compute_loss(*args, **kwargs):
        loss = compute_loss(*args, **kwargs)
        losses.append(float((loss[0] if isinstance(loss, tuple) else loss).detach()))
        return loss

    trainer.compute_loss = recorded_compute_loss
    path = tmp_path / "batches.jsonl"
    recorder = record(trainer, path, limit=LIMIT)
    assert recorder.active and len(trainer.model._forward_pre_hooks) == 1 and "training_step" in vars(trainer)
    trainer.train()
    return path, recorder, trainer, losses


@pytest.mark.parametrize(
    "options",
    [dict(packing=True, max_length=32), dict(padding_free=True, max_length=None), dict(max_length=None)],
    ids=["packing", "padding_free", "padded"],
)
def test_recorded_batches_reproduce_the_trainers_loss(mini, tmp_path, options, capsys):
    path, recorder, trainer, losses = train_recording(mini, tmp_path, **options)
    # the hook and the callback are gone after LIMIT batches: the 4th forward was not seen
    assert len(losses) == 4 and recorder.batches == LIMIT and not recorder.active
    assert not trainer.model._forward_pre_hooks and "training_step" not in vars(trainer)
    assert recorder._callback not in trainer.callback_handler.callbacks

    lines = [json.loads(line) for line in path.read_text().splitlines()]
    by_batch = {}
    for line in lines:
        by_batch.setdefault(line["batch"], line)
    assert sorted(by_batch) == [0, 1, 2]
    assert [(by_batch[b]["step"], by_batch[b]["micro"]) for b in range(3)] == [(0, 0), (0, 1), (1, 0)]
    assert all(line["settings"]["loss"] == "num_items_in_batch" for line in lines)
    assert all(line["settings"]["accumulation_steps"] == 2 for line in lines)
    assert all(line["settings"]["mixed_precision"] is None for line in lines)
    assert all(line["forward"]["use_cache"] is False for line in lines)  # TRL's compute_loss passes it
    keys = set(lines[0]) - {"batch", "row", "step", "micro", "num_items_in_batch", "forward", "settings"}
    assert {"input_ids", "labels"} <= keys
    if options.get("padding_free"):
        assert "position_ids" in keys
    if "packing" not in options and not options.get("padding_free"):
        assert "attention_mask" in keys
    assert read_batches(path).errors == ()

    out = tmp_path / "report.json"
    assert main(["report", "--batches", str(path), "--json", str(out), "--reference", "off"]) in (0, 1)
    capsys.readouterr()
    per_batch = {b["batch"]: b for b in json.loads(out.read_text())["batch_loss"]["per_batch"]}
    step_items = {}
    for b in range(3):
        step_items.setdefault(by_batch[b]["step"], []).append(per_batch[b]["supervised"])
    for b in range(3):
        items = by_batch[b]["num_items_in_batch"]
        if by_batch[b]["step"] == 0:  # a step recorded whole: its count is the sum over its batches
            assert items == sum(step_items[0])
        ours = per_batch[b]["sum_ce"] / items  # what the trainer backpropagates for this micro-batch
        assert math.isclose(ours, losses[b], rel_tol=1e-5), (b, ours, losses[b])


def test_training_that_ends_first_still_writes_the_file(mini, tmp_path):
    from datasets import Dataset
    from trl import SFTConfig, SFTTrainer

    config = SFTConfig(
        output_dir=str(tmp_path / "out"),
        report_to=[],
        per_device_train_batch_size=4,
        max_steps=1,
        learning_rate=0.0,
        use_cpu=True,
        save_strategy="no",
        max_length=16,
    )
    trainer = SFTTrainer(
        model=mini.model,
        args=config,
        train_dataset=Dataset.from_dict({"text": VERSES[:4]}),
        processing_class=mini.tokenizer,
    )
    recorder = record(trainer, tmp_path / "b.jsonl", limit=10)
    trainer.train()
    assert recorder.batches == 1 and not recorder.active and not trainer.model._forward_pre_hooks
    rows = read_batches(tmp_path / "b.jsonl").rows
    assert len(rows) == 4 and all(row.settings.accumulation_steps == 1 for row in rows)
    first = json.loads((tmp_path / "b.jsonl").read_text().splitlines()[0])
    assert first["settings"]["mixed_precision"] == "bf16"  # SFTConfig's default: recorded, not hidden
    with pytest.raises(FileExistsError):
        record(trainer, tmp_path / "b.jsonl")
