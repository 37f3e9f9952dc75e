"""`duplicate-rows` over a whole scan, as `tokstep lint` finds it over the file.

Each rank scores its own chunks, and a resumed run only the chunks left, so the finding each wrote sees only
the rows that run saw. Once every shard is merged, rank 0 works out the finding again from every row's
`row_hash` (in row order: the first row of a hash is the original, each later one a copy) and rewrites the
shards whose rows' findings change. Two passes over `row_hash`, a batch at a time: a 64-bit key per row finds
the rows that may repeat, then their whole hashes decide; nothing is rewritten when every rank saw every row
(one process, one run).
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np

from tokstep.engine.atomic import write_atomic
from tokstep.engine.inputs.data import DataRow
from tokstep.engine.lints.catalogue import SEVERITIES, Finding
from tokstep.engine.lints.duplicates import duplicate_finding
from tokstep.engine.lints.finding_records import finding_record

CODE = "duplicate-rows"


def expected_duplicates(rows: list[int], lines: list[int | None], hashes: list[str]) -> dict[int, Finding]:
    """Row -> the `duplicate-rows` finding it should carry (as `DuplicateRows` gives it in file order), over rows whose hash may repeat (every row that
    shares a hash with another must be among them); rows that are no copy are absent."""
    first: dict[str, str] = {}
    copies: dict[str, int] = {}
    expected: dict[int, Finding] = {}
    for i in sorted(range(len(rows)), key=rows.__getitem__):
        digest, where = hashes[i], DataRow(rows[i], lines[i], None).where
        if digest not in first:
            first[digest] = where
            continue
        copies[digest] = copies.get(digest, 0) + 1
        expected[rows[i]] = duplicate_finding(first[digest], copies[digest])
    return expected


def settle_duplicates(out: Path, shards: list[str], *, bit: int, row_group: int) -> int:
    """Make every shard's `duplicate-rows` findings those of the whole scan (`bit`: the finding's bit in
    `lint_bits`; shards are rewritten in row groups of `row_group`); returns the rows changed."""
    keys, flagged = [], []
    for shard in shards:  # pass 1: a 64-bit key per row (its hash's first 16 hex digits), a batch at a time
        for batch in _batches(out / shard, ["row", "row_hash", "lint_bits"]):
            rows = batch.column(0).to_numpy()
            keys.append(_prefix_keys(batch.column(1)))
            flagged.append(rows[(batch.column(2).to_numpy(zero_copy_only=False) & bit) != 0])
    every = np.concatenate(keys) if keys else np.zeros(0, np.uint64)
    values, counts = np.unique(every[every != NO_HASH], return_counts=True)
    repeated = values[counts > 1]  # keys shared by two rows or more: their rows are the candidates
    rows_of: list[int] = []
    lines_of: list[int | None] = []
    hashes_of: list[str] = []
    for shard in shards:  # pass 2: the candidates' rows, lines and whole hashes
        for batch in _batches(out / shard, ["row", "line", "row_hash"]):
            mine = np.flatnonzero(np.isin(_prefix_keys(batch.column(2)), repeated))
            if mine.size:
                picked = batch.take(mine)
                rows_of += picked.column(0).to_pylist()
                lines_of += picked.column(1).to_pylist()
                hashes_of += picked.column(2).to_pylist()
    expected = expected_duplicates(rows_of, lines_of, hashes_of)
    touched = set(expected) | {int(r) for part in flagged for r in part}  # rows that carry it, or should
    if not touched:
        return 0
    return sum(_rewrite(out / shard, touched, expected, bit, row_group) for shard in shards)


NO_HASH = np.uint64(0)  # the key of a row without a hash (it could not be built): never a duplicate
_HEX = np.full(256, 255, dtype=np.uint8)
_HEX[np.frombuffer(b"0123456789abcdef", np.uint8)] = np.arange(16, dtype=np.uint8)


def _batches(shard: Path, columns: list[str]) -> Any:
    # lazy: loads pyarrow
    import pyarrow.parquet as pq

    return pq.ParquetFile(shard).iter_batches(batch_size=1 << 18, columns=columns)


def _prefix_keys(hashes: Any) -> np.ndarray:
    """(n,) uint64: each `row_hash`'s first 16 hex digits as a number, NO_HASH where there is none (a key
    shared by chance is told apart by the whole hash afterwards)."""
    # lazy: loads pyarrow
    import pyarrow.compute as pc

    texts = np.array(pc.fill_null(hashes, "").to_numpy(zero_copy_only=False), dtype="S32")  # (n,) b"" if none
    digits = _HEX[texts.view(np.uint8).reshape(len(texts), 32)[:, :16]].astype(np.uint64)  # (n, 16)
    keys = np.zeros(len(texts), dtype=np.uint64)
    for column in range(16):
        keys = (keys << np.uint64(4)) | (digits[:, column] & np.uint64(15))
    keys[texts == b""] = NO_HASH
    return keys


def _rewrite(shard: Path, touched: set[int], expected: dict[int, Finding], bit: int, row_group: int) -> int:
    """Rewrite `shard` when touched rows' findings change, streaming its row groups (only the changed ones
    are rebuilt and held); returns the rows changed."""
    # lazy: loads pyarrow
    import pyarrow as pa
    import pyarrow.parquet as pq

    source = pq.ParquetFile(shard)
    rebuilt: dict[int, pa.Table] = {}  # row group index -> its new rows
    changed = 0
    for index in range(source.metadata.num_row_groups):
        rows = source.read_row_group(index, columns=["row"]).column(0).to_pylist()
        if not touched.intersection(rows):
            continue
        records = source.read_row_group(index).to_pylist()
        settled = sum(_settle(r, expected.get(r["row"]), bit) for r in records if r["row"] in touched)
        if settled:
            changed += settled
            rebuilt[index] = pa.Table.from_pylist(records, schema=source.schema_arrow)
    if changed:

        def write(path: Path) -> None:
            with pq.ParquetWriter(path, source.schema_arrow) as writer:
                for index in range(source.metadata.num_row_groups):
                    group = rebuilt[index] if index in rebuilt else source.read_row_group(index)
                    writer.write_table(group, row_group_size=row_group)

        write_atomic(shard, write)
    return changed


def _settle(record: dict[str, Any], found: Finding | None, bit: int) -> int:
    """Give `record` the one `duplicate-rows` finding `found` (or none); 1 if that changed it."""
    kept = [f for f in record["findings"] if f["code"] != CODE]
    if found is not None:
        kept.append(finding_record(found))
    kept.sort(key=lambda f: SEVERITIES.index(f["severity"]))  # errors first, as the lints order them
    if kept == record["findings"]:
        return 0
    record["findings"] = kept
    record["lints"] = [f["code"] for f in kept]
    record["lint_bits"] = (record["lint_bits"] | bit) if found is not None else (record["lint_bits"] & ~bit)
    for severity in SEVERITIES:
        record[f"lint_{severity}s"] = sum(f["severity"] == severity for f in kept)
    return 1
