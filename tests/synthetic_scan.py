"""A finished scan folder of synthetic rows in `tokstep scan`'s schema and layout (manifest + shards holding
every `world`-th chunk of rows, as torchrun ranks write them, in row groups of the merge's size), with ties,
nulls, NaN and errors: the scan browser's tests compare
the query engine with the in-memory reference on it, and `bench.scan_browser` writes 10M rows with it."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokstep.engine.scan.files import MANIFEST, shard_name
from tokstep.engine.scan.run import FINDING_STRUCT, LINT_BITS, SHARD_ROW_GROUP, lint_bits, schema

FORMS = np.array(["text", "prompt", "chat", "ids"])
LINTS = [[], [], [], [], [], [], ["eos-masked"], ["no-eos"], ["eos-masked", "no-bos"], ["bad-row"]]


def _lists(values: list[list], rows: np.ndarray, kind: pa.DataType) -> pa.Array:
    return pa.array([values[i] for i in rows], type=pa.list_(kind))


def _shard(rows: np.ndarray, rng: np.random.Generator) -> pa.Table:
    count = len(rows)
    loss = np.round(rng.gamma(2.0, 1.2, count), 2)  # rounded: many ties
    scored = rng.random(count) > 0.01
    loss_mask = ~scored
    loss[rng.random(count) < 0.001] = np.nan
    tokens = rng.integers(8, 2048, count)
    lint_pick = rng.integers(0, len(LINTS), count)
    lints = pa.array(np.array(LINTS, dtype=object)[lint_pick], type=pa.list_(pa.string()))
    errors_of = np.array([sum(1 for x in lint if x in ("eos-masked", "bad-row")) for lint in LINTS])
    warnings_of = np.array([sum(1 for x in lint if x in ("no-eos", "no-bos")) for lint in LINTS])
    worst = pa.FixedSizeListArray.from_arrays(pa.array(rng.integers(0, 2048, count * 3)), 3).cast(
        pa.list_(pa.int64())
    )
    columns = {
        "row": pa.array(rows, type=pa.int64()),
        "line": pa.array(rows + 1, type=pa.int64()),
        "form": pa.array(FORMS[rows % 4]),
        "error": pa.array(np.where(scored, None, "row 1: cannot tokenize"), type=pa.string()),
        "tokens": pa.array(tokens, mask=loss_mask, type=pa.int64()),
        "supervised": pa.array(tokens // 2, mask=loss_mask, type=pa.int64()),
        "loss": pa.array(loss, mask=loss_mask, type=pa.float64()),
        "max_ce": pa.array(np.round(loss * 3, 1), mask=loss_mask, type=pa.float64()),
        "worst_t": worst,
        "worst_ce": worst.cast(pa.list_(pa.float64())),
        "worst_token": pa.array([["a", "b", "c"]] * count, type=pa.list_(pa.string())),
        "lints": lints,
        "lint_bits": pa.array(np.array([lint_bits(lint) for lint in LINTS])[lint_pick], type=pa.int64()),
        "lint_errors": pa.array(errors_of[lint_pick], type=pa.int64()),
        "lint_warnings": pa.array(warnings_of[lint_pick], type=pa.int64()),
        "lint_infos": pa.array(np.zeros(count, dtype=np.int64)),
        "findings": pa.array([[]] * count, type=pa.list_(FINDING_STRUCT())),
        "row_hash": pa.array([f"{int(r):032x}" for r in rows], type=pa.string()),
    }
    target = schema()
    for name in target.names:
        if name not in columns:
            columns[name] = pa.array(rng.integers(0, 3, count), type=pa.int64())
    return pa.table([columns[name] for name in target.names], schema=target)


def write_synthetic_scan(
    folder: Path, rows: int, shards: int = 2, seed: int = 0, chunk_rows: int = 1024, piece: int = 1_048_576
) -> Path:
    """`rows` rows in `shards` shards (rank r holds chunks r, r + shards, ... of `chunk_rows` rows, as `tokstep
    scan` deals them), written `piece` rows at a time in row groups of `SHARD_ROW_GROUP` (as its merge)."""
    rng = np.random.default_rng(seed)
    folder.mkdir(parents=True, exist_ok=True)
    names = [shard_name(rank, shards) for rank in range(shards)]
    chunk_of = np.arange(rows, dtype=np.int64) // chunk_rows
    for rank, name in enumerate(names):
        mine = np.flatnonzero(chunk_of % shards == rank).astype(np.int64)
        with pq.ParquetWriter(folder / name, schema()) as writer:
            for start in range(0, len(mine), piece):
                writer.write_table(_shard(mine[start : start + piece], rng), row_group_size=SHARD_ROW_GROUP)
    manifest = {
        "shards": names,
        "rows": rows,
        "lint_bits": list(LINT_BITS),
        "identity": {"model": "synthetic", "data": "synthetic.jsonl"},
    }
    (folder / MANIFEST).write_text(json.dumps(manifest), encoding="utf-8")
    return folder
