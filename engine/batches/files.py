"""Trainer batches saved by `tokstep.capture.save_batches` (or written by hand): read, check, split into documents.

A file is JSONL, one line per row of a batch: `{"batch": b, "input_ids": [...], "labels": [...]}` plus any other
per-token key (`attention_mask`, `position_ids`, `seq_idx`), the flash-attention varlen boundaries
(`cu_seq_lens_q` / `cu_seq_lens_k`, as TRL's padding-free collator makes them) and, from `save_batches`, the model
settings that decide whether packed documents attend to each other (`"settings"`). A bad line is one error naming
the line; the other rows still open. numpy only: screens hold these.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import tokstep.engine.inputs.json_text as json_text
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.sample import IGNORE_INDEX, MaskReason, Sample
from tokstep.engine.inputs.spec import as_int_list, read_bounded
from tokstep.engine.policies import Policy

PER_TOKEN_KEYS = ("labels", "attention_mask", "position_ids", "seq_idx")
CU_KEYS = ("cu_seq_lens_q", "cu_seq_lens_k")
SETTINGS_KEY = "settings"


@dataclass(frozen=True)
class Settings:
    """How the trainer ran the forward and reduced the loss (None: not recorded / not stated)."""

    attn_implementation: str | None = None  # eager | sdpa | flash_attention_2 | ...
    use_cache: bool | None = None  # whether the forward built a KV cache
    trainer: str | None = None  # class name of the trainer, when save_batches got one
    loss: str | None = (
        None  # "num_items_in_batch" (token-weighted over the accumulation step) | "per-batch mean"
    )
    accumulation_steps: int | None = None
    eot: Policy | None = None  # the label convention stated by --eot (None: engine.policies.DEFAULT_EOT)
    inserted: Policy | None = None  # stated by --inserted (None: engine.policies.DEFAULT_INSERTED)

    def overridden(self, **given: Any) -> Settings:
        """These settings with the user's flags (those not None) taking precedence."""
        kept = {k: v for k, v in given.items() if v is not None}
        return Settings(**{**self.__dict__, **kept})


@dataclass(frozen=True, eq=False)
class BatchRow:
    """One row of one batch, checked: every per-token array has the row's length."""

    line: int  # 1-based line in the file
    batch: int
    row: int  # index within its batch
    input_ids: np.ndarray  # (N,) int64
    labels: np.ndarray  # (N,) int64 (input_ids when the file had none)
    attention_mask: np.ndarray | None  # (N,) as given (all ones too)
    position_ids: np.ndarray | None  # (N,)
    seq_idx: np.ndarray | None  # (N,)
    cu_seq_lens: np.ndarray | None  # (D+1,) document boundaries, 0 .. N
    documents: tuple[tuple[int, int], ...]  # token spans [start, end) of each document (padding excluded)
    documents_from: str  # which key the documents came from ("cu_seq_lens_q", "seq_idx", "position_ids", "")
    settings: Settings
    extra: tuple[tuple[str, Any], ...] = field(default=())  # max_length_q/k and other scalars, as given

    def __len__(self) -> int:
        return len(self.input_ids)

    @property
    def packed(self) -> bool:
        return len(self.documents) > 1

    @property
    def padding(self) -> int:
        return 0 if self.attention_mask is None else int((self.attention_mask == 0).sum())

    @property
    def name(self) -> str:
        return f"batch {self.batch} row {self.row}"

    def document_of(self, token: int) -> int | None:
        """Which document token `token` belongs to (None for padding)."""
        for d, (start, end) in enumerate(self.documents):
            if start <= token < end:
                return d
        return None


@dataclass(frozen=True)
class BadLine:
    line: int
    message: str  # one line, starting with "line N:"


@dataclass(frozen=True, eq=False)
class BatchFile:
    path: str
    rows: tuple[BatchRow, ...]
    errors: tuple[BadLine, ...]

    @property
    def batches(self) -> tuple[int, ...]:
        return tuple(sorted({r.batch for r in self.rows}))


class RowError(Exception):
    """A problem with one line (becomes a BadLine; the other lines still load)."""


MAX_BATCHES_FILE = 2 << 30  # bytes: checked before reading (a trainer's batches, not /dev/zero)


