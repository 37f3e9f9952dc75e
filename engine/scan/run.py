"""`tokstep scan`: score every row of a data set — loss, worst positions, mask reasons, lints — into Parquet.

The rows are cut into chunks of `chunk_rows`. Chunk c belongs to rank c % world_size (data parallel under
`torchrun` / `accelerate launch`: RANK, WORLD_SIZE, LOCAL_RANK from the environment). A chunk is tokenized
and linted (`lint_batch`), scored by a batched forward with length bucketing (`batched.score_batch`), and
committed as its own Parquet file, written under a temporary name and renamed: a killed scan leaves only
whole chunks, and the rerun of the same command skips those that read back whole. When every chunk is in,
each rank merges its chunks into one shard and rank 0 writes `manifest.json`. `scan.json` (the scan's
identity: data file size/mtime, the model folder's files with size/mtime, the options) is written once the
model has loaded, so a failed start leaves nothing, and a rerun with other weights or data is refused instead
of mixing rows. `--out` is locked (flock) while a scan writes it: a second scan into it is refused.
"""

from __future__ import annotations

import contextlib
import datetime
import fcntl
import json
import math
import os
import shutil
import time
from collections.abc import Callable, Iterable
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from tokstep.engine.atomic import write_atomic
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import DataFile, DataRow
from tokstep.engine.inputs.sample import MaskReason, Sample
from tokstep.engine.lints.batch import BatchTokenizer, lint_rows
from tokstep.engine.lints.catalogue import LINTS
from tokstep.engine.lints.duplicates import DuplicateRows
from tokstep.engine.lints.finding_records import finding_record
from tokstep.engine.lints.rows import RowLint
from tokstep.engine.model.inspector import token_bytes
from tokstep.engine.model.loading import LoadedModel
from tokstep.engine.model.tokens import make_visible
from tokstep.engine.scan.files import (
    CHUNKS,
    MANIFEST,
    PARAMETERS,
    SCAN_FORMAT,
    chunk_path,
    shard_name,
    write_json_atomic,
)

WORST = 5  # worst positions kept per row
# rows per Parquet row group in a shard: one group per 1,024-row chunk made a 10M-row scan 10,000 groups, and
# the browser's queries 5x slower (bench.scan_browser); 64Ki rows keep a merge's buffer to tens of MB
SHARD_ROW_GROUP = 65_536
MASK_COLUMNS = {reason: "masked_" + reason.name.lower() for reason in MaskReason if reason.counted is False}
# the `lint_bits` column: bit i set when lint LINT_BITS[i] fired (the manifest keeps this list), so that a
# filter on one lint reads an integer column, not every row's list of strings (5x faster at 10M rows)
LINT_BITS: tuple[str, ...] = tuple(LINTS)[:63]
LINT_BIT = {code: 1 << i for i, code in enumerate(LINT_BITS)}
Progress = Callable[[int, int], None]  # (rows done, tokens done) by this rank in this run


@dataclass(frozen=True)
class ScanConfig:
    """What decides a scan's result (stored in scan.json; a rerun must match) and how to run it."""

    data: str  # absolute path of the data file
    data_bytes: int
    data_mtime_ns: int
    model: str
    revision: str | None
    dtype: str
    columns: dict[str, Any]
    options: dict[str, Any]  # bos / eos / truncate / eot / inserted
    chunk_rows: int
    weights: Any = None  # loading.model_fingerprint: new weights saved into the same folder differ
    # how to run, not part of the identity
    batch_tokens: int = 16384
    extra: dict[str, Any] = field(default_factory=dict, compare=False)

    def identity(self) -> dict[str, Any]:
        return {
            "format": SCAN_FORMAT,
            "data": self.data,
            "data_bytes": self.data_bytes,
            "data_mtime_ns": self.data_mtime_ns,
            "model": self.model,
            "revision": self.revision,
            "dtype": self.dtype,
            "columns": self.columns,
            "options": self.options,
            "chunk_rows": self.chunk_rows,
            "weights": self.weights,
        }


