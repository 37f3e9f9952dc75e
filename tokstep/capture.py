"""Save the batches a trainer really feeds its model, for `tokstep --batches FILE`.

From the run itself (what the model's forward receives inside `trainer.train()`, step-time processing and
`num_items_in_batch` included; the hook removes itself after `limit` batches):

    from tokstep.capture import record
    record(trainer, "batches.jsonl", limit=4)
    trainer.train()

Or from the dataloader alone:

    from tokstep.capture import save_batches
    trainer = SFTTrainer(model=model, args=config, train_dataset=data, processing_class=tokenizer)
    save_batches(trainer.get_train_dataloader(), "batches.jsonl", limit=2, trainer=trainer)

JSONL, one line per row: `{"batch": b, "row": r, "input_ids": [...], "labels": [...]}` plus every other
per-token key the batch has (`attention_mask`, `position_ids`, `seq_idx`, ...), the flash-attention varlen
boundaries (`cu_seq_lens_q/k`, `max_length_q/k`) and, given the model or the trainer, the settings that decide
whether packed documents attend to each other (`attn_implementation`, `use_cache`) and how the trainer reduces
the loss. No pickle. Import-light: no torch import (tensors are read through their own methods), no Textual.
"""

from __future__ import annotations

import json
import os
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import Any

from tokstep.engine.atomic import write_text_atomic

__all__ = ["record", "Recorder", "save_batches", "model_settings"]

CU_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k")


def _plain(value: Any) -> Any:
    """A tensor / numpy array / list / number as plain Python lists and numbers (tensors on any device)."""
    if hasattr(value, "detach"):  # a torch tensor, on any device
        value = value.detach()
        if hasattr(value, "cpu"):
            value = value.cpu()
        if "bool" in str(getattr(value, "dtype", "")):
            value = value.long()  # a boolean attention mask: 0/1
    elif "bool" in str(getattr(value, "dtype", "")) and hasattr(value, "astype"):
        value = value.astype("int64")  # numpy
    if hasattr(value, "tolist"):
        return value.tolist()
    if isinstance(value, (list, tuple)):
        return [_plain(v) for v in value]
    return value


def _is_int_matrix(value: Any) -> bool:
    return isinstance(value, list) and all(isinstance(r, list) for r in value)


def model_settings(model: Any = None, trainer: Any = None) -> dict[str, Any]:
    """What decides how the trainer's forward treats a packed row, and how it reduces the loss."""
    settings: dict[str, Any] = {}
    if model is None and trainer is not None:
        model = getattr(trainer, "model", None)
    config = getattr(model, "config", None)
    if config is not None:
        implementation = getattr(config, "_attn_implementation", None)
        if implementation:
            settings["attn_implementation"] = implementation
        if getattr(config, "use_cache", None) is not None:
            settings["use_cache"] = bool(config.use_cache)
    if trainer is not None:
        cls = type(trainer)
        settings["trainer"] = cls.__name__
        if cls.__module__.startswith("trl."):
            settings["use_cache"] = False  # TRL's SFTTrainer.compute_loss passes use_cache=False itself
        accepts = getattr(trainer, "model_accepts_loss_kwargs", False) or getattr(
            trainer, "compute_loss_func", None
        )
        settings["loss"] = "num_items_in_batch" if accepts else "per-batch mean"
        steps = getattr(getattr(trainer, "args", None), "gradient_accumulation_steps", None)
        if isinstance(steps, int):
            settings["accumulation_steps"] = steps
    return settings


def _rows(batch: Mapping[str, Any], index: int) -> list[dict[str, Any]]:
    """Split one collated batch into rows: [B, N] keys per row, cu_seq_lens cut to each row, scalars kept."""
    plain = {key: _plain(value) for key, value in batch.items()}
    ids = plain.get("input_ids")
    if ids is None:
        raise ValueError(f'batch {index} has no "input_ids"')
    if not _is_int_matrix(ids):
        ids = [ids]  # one unbatched row
        plain = {k: ([v] if isinstance(v, list) and k not in CU_KEYS else v) for k, v in plain.items()}
        plain["input_ids"] = ids
    rows_n, width = len(ids), len(ids[0]) if ids else 0
    rows: list[dict[str, Any]] = [{"batch": index, "row": r} for r in range(rows_n)]
    for key, value in plain.items():
        if key in CU_KEYS and isinstance(value, list) and value and not isinstance(value[0], list):
            for r, row in enumerate(
                rows
            ):  # boundaries over the flattened batch -> those inside row r, from 0
                lo, hi = r * width, (r + 1) * width
                inner = [v - lo for v in value if lo <= v <= hi]
                row[key] = sorted({0, *inner, width})
        elif _is_int_matrix(value) and len(value) == rows_n and all(len(v) == width for v in value):
            for row, values in zip(rows, value, strict=True):
                row[key] = values
        elif isinstance(value, int) and not isinstance(value, bool):  # max_length_q/k
            for row in rows:
                row[key] = value
    return rows


def _new_file(path: str | os.PathLike[str], overwrite: bool) -> Path:
    """The file to write: not a directory, and not an existing file unless `overwrite`."""
    target = Path(path).expanduser()
    if target.is_dir():
        raise IsADirectoryError(f"{target} is a directory: name a file")
    if (target.exists() or target.is_symlink()) and not overwrite:
        raise FileExistsError(f"{target} already exists: pass overwrite=True to replace it")
    return target