def read_batches(path: str | Path) -> BatchFile:
    """Read a batches file; each unreadable line (bad JSON, bad UTF-8, a repeated batch/row key) is a
    `BadLine`, the others load."""
    if Path(path).expanduser().is_dir():
        raise TokstepError(f"cannot read batches file {path}: it is a folder")
    data = read_bounded(path, "batches", MAX_BATCHES_FILE, "split it into smaller files")
    rows: list[BatchRow] = []
    errors: list[BadLine] = []
    next_row: dict[int, int] = {}
    first_line: dict[tuple[int, int], int] = {}
    for number, raw_bytes in enumerate(data.removeprefix(b"\xef\xbb\xbf").split(b"\n"), start=1):
        if not raw_bytes.strip():
            continue
        try:
            try:
                raw = raw_bytes.decode("utf-8")
            except UnicodeDecodeError as error:
                raise RowError(f"not valid UTF-8 (byte {error.start})") from None
            row = parse_row(raw, number, next_row)
            key = (row.batch, row.row)
            if key in first_line:
                raise RowError(
                    f"batch {row.batch} row {row.row} appears again (first on line {first_line[key]}): "
                    "each row of a batch once"
                )
            first_line[key] = number
        except RowError as error:
            errors.append(BadLine(number, f"line {number}: {error}"))
            continue
        rows.append(row)
    if not rows and not errors:
        raise TokstepError(f"batches file {path} has no rows")
    return BatchFile(str(path), tuple(rows), tuple(errors))


def _ints(value: Any, key: str) -> np.ndarray:
    return np.asarray(as_int_list(value, key, RowError), dtype=np.int64)  # (N,); [1, N] as written unwrapped


def _settings(value: Any) -> Settings:
    if value is None:
        return Settings()
    if not isinstance(value, dict):
        raise RowError(f'"{SETTINGS_KEY}" must be an object')
    use_cache = value.get("use_cache")
    if use_cache is not None and not isinstance(use_cache, bool):
        raise RowError(f'"{SETTINGS_KEY}.use_cache" must be true or false')
    steps = value.get("accumulation_steps")
    return Settings(
        attn_implementation=value.get("attn_implementation"),
        use_cache=use_cache,
        trainer=value.get("trainer"),
        loss=value.get("loss"),
        accumulation_steps=steps if isinstance(steps, int) else None,
    )


def parse_row(raw: str, line: int, next_row: dict[int, int] | None = None) -> BatchRow:
    """One JSON line -> a checked BatchRow (raises RowError with a one-line reason)."""
    try:
        data = json_text.loads(raw)
    except json.JSONDecodeError as error:
        raise RowError(f"not valid JSON: {error.msg} (column {error.colno})") from None
    except json_text.UnusableJson as error:
        raise RowError(f"the line {error}") from None
    except RecursionError:
        raise RowError("nested too deeply to read") from None
    if not isinstance(data, dict):
        raise RowError('must be a JSON object with "input_ids"')
    if "input_ids" not in data:
        raise RowError('no "input_ids"')
    ids = _ints(data["input_ids"], "input_ids")
    n = len(ids)
    if n < 2:
        raise RowError(
            f"input_ids has {n} token{'s' if n != 1 else ''}: nothing to predict (need at least 2)"
        )
    arrays: dict[str, np.ndarray | None] = {}
    for key in PER_TOKEN_KEYS:
        if data.get(key) is None:
            arrays[key] = None
            continue
        arrays[key] = array = _ints(data[key], key)
        if len(array) != n:
            raise RowError(f"{key} has {len(array)} entries but input_ids has {n}: they must match")
    mask = arrays["attention_mask"]
    if mask is not None and not np.isin(mask, (0, 1)).all():
        raise RowError("attention_mask must contain only 0 and 1")
    if mask is not None and not mask.any():
        raise RowError("attention_mask is all zeros: the row has no token")
    batch = data.get("batch", 0)
    if not isinstance(batch, int) or isinstance(batch, bool) or batch < 0:
        raise RowError('"batch" must be a non-negative integer')
    counter = next_row if next_row is not None else {}
    row = data.get("row", counter.get(batch, 0))
    if not isinstance(row, int) or isinstance(row, bool) or row < 0:
        raise RowError('"row" must be a non-negative integer')
    counter[batch] = row + 1
    cu = _cu_seq_lens(data, n)
    documents, source = _documents(n, mask, arrays["position_ids"], arrays["seq_idx"], cu)
    extra = tuple(
        (key, data[key])
        for key in ("max_length_q", "max_length_k")
        if isinstance(data.get(key), int) and not isinstance(data.get(key), bool)
    )
    labels = arrays["labels"] if arrays["labels"] is not None else ids.copy()
    return BatchRow(
        line=line,
        batch=batch,
        row=row,
        input_ids=ids,
        labels=labels,
        attention_mask=mask,
        position_ids=arrays["position_ids"],
        seq_idx=arrays["seq_idx"],
        cu_seq_lens=cu,
        documents=documents,
        documents_from=source,
        settings=_settings(data.get(SETTINGS_KEY)),
        extra=extra,
    )