@dataclass(frozen=True)
class Ranks:
    """This process's place in a data-parallel run (rank 0 of 1 when not launched by torchrun)."""

    rank: int = 0
    world: int = 1
    local: int = 0

    @property
    def distributed(self) -> bool:
        return self.world > 1


# ---------------------------------------------------------------- one row's record


def _piece(tokenizer: Any, token_id: int) -> str:
    if not 0 <= token_id < len(tokenizer):
        return f"<id {token_id}>"
    return make_visible(token_bytes(tokenizer, token_id).decode("utf-8", errors="backslashreplace"))


def lint_bits(codes: Iterable[str]) -> int:
    """The `lint_bits` of a row whose findings have these codes (codes not in `LINT_BITS` set no bit)."""
    bits = 0
    for code in codes:
        bits |= LINT_BIT.get(code, 0)
    return bits


def empty_record(row: DataRow, linted: RowLint | None, error: str | None) -> dict[str, Any]:
    findings = linted.findings if linted is not None else ()
    record: dict[str, Any] = {
        "row": row.index,
        "line": row.line,
        "form": row.form,
        "error": error,
        "tokens": linted.num_tokens if linted is not None else None,
        "supervised": linted.num_supervised if linted is not None else None,
        "loss": None,
        "max_ce": None,
        "worst_t": [],
        "worst_ce": [],
        "worst_token": [],
        "lints": [f.code for f in findings],
        "lint_bits": lint_bits(f.code for f in findings),
        "findings": [finding_record(f) for f in findings],
        "row_hash": linted.digest.hex() if linted is not None and linted.digest is not None else None,
        "lint_errors": sum(f.severity == "error" for f in findings),
        "lint_warnings": sum(f.severity == "warning" for f in findings),
        "lint_infos": sum(f.severity == "info" for f in findings),
    }
    sample = linted.sample if linted is not None else None
    counts = {reason: 0 for reason in MASK_COLUMNS}
    if sample is not None:
        for reason in sample.mask_reasons:
            if reason in counts:
                counts[reason] += 1
    record.update({MASK_COLUMNS[reason]: count for reason, count in counts.items()})
    return record


def scored_record(record: dict[str, Any], scores: Any, tokenizer: Any) -> dict[str, Any]:
    """Fill loss, max CE and the worst supervised positions from a row's per-position log q(target)."""
    bad = np.flatnonzero(~scores.finite)
    if bad.size:
        record["error"] = (
            f"NaN/inf logits at {bad.size} of {len(scores.finite)} positions (first at t={int(bad[0])}): "
            "try --dtype float32"
        )
        return record
    ce = -scores.logprob.astype(np.float64)  # (T,)
    supervised = np.flatnonzero(scores.supervised)
    if supervised.size:
        record["loss"] = float(ce[supervised].mean())
        order = supervised[np.argsort(-ce[supervised], kind="stable")][:WORST]
        record["max_ce"] = float(ce[order[0]])
        record["worst_t"] = order.tolist()
        record["worst_ce"] = ce[order].tolist()
        record["worst_token"] = [_piece(tokenizer, int(scores.targets[t])) for t in order]
    return record


# ---------------------------------------------------------------- a chunk


def prepare_chunk(tokenizer: BatchTokenizer, rows: list[DataRow]) -> list[RowLint]:
    """Tokenize and lint a chunk of rows (tokenizer only): runs in a thread beside the forward passes."""
    return lint_rows(tokenizer, rows)