def save_batches(
    batches: Iterable[Mapping[str, Any]],
    path: str | os.PathLike[str],
    limit: int | None = None,
    *,
    model: Any = None,
    trainer: Any = None,
    overwrite: bool = False,
) -> int:
    """Write the first `limit` batches (all if None) of any PyTorch dataloader to `path` as JSONL; returns rows.

    `trainer=` (HF Trainer / TRL SFTTrainer) or `model=` records the settings that decide whether packed
    documents attend to each other. The file is written to a temporary file and renamed into place; an
    existing file is kept unless `overwrite=True`.
    """
    if limit is not None and limit < 1:
        raise ValueError("limit must be at least 1 (or None for every batch)")
    target = _new_file(path, overwrite)
    settings = model_settings(model, trainer)
    lines: list[str] = []
    for index, batch in enumerate(batches):
        if limit is not None and index >= limit:
            break
        if not isinstance(batch, Mapping):
            raise TypeError(f"batch {index} is a {type(batch).__name__}, not a dict of tensors")
        for row in _rows(batch, index):
            if settings:
                row["settings"] = settings
            lines.append(json.dumps(row, separators=(",", ":")))
    write_text_atomic(target, "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)


def _is_batched(value: Any) -> bool:
    """A tensor / array with at least one dimension (a per-row or per-token key of the batch)."""
    return hasattr(value, "shape") and len(value.shape) >= 1


class Recorder:
    """Records the training batches of a run (see `record`); `active` until `limit` batches are in.

    It wraps `trainer.training_step` (which knows `num_items_in_batch` and the step) and hooks the model's
    forward (which sees the batch as the model gets it); the first forward of each training step is that
    step's batch (TRL may run a second, gradient-free forward for its metrics). `finish` undoes both.
    """

    def __init__(self, trainer: Any, path: Path, limit: int) -> None:
        self.trainer, self.path, self.limit = trainer, path, limit
        self.lines: list[str] = []
        self.batches = 0
        self._step, self._micro = -1, 0
        self._pending: dict[str, Any] | None = None  # the training step whose forward comes next
        self._own_step = "training_step" in vars(trainer)  # an instance attribute to restore afterwards
        self._training_step = trainer.training_step
        trainer.training_step = self._on_training_step
        self._hook = trainer.model.register_forward_pre_hook(self._on_forward, with_kwargs=True)
        self._callback = _end_of_training_callback(self)
        trainer.add_callback(self._callback)

    @property
    def active(self) -> bool:
        return self._hook is not None

    def _on_training_step(
        self, model: Any, inputs: Any, num_items_in_batch: Any = None, **kwargs: Any
    ) -> Any:
        step = int(self.trainer.state.global_step)  # optimizer steps done before this batch
        self._micro = self._micro + 1 if step == self._step else 0
        self._step = step
        self._pending = {"step": step, "micro": self._micro, "num_items_in_batch": _plain(num_items_in_batch)}
        try:
            return self._training_step(model, inputs, num_items_in_batch, **kwargs)
        finally:
            self._pending = None
            if self.batches >= self.limit:
                self.finish()

    def _on_forward(self, module: Any, args: tuple[Any, ...], kwargs: dict[str, Any]) -> None:
        pending, self._pending = self._pending, None
        if pending is None or not module.training:  # evaluation, or the step's second (metrics) forward
            return
        batch = {key: value for key, value in kwargs.items() if _is_batched(value)}
        if args and "input_ids" not in batch:
            batch["input_ids"] = args[0]
        forward = {key: _plain(value) for key, value in kwargs.items() if key not in batch}
        settings = model_settings(trainer=self.trainer)
        items = pending.pop("num_items_in_batch")
        settings["loss"] = "per-batch mean" if items is None else "num_items_in_batch"
        precision = [p for p in ("bf16", "fp16") if getattr(self.trainer.args, p, False) is True]
        settings["mixed_precision"] = precision[0] if precision else None  # the forward ran under autocast
        loss_type = getattr(self.trainer.args, "loss_type", None)
        if isinstance(loss_type, str):
            settings["loss_type"] = loss_type  # TRL: nll | dft ...
        for row in _rows(batch, self.batches):
            row.update(pending, num_items_in_batch=items, forward=forward, settings=settings)
            self.lines.append(json.dumps(row, separators=(",", ":")))
        self.batches += 1

    def finish(self) -> None:
        """Undo the wrapper, the hook and the callback, and write the file (at `limit`, or when training ends)."""
        if self._hook is None:
            return
        self._hook.remove()
        self._hook = None
        if self._own_step:
            self.trainer.training_step = self._training_step
        else:
            del self.trainer.training_step  # back to the class's method
        self.trainer.remove_callback(self._callback)
        write_text_atomic(self.path, "\n".join(self.lines) + ("\n" if self.lines else ""))


def _end_of_training_callback(recorder: Recorder) -> Any:
    from transformers import TrainerCallback  # lazy: loads transformers (the caller has it loaded already)

    class FinishRecording(TrainerCallback):
        """Writes what was recorded when training ends before `limit` batches."""

        def on_train_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            recorder.finish()

    return FinishRecording()


def record(
    trainer: Any, path: str | os.PathLike[str], limit: int = 4, *, overwrite: bool = False
) -> Recorder:
    """Record the first `limit` training batches exactly as `trainer.model`'s forward receives them during
    `trainer.train()`: every tensor key per row, the forward's other arguments (`use_cache`, ...) under
    `"forward"`, the optimizer step (`"step"`) and micro-batch within it (`"micro"`) each batch belongs to, the
    `num_items_in_batch` the trainer divides the step's summed loss by, and the settings (attention, loss
    reduction, accumulation steps, mixed precision). After `limit` batches (or at the end of
    training) the hook is removed and the file written atomically; an existing file is kept unless
    `overwrite=True`.
    """
    if limit < 1:
        raise ValueError("limit must be at least 1")
    return Recorder(trainer, _new_file(path, overwrite), limit)
