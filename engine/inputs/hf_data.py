"""Hugging Face `datasets` as data: a `save_to_disk` folder, an Arrow file, or a data set in the local HF cache.

All three are memory-mapped Arrow tables: rows are read a slice at a time (`SLICE_ROWS`), so memory does not
grow with the data set. The hub cache is read offline, the way `datasets.load_dataset(name)` resolves a name
when `HF_HUB_OFFLINE=1` (its `Cache` builder: `<HF_DATASETS_CACHE>/<org>___<name>/<config>/<version>/<hash>/`).
`datasets` is optional (`pip install 'tokstep[datasets]'`); without it these inputs are a one-line error.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from pathlib import Path
from typing import Any

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import DataFile

SLICE_ROWS = 256  # rows converted to Python objects at a time
HUB_NAME = re.compile(r"^[A-Za-z0-9][\w.-]*(/[A-Za-z0-9][\w.-]*)?$")
NEEDS_DATASETS = "needs the Hugging Face `datasets` package: pip install 'tokstep[datasets]'"


class ArrowRows(DataFile):
    """The one reader for Arrow-backed data: `read(start, stop)` returns those rows as dicts."""

    def __init__(
        self,
        path: Path,
        format: str,
        length: int,
        read: Callable[[int, int], list[dict[str, Any]]],
        files: list[Path],
        **kwargs: Any,
    ) -> None:
        super().__init__(path, format, **kwargs)
        self._length, self._read, self.files = length, read, files
        self._cached: tuple[int, list[dict[str, Any]]] = (-1, [])

    def __len__(self) -> int:
        return self._length

    def _record(self, index: int) -> tuple[Any, int | None]:
        start = index - index % SLICE_ROWS
        if self._cached[0] != start:
            self._cached = (start, self._read(start, min(start + SLICE_ROWS, self._length)))
        return self._cached[1][index - start], None

    def stamp(self) -> tuple[int, int]:
        """(bytes, newest mtime in ns) of the Arrow files: a changed data set is a different scan."""
        stats = [file.stat() for file in self.files]
        return sum(s.st_size for s in stats), max((s.st_mtime_ns for s in stats), default=0)


def _datasets() -> Any:
    try:
        # lazy: loads datasets (optional), pyarrow
        import datasets
    except ImportError:
        raise TokstepError(f"reading Hugging Face data sets {NEEDS_DATASETS}") from None
    return datasets


def _from_dataset(path: Path, format: str, dataset: Any, kwargs: dict[str, Any]) -> ArrowRows:
    """A `datasets.Dataset` (memory-mapped): slices read through its own arrow formatting."""
    arrow = dataset.with_format("arrow")
    files = [Path(f["filename"]) for f in dataset.cache_files]
    return ArrowRows(path, format, len(dataset), lambda a, b: arrow[a:b].to_pylist(), files, **kwargs)


def _pick_split(splits: dict[str, Any], split: str | None, where: str) -> Any:
    names = ", ".join(splits)
    if split is None:
        if len(splits) == 1:
            return next(iter(splits.values()))
        raise TokstepError(f"{where} has the splits {names}: choose one with --split")
    if split not in splits:
        raise TokstepError(f"{where} has no split {split!r} (it has: {names})")
    return splits[split]


def is_saved_dataset(folder: Path) -> bool:
    """A folder written by `Dataset.save_to_disk` or `DatasetDict.save_to_disk`."""
    return (folder / "state.json").is_file() or (folder / "dataset_dict.json").is_file()


def open_saved(folder: Path, split: str | None, kwargs: dict[str, Any]) -> ArrowRows:
    """A `save_to_disk` folder: a Dataset, or one split of a DatasetDict."""
    datasets = _datasets()
    try:
        loaded = datasets.load_from_disk(str(folder))
    except Exception as error:  # noqa: BLE001 - any datasets failure is one line
        raise TokstepError(f"cannot read the saved data set {folder}: {error}") from None
    if isinstance(loaded, datasets.DatasetDict):
        loaded = _pick_split(dict(loaded), split, str(folder))
    elif split is not None:
        raise TokstepError(f"{folder} is one Dataset, not a DatasetDict: drop --split {split}")
    return _from_dataset(folder, "datasets", loaded, kwargs)


def open_arrow(path: Path, kwargs: dict[str, Any]) -> ArrowRows:
    """An .arrow file: the IPC stream `datasets` writes, or an IPC (Feather v2) file; memory-mapped."""
    # lazy: loads pyarrow
    import pyarrow as pa

    try:
        source = pa.memory_map(str(path))
        try:
            table = pa.ipc.open_stream(source).read_all()
        except pa.ArrowInvalid:
            table = pa.ipc.open_file(pa.memory_map(str(path))).read_all()
    except Exception as error:  # noqa: BLE001
        raise TokstepError(f"cannot read Arrow file {path}: {error}") from None
    return ArrowRows(
        path, "arrow", table.num_rows, lambda a, b: table.slice(a, b - a).to_pylist(), [path], **kwargs
    )


def looks_like_hub_name(name: str) -> bool:
    return bool(HUB_NAME.match(name))


def open_cached(name: str, split: str | None, kwargs: dict[str, Any]) -> ArrowRows:
    """A hub data set already in the local cache, found offline as `load_dataset(name)` finds it."""
    try:
        # lazy: loads datasets (optional)
        import datasets
    except ImportError:
        raise TokstepError(
            f"data file not found: {name} (looking it up as a cached Hugging Face data set {NEEDS_DATASETS})"
        ) from None
    from datasets.packaged_modules.cache.cache import Cache  # lazy: loads datasets

    cache = Path(datasets.config.HF_DATASETS_CACHE).expanduser()
    verbosity = datasets.logging.get_verbosity()
    datasets.logging.set_verbosity_error()  # not its "Found the latest cached dataset..." on stderr
    try:
        builder = Cache(
            cache_dir=str(cache), dataset_name=name.split("/")[-1], repo_id=name, version="auto", hash="auto"
        )
    except ValueError as error:
        if "Couldn't find cache" in str(error) and "Available configs" not in str(error):
            raise TokstepError(
                f"{name}: no such file, and not a data set in the Hugging Face cache ({cache}); tokstep reads "
                f'the cache offline: run datasets.load_dataset("{name}") once where the hub is reachable'
            ) from None
        raise TokstepError(f"{name}: {' '.join(str(error).split())}") from None
    finally:
        datasets.logging.set_verbosity(verbosity)
    splits = dict(builder.info.splits or {})
    chosen = _pick_split(splits, split, name) if splits else split
    try:
        dataset = builder.as_dataset(split=getattr(chosen, "name", chosen))
    except Exception as error:  # noqa: BLE001
        raise TokstepError(f"cannot read the cached data set {name}: {error}") from None
    return _from_dataset(Path(name), "datasets", dataset, kwargs)