def score_chunk(
    loaded: LoadedModel, linted: list[RowLint], batch_tokens: int, progress: Callable[[int, int], None]
) -> list[dict[str, Any]]:
    """Records for a chunk's rows: forward passes in length buckets; a bad row is a record with an error."""
    # lazy: loads torch
    from tokstep.engine.model.trace import check_sample_fits
    from tokstep.engine.scan.batched import length_buckets, score_batch

    records: list[dict[str, Any]] = []
    ready: list[tuple[int, Sample]] = []
    for i, result in enumerate(linted):
        error = result.row.error
        if error is None and result.sample is None:
            error = next(
                (f.message for f in result.findings if f.code in ("unbuildable", "bad-row")), "no sample"
            )
        if error is None:
            try:
                check_sample_fits(loaded, result.sample)  # type: ignore[arg-type]
            except TokstepError as problem:
                error = str(problem)
        records.append(empty_record(result.row, result, error))
        if error is None:
            ready.append((i, result.sample))  # type: ignore[arg-type]
    batches = length_buckets([len(s) for _, s in ready], batch_tokens)
    for batch in batches:
        samples = [ready[j][1] for j in batch]
        try:
            scores = score_batch(loaded, samples)
        except Exception as error:  # noqa: BLE001 - e.g. out of memory: retry one row at a time
            if len(batch) == 1:
                i = ready[batch[0]][0]
                records[i]["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
                progress(1, len(samples[0]))
                continue
            scores = _one_by_one(loaded, samples, records, [ready[j][0] for j in batch])
        for j, score in zip(batch, scores, strict=True):
            if score is not None:
                scored_record(records[ready[j][0]], score, loaded.tokenizer)
        progress(len(batch), sum(len(s) for s in samples))
    return records


def _one_by_one(
    loaded: LoadedModel, samples: list[Sample], records: list[dict[str, Any]], where: list[int]
) -> list[Any]:
    # lazy: loads torch
    from tokstep.engine.scan.batched import score_batch

    scores: list[Any] = []
    for sample, i in zip(samples, where, strict=True):
        try:
            scores.append(score_batch(loaded, [sample])[0])
        except Exception as error:  # noqa: BLE001
            records[i]["error"] = f"{type(error).__name__}: {error}".splitlines()[0]
            scores.append(None)
    return scores


# ---------------------------------------------------------------- the run


def _differs_message(out: Path, stored: dict[str, Any], config: ScanConfig) -> str:
    identity, before = config.identity(), stored.get("identity")
    if not isinstance(before, dict):
        what = "its scan.json cannot be read"
    else:
        differs = sorted(k for k in identity if before.get(k) != identity[k])
        if set(differs) - {"weights", "data_bytes", "data_mtime_ns"}:
            what = f"it holds a different scan ({', '.join(differs)} differ)"
        elif "weights" in differs and "weights" not in before:
            what = "it was started by an older tokstep, which did not record the model's files"
        elif "weights" in differs:
            what = f"the files of model {config.model} changed since it was scanned (new weights or config)"
        else:
            what = f"the data file {config.data} changed since it was scanned"
    return f"--out {out}: {what}: pick another folder, or pass --force to start it over"


@dataclass
class _Folder:
    """What rank 0 found in --out before any write: whether to start over, reuse, or resume."""

    verdict: str | None = None  # an error line, shared with every rank
    complete: dict[str, Any] | None = None  # the manifest of a finished, intact scan of this identity
    reset: bool = False  # --force over another scan (done once the model has loaded)
    damaged: list[str] = field(default_factory=list)  # shards of a finished scan that no longer read whole


def _inspect(out: Path, config: ScanConfig, force: bool) -> _Folder:
    """Look at --out without writing anything: a start that fails leaves the folder as it was."""
    params = out / PARAMETERS
    if out.exists() and not out.is_dir():
        raise TokstepError(f"--out {out} is a file, not a folder")
    if params.exists():
        try:
            stored = json.loads(params.read_text(encoding="utf-8"))
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as error:
            stored = {"unreadable": str(error)}
        if not isinstance(stored, dict) or stored.get("identity") != config.identity():
            if not force:
                raise TokstepError(_differs_message(out, stored if isinstance(stored, dict) else {}, config))
            return _Folder(reset=True)
        manifest = _read_manifest(out / MANIFEST)
        if manifest is None:
            return _Folder()
        shards = manifest.get("shards", [])
        damaged = [name for name in shards if _rows_in(out / name) is None]  # footer and row count only
        if damaged or sum(_rows_in(out / name) or 0 for name in shards) != manifest.get("rows"):
            return _Folder(damaged=damaged or list(shards))
        return _Folder(complete=manifest)
    if out.is_dir() and any(out.iterdir()) and not force:
        raise TokstepError(
            f"--out {out} is not empty and holds no tokstep scan: pick another folder, or pass --force"
        )
    return _Folder()


def _read_manifest(path: Path) -> dict[str, Any] | None:
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, json.JSONDecodeError):
        return None
    return manifest if isinstance(manifest, dict) else None