def _cu_seq_lens(data: dict[str, Any], n: int) -> np.ndarray | None:
    found: dict[str, np.ndarray] = {}
    for key in CU_KEYS:
        if data.get(key) is None:
            continue
        cu = _ints(data[key], key)
        if len(cu) < 2 or cu[0] != 0:
            raise RowError(f"{key} must start at 0 and hold at least one document end")
        if (np.diff(cu) <= 0).any():
            raise RowError(
                f"{key} must be strictly increasing (a document of zero tokens at index {int(np.argmin(np.diff(cu)))})"
            )
        if cu[-1] != n:
            raise RowError(
                f"{key} ends at {int(cu[-1])} but the row has {n} tokens: the documents must add up to the row"
            )
        found[key] = cu
    if len(found) == 2 and not np.array_equal(found["cu_seq_lens_q"], found["cu_seq_lens_k"]):
        raise RowError(
            "cu_seq_lens_q and cu_seq_lens_k differ: a packed training row has the same boundaries for both"
        )
    return next(iter(found.values()), None)


def _starts(spans: list[tuple[int, int]]) -> list[int]:
    return [start for start, _ in spans[1:]]


def _documents(
    n: int,
    mask: np.ndarray | None,
    position_ids: np.ndarray | None,
    seq_idx: np.ndarray | None,
    cu: np.ndarray | None,
) -> tuple[tuple[tuple[int, int], ...], str]:
    """Document spans from cu_seq_lens, else seq_idx, else position_ids restarting at 0; checked for agreement."""
    attended = (
        np.flatnonzero(mask) if mask is not None else np.arange(n)
    )  # token indices that are not padding
    spans: list[tuple[int, int]] | None = None
    source = ""
    if cu is not None:
        spans = [(int(a), int(b)) for a, b in zip(cu[:-1], cu[1:], strict=True)]
        source = "cu_seq_lens_q"
    if seq_idx is not None:
        values = seq_idx[attended]
        if (np.diff(values) < 0).any():
            raise RowError("seq_idx must not decrease along the row (one run of equal values per document)")
        cuts = [int(attended[i + 1]) for i in np.flatnonzero(np.diff(values) != 0)]
        from_seq = _spans(attended, cuts)
        if spans is None:
            spans, source = from_seq, "seq_idx"
        elif _starts(from_seq) != _starts(spans):
            raise RowError(
                f"seq_idx starts documents at {_list(_starts(from_seq))} but cu_seq_lens at {_list(_starts(spans))}: "
                "they must agree"
            )
    if position_ids is not None:
        values = position_ids[attended]
        if values[0] != 0:
            raise RowError(f"position_ids start at {int(values[0])}, not 0 (token {int(attended[0])})")
        step = np.diff(values)
        bad = np.flatnonzero((step != 1) & (values[1:] != 0))
        if bad.size:
            i = int(attended[bad[0] + 1])
            raise RowError(
                f"position_ids jump from {int(values[bad[0]])} to {int(values[bad[0] + 1])} at token {i}: "
                "within a document they must count up by 1, and restart at 0 where a document starts"
            )
        cuts = [int(attended[i + 1]) for i in np.flatnonzero(values[1:] == 0)]
        from_positions = _spans(attended, cuts)
        if spans is None:
            spans, source = from_positions, "position_ids"
        elif _starts(from_positions) != _starts(spans):
            raise RowError(
                f"position_ids restart at tokens {_list(_starts(from_positions))} but {source} starts documents at "
                f"{_list(_starts(spans))}: they must agree"
            )
    if spans is None:
        spans = _spans(attended, [])
    return tuple(spans), source if len(spans) > 1 else ""


def _spans(attended: np.ndarray, cuts: list[int]) -> list[tuple[int, int]]:
    edges = [int(attended[0]), *cuts, int(attended[-1]) + 1]
    return [(a, b) for a, b in zip(edges[:-1], edges[1:], strict=True)]


def _list(values: list[int], most: int = 6) -> str:
    shown = ", ".join(map(str, values[:most]))
    return (shown + ", …") if len(values) > most else (shown or "none")


def row_sample(row: BatchRow, pad_id: int | None = None) -> Sample:
    """The row as a Sample: padding (attention_mask 0) and document starts are mask reasons of their own."""
    starts = {start for start, _ in row.documents[1:]}
    reasons: list[MaskReason] = []
    for i, (label, token) in enumerate(zip(row.labels.tolist(), row.input_ids.tolist(), strict=True)):
        if i == 0:
            reasons.append(MaskReason.FIRST)
        elif label != IGNORE_INDEX:
            reasons.append(MaskReason.SUPERVISED)
        elif row.attention_mask is not None and row.attention_mask[i] == 0:
            reasons.append(MaskReason.PAD)
        elif i in starts:
            reasons.append(MaskReason.DOCUMENT)
        elif pad_id is not None and token == pad_id:
            reasons.append(MaskReason.PAD)
        else:
            reasons.append(MaskReason.GIVEN)
    has_padding = row.attention_mask is not None and not row.attention_mask.all()
    notes = ()
    if row.packed:
        notes = (f"{len(row.documents)} packed documents (from {row.documents_from})",)
    return Sample(
        row.input_ids,
        row.labels,
        tuple(reasons),
        kind="batch row",
        name=row.name,
        attention_mask=row.attention_mask if has_padding else None,
        notes=notes,
    )
