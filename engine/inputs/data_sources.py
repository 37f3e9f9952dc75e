"""Open any data input by its form: a data file (data.py), compressed JSON Lines (compressed_data.py), an Arrow
file, a `save_to_disk` folder or a data set name in the local Hugging Face cache (hf_data.py).

Every reader is a `DataFile` (rows on demand, `len`, `complete`, `index_more`, `stamp`); callers use only that.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import tokstep.engine.inputs.hf_data as hf_data
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.compressed_data import CompressedJsonlFile, compression_of
from tokstep.engine.inputs.data import Columns, DataFile, open_data

PLAIN_SUFFIXES = {".jsonl", ".ndjson", ".json", ".parquet"}  # data.open_data's own
KNOWN_SUFFIXES = PLAIN_SUFFIXES | {".arrow", ".gz", ".zst", ".zstd"}


def open_source(
    path: str | Path, columns: Columns | None = None, split: str | None = None, **options: Any
) -> DataFile:
    """Open a .jsonl/.ndjson (also .gz/.zst), .json, .parquet or .arrow file, a `save_to_disk` folder (`split`
    picks a DatasetDict's split) or a cached hub data set by name (`org/name`). `options` (bos, eos, truncate,
    eot, inserted) reach every row. Errors are one line."""
    target = Path(path).expanduser()
    columns = columns or Columns()
    kwargs = {"columns": columns, "options": options}
    if not target.exists():
        if hf_data.looks_like_hub_name(str(path)) and target.suffix.lower() not in KNOWN_SUFFIXES:
            return hf_data.open_cached(str(path), split, kwargs)
        raise TokstepError(f"data file not found: {path}")
    if target.is_dir():
        if hf_data.is_saved_dataset(target):
            return hf_data.open_saved(target, split, kwargs)
        raise TokstepError(
            f"{path} is a folder but not a saved data set (no state.json or dataset_dict.json): "
            "give a data file or a save_to_disk folder"
        )
    if not target.is_file():  # /dev/zero (or a link to it), a FIFO: never read without end
        raise TokstepError(f"{path} is not a regular file: give a .jsonl, .json or .parquet file")
    if split is not None:
        raise TokstepError(f"--split picks a split of a data set folder or cached name, not of {path}")
    suffix = target.suffix.lower()
    compression = compression_of(target)
    try:
        if compression is not None:
            return CompressedJsonlFile(target, compression, **kwargs)
        if suffix == ".arrow":
            return hf_data.open_arrow(target, kwargs)
    except OSError as error:
        raise TokstepError(f"cannot read data file {path}: {error.strerror or error}") from None
    if suffix in PLAIN_SUFFIXES:
        return open_data(path, columns, **options)
    raise TokstepError(
        f"{path}: unsupported data format {suffix or '(no extension)'}: use .jsonl (.gz/.zst), .json, "
        ".parquet, .arrow or a save_to_disk folder"
    )