def _rows_in(path: Path) -> int | None:
    """How many rows a Parquet file holds, None when it is missing, truncated or not Parquet."""
    # lazy: loads pyarrow
    import pyarrow.parquet as pq

    try:
        return int(pq.ParquetFile(path).metadata.num_rows)
    except Exception:  # noqa: BLE001 - a torn or foreign file: redone
        return None


def _whole(path: Path, rows: range | None) -> bool:
    """A committed chunk or shard reads back whole (footer, schema, every page); `rows` the row numbers it
    must hold, in order (None: any)."""
    # lazy: loads pyarrow
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path, schema=schema())
    except Exception:  # noqa: BLE001 - truncated, corrupt or foreign: redone
        return False
    return rows is None or table.column("row").to_pylist() == list(rows)


def _reset(out: Path) -> None:
    """--force: remove what a previous scan wrote (only tokstep's own files)."""
    for name in (MANIFEST, PARAMETERS):
        with contextlib.suppress(FileNotFoundError):
            (out / name).unlink()
    shutil.rmtree(out / CHUNKS, ignore_errors=True)
    for shard in out.glob("shard-*.parquet"):
        shard.unlink()


def _lock(out: Path) -> int:
    """An advisory lock on the --out folder for the whole scan: a second scan into it is refused at once."""
    descriptor = os.open(out, os.O_RDONLY)
    try:
        fcntl.flock(descriptor, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        os.close(descriptor)
        raise TokstepError(
            f"--out {out} is in use by another tokstep scan: wait for it to finish, or pick another folder"
        ) from None
    except OSError:  # a file system without locks (some NFS): go on unlocked
        pass
    return descriptor


def _prepare(out: Path, config: ScanConfig, found: _Folder, locked_before: bool) -> None:
    """Rank 0, once the model has loaded and --out is locked: apply --force, write scan.json."""
    if not locked_before:  # another scan may have begun in the folder meanwhile
        found.reset = found.reset or _inspect(out, config, force=found.reset).reset
    if found.reset:
        _reset(out)
    if found.damaged:
        with contextlib.suppress(FileNotFoundError):
            (out / MANIFEST).unlink()
        for name in found.damaged:
            with contextlib.suppress(FileNotFoundError):
                (out / name).unlink()
    (out / CHUNKS).mkdir(exist_ok=True)
    for stale in (out / CHUNKS).glob(".*.tmp*"):  # left by a SIGKILLed run
        stale.unlink()
    if not (out / PARAMETERS).exists():
        write_json_atomic(out / PARAMETERS, {"identity": config.identity(), "started": _now()})


def _undo_start(out: Path, created: bool) -> None:
    """A run that created --out and committed no chunk leaves nothing behind."""
    if not created or any((out / CHUNKS).glob("chunk-*.parquet")) or (out / MANIFEST).exists():
        return
    with contextlib.suppress(OSError):
        (out / PARAMETERS).unlink()
        for stale in (out / CHUNKS).glob(".*"):
            stale.unlink()
        (out / CHUNKS).rmdir()
        out.rmdir()


def _barrier(ranks: Ranks) -> None:
    if ranks.distributed:
        # lazy: loads torch
        import torch.distributed as dist

        dist.barrier()


def _broadcast(ranks: Ranks, value: Any) -> Any:
    """Rank 0's value, shared with every rank (so all stop together, each with the reason)."""
    if not ranks.distributed:
        return value
    # lazy: loads torch
    import torch.distributed as dist

    box = [value]
    dist.broadcast_object_list(box, src=0)
    return box[0]


@dataclass
class ScanOutcome:
    out: Path
    rows: int
    chunks_done_before: int  # committed by an earlier, interrupted run
    already_complete: bool
    manifest: dict[str, Any] | None
    seconds: float = 0.0
    tokens: int = 0


def _chunk_rows(config: ScanConfig, total_rows: int, chunk: int) -> range:
    start = chunk * config.chunk_rows
    return range(start, min(start + config.chunk_rows, total_rows))


def run_scan(
    loaded_factory: Callable[[], LoadedModel],
    data: DataFile,
    out: Path,
    config: ScanConfig,
    ranks: Ranks = Ranks(),
    *,
    force: bool = False,
    on_start: Callable[[int, int], None] = lambda rows, chunks_done: None,
    progress: Progress = lambda rows, tokens: None,
) -> ScanOutcome:
    """Run (or resume) a scan. Every file is written atomically; OSError becomes one TokstepError line.
    Nothing is written before the model has loaded; committed chunks are checked whole before being kept."""
    started = time.monotonic()
    found = _Folder()
    lock: int | None = None
    created = False
    try:
        if ranks.rank == 0:
            try:
                if out.is_dir():
                    lock = _lock(out)
                found = _inspect(out, config, force)
            except TokstepError as error:
                found = _Folder(verdict=str(error))
            except OSError as error:
                found = _Folder(verdict=_disk_error(out, error))
        found = _broadcast(ranks, found)
        if found.verdict is not None:
            raise TokstepError(found.verdict)
        if found.complete is not None:
            return ScanOutcome(out, int(found.complete.get("rows", 0)), 0, True, found.complete)

        data.index_all()
        total_rows = len(data)
        if total_rows == 0:
            raise TokstepError(f"{data.path} has no rows")
        chunks = math.ceil(total_rows / config.chunk_rows)
        mine = [c for c in range(chunks) if c % ranks.world == ranks.rank]
        todo = [
            c
            for c in mine
            if found.reset or not _whole(chunk_path(out, c), _chunk_rows(config, total_rows, c))
        ]
        loaded = loaded_factory() if todo else None  # a model that fails to load leaves --out untouched
        verdict = None
        if ranks.rank == 0:
            try:
                created = not out.exists()
                out.mkdir(parents=True, exist_ok=True)
                locked_before = lock is not None
                lock = lock if lock is not None else _lock(out)
                _prepare(out, config, found, locked_before)
            except TokstepError as error:
                verdict = str(error)
            except OSError as error:
                verdict = _disk_error(out, error)
        verdict = _broadcast(ranks, verdict)
        if verdict is not None:
            raise TokstepError(verdict)
        _barrier(ranks)
        on_start(sum(len(_chunk_rows(config, total_rows, c)) for c in todo), len(mine) - len(todo))
        tokens = _run_chunks(loaded, data, out, config, todo, progress) if loaded is not None else 0
        try:
            _barrier(ranks)  # every rank's chunks are in
            shard = out / shard_name(ranks.rank, ranks.world)
            mine_rows = sum(len(_chunk_rows(config, total_rows, c)) for c in mine)
            _merge([chunk_path(out, c) for c in mine], shard, mine_rows)
            _barrier(ranks)
            manifest = None
            if ranks.rank == 0:
                manifest = _write_manifest(out, config, ranks, total_rows)
                shutil.rmtree(out / CHUNKS, ignore_errors=True)
        except OSError as error:
            raise TokstepError(_disk_error(out, error)) from None
    except BaseException:
        if ranks.rank == 0:
            _undo_start(out, created)
        raise
    finally:
        if lock is not None:
            os.close(lock)
    return ScanOutcome(
        out, total_rows, len(mine) - len(todo), False, manifest, time.monotonic() - started, tokens
    )


def _rows_of(data: DataFile, config: ScanConfig, chunk: int) -> list[DataRow]:
    start = chunk * config.chunk_rows
    return list(data.rows(start, start + config.chunk_rows))


def _run_chunks(
    loaded: LoadedModel,
    data: DataFile,
    out: Path,
    config: ScanConfig,
    todo: list[int],
    progress: Progress,
) -> int:
    """Score and commit each chunk; the next chunk is read and linted in a thread meanwhile."""
    tokenizer = BatchTokenizer(loaded.tokenizer)
    duplicates = DuplicateRows()  # this rank's rows in this run; the row_hash column finds all
    done_rows = done_tokens = 0

    def count(rows: int, tokens: int) -> None:
        nonlocal done_rows, done_tokens
        done_rows += rows
        done_tokens += tokens
        progress(done_rows, done_tokens)

    with ThreadPoolExecutor(1, thread_name_prefix="tokstep-scan-lint") as reader:

        def prepare(chunk: int) -> Future[list[RowLint]]:
            return reader.submit(lambda: prepare_chunk(tokenizer, _rows_of(data, config, chunk)))

        upcoming = prepare(todo[0])
        for number, chunk in enumerate(todo):
            linted = [duplicates.check(result) for result in upcoming.result()]
            if number + 1 < len(todo):
                upcoming = prepare(todo[number + 1])
            errors_before = done_rows
            records = score_chunk(loaded, linted, config.batch_tokens, count)
            skipped = len(records) - (done_rows - errors_before)  # rows with an error, not forwarded
            count(skipped, 0)
            try:
                write_atomic(chunk_path(out, chunk), lambda path, r=records: _write_parquet(path, r))
            except OSError as error:
                raise TokstepError(_disk_error(out, error)) from None
    return done_tokens


# ---------------------------------------------------------------- files


def _disk_error(out: Path, error: OSError) -> str:
    reason = error.strerror or str(error)
    return f"cannot write to {out}: {reason} (free space or fix permissions, then rerun the same command to resume)"


def _now() -> str:
    return datetime.datetime.now(datetime.timezone.utc).isoformat(timespec="seconds")


def FINDING_STRUCT() -> Any:  # noqa: N802 - a type, built on demand (pyarrow is imported lazily)
    """A finding as the scan stores it: the fields of engine.lints.finding_records (schema findings.schema.json)."""
    # lazy: loads pyarrow
    import pyarrow as pa

    return pa.struct(
        [
            pa.field("code", pa.string()),
            pa.field("severity", pa.string()),
            pa.field("positions", pa.list_(pa.int64())),
            pa.field("message", pa.string()),
            pa.field("fix", pa.string()),
            pa.field("convention", pa.string()),
        ]
    )


def schema() -> Any:
    # lazy: loads pyarrow
    import pyarrow as pa

    fields = [
        pa.field("row", pa.int64()),
        pa.field("line", pa.int64()),
        pa.field("form", pa.string()),
        pa.field("error", pa.string()),
        pa.field("tokens", pa.int64()),
        pa.field("supervised", pa.int64()),
        pa.field("loss", pa.float64()),
        pa.field("max_ce", pa.float64()),
        pa.field("worst_t", pa.list_(pa.int64())),
        pa.field("worst_ce", pa.list_(pa.float64())),
        pa.field("worst_token", pa.list_(pa.string())),
        pa.field("lints", pa.list_(pa.string())),
        pa.field("lint_bits", pa.int64()),  # bit i: lint LINT_BITS[i] fired (the manifest's "lint_bits")
        pa.field("lint_errors", pa.int64()),
        pa.field("lint_warnings", pa.int64()),
        pa.field("lint_infos", pa.int64()),
        pa.field("findings", pa.list_(FINDING_STRUCT())),
        pa.field(
            "row_hash", pa.string()
        ),  # input_ids + labels (lints.sample_digest, hex): equal rows, equal hashes
    ]
    fields += [pa.field(column, pa.int64()) for column in MASK_COLUMNS.values()]
    return pa.schema(fields)


def _write_parquet(path: Path, records: list[dict[str, Any]]) -> None:
    # lazy: loads pyarrow
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.Table.from_pylist(records, schema=schema()), path)


def _merge(chunk_files: list[Path], shard: Path, rows: int) -> None:
    """Concatenate this rank's chunks into its shard in row groups of `SHARD_ROW_GROUP` (streamed, atomic)."""
    # lazy: loads pyarrow
    import pyarrow as pa
    import pyarrow.parquet as pq

    def write(path: Path) -> None:
        with pq.ParquetWriter(path, schema()) as writer:
            pending: list[pa.Table] = []  # chunks read, not yet written: fewer than SHARD_ROW_GROUP rows
            for chunk in chunk_files:
                pending.append(pq.read_table(chunk, schema=schema()))
                buffered = pa.concat_tables(pending)
                whole = buffered.num_rows - buffered.num_rows % SHARD_ROW_GROUP
                if whole:
                    writer.write_table(buffered.slice(0, whole), row_group_size=SHARD_ROW_GROUP)
                pending = [buffered.slice(whole)]
            if pending and pending[0].num_rows:
                writer.write_table(pending[0], row_group_size=SHARD_ROW_GROUP)

    if not all(c.exists() for c in chunk_files) and shard.exists():
        if _rows_in(shard) == rows:  # merged by an earlier run that stopped before the manifest
            return
        raise TokstepError(f"{shard.name} holds {_rows_in(shard)} rows, not {rows}: rerun with --force")
    if chunk_files and not all(c.exists() for c in chunk_files):
        missing = next(c for c in chunk_files if not c.exists())
        raise TokstepError(f"chunk {missing.name} is missing: rerun the same command")
    write_atomic(shard, write)


def _write_manifest(out: Path, config: ScanConfig, ranks: Ranks, total_rows: int) -> dict[str, Any]:
    # lazy: loads pyarrow
    import pyarrow.parquet as pq

    shards = [shard_name(r, ranks.world) for r in range(ranks.world)]
    counted = sum(pq.ParquetFile(out / s).metadata.num_rows for s in shards)
    if counted != total_rows:
        raise TokstepError(f"the shards hold {counted} rows, the data {total_rows}: rerun with --force")
    manifest = {
        "format": SCAN_FORMAT,
        "identity": config.identity(),
        "rows": total_rows,
        "world_size": ranks.world,
        "shards": shards,
        "columns": schema().names,
        "lint_bits": list(LINT_BITS),
        "finished": _now(),
        **config.extra,
    }
    write_json_atomic(out / MANIFEST, manifest)
    for stale in out.glob("shard-*.parquet"):  # merged by an interrupted run with another world size
        if stale.name not in shards:
            stale.unlink()
    return manifest


def init_ranks() -> Ranks:
    """Join the data-parallel group that torchrun / accelerate launch describe in the environment."""
    world = int(os.environ.get("WORLD_SIZE", "1") or 1)
    rank = int(os.environ.get("RANK", "0") or 0)
    local = int(os.environ.get("LOCAL_RANK", str(rank)) or 0)
    if world > 1:
        # lazy: loads torch
        import torch
        import torch.distributed as dist

        if not dist.is_initialized():
            cuda = torch.cuda.is_available()
            if cuda:
                torch.cuda.set_device(local)
            # a rank that finishes early waits at the final barrier for the others: allow a long wait
            dist.init_process_group("nccl" if cuda else "gloo", timeout=datetime.timedelta(hours=24))
    return Ranks(rank, world, local)


def finish_ranks(ranks: Ranks) -> None:
    if ranks.distributed:
        # lazy: loads torch
        import torch.distributed as dist

        if dist.is_initialized():
            dist.destroy_process_group()


def device_for(ranks: Ranks, device: str) -> str:
    """Under torchrun each rank takes the GPU of its LOCAL_RANK (unless --device names one)."""
    if ranks.distributed and device in ("auto", "cuda"):
        # lazy: loads torch
        import torch

        if torch.cuda.is_available():
            return f"cuda:{ranks.local}"
    return device
