"""Read training data files (JSONL / JSON / Parquet) row by row, without loading a large file into memory.
Every other input (compressed JSONL, Arrow, `datasets`, the HF cache) is opened by data_sources.open_source.

A JSONL file is indexed by line offsets (numpy, a few MiB at a time), so a 1 GB file opens at once and
its rows are read on demand; `DataFile.index_more()` extends the index in the background. Each row
becomes a `SampleSpec` in whichever form it has (text; prompt + completion/answer; messages; input_ids +
labels), or a `DataRow` with an error and its line number: one bad row never stops the others.
"""

from __future__ import annotations

import copy
import json
import threading
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

import tokstep.engine.inputs.json_text as json_text
from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.spec import SampleSpec

SCAN_BYTES = 16 << 20  # bytes of a JSONL file indexed per step
WHOLE_JSON_LIMIT = 256 << 20  # a .json file larger than this is read as JSON Lines only
NESTED_TOO_DEEPLY = "nested too deeply to read (JSON nesting beyond Python's recursion limit)"
WHITESPACE = b" \t\r\n\f\v"
SHAREGPT_ROLES = {
    "human": "user",
    "user": "user",
    "gpt": "assistant",
    "assistant": "assistant",
    "system": "system",
}


@dataclass(frozen=True)
class Columns:
    """Which column holds what (the CLI's --text-column, --prompt-column... flags)."""

    text: str = "text"
    prompt: str = "prompt"
    answer: tuple[str, ...] = ("completion", "answer", "response", "output")
    messages: tuple[str, ...] = ("messages", "conversations")
    input_ids: str = "input_ids"
    labels: str = "labels"


@dataclass(frozen=True)
class DataRow:
    """One row of a data file: a sample spec, or why it could not be read."""

    index: int  # 0-based row number
    line: int | None  # 1-based line in the file (JSONL / JSON), None for Parquet
    spec: SampleSpec | None
    error: str | None = None

    @property
    def where(self) -> str:
        return f"line {self.line}" if self.line is not None else f"row {self.index + 1}"

    @property
    def form(self) -> str:
        """What kind of sample the row holds: ids, chat, prompt+answer, text; `error` if unreadable."""
        spec = self.spec
        if spec is None:
            return "error"
        if spec.ids is not None:
            return "ids"
        if spec.chat is not None:
            return "chat"
        return "prompt+answer" if spec.prompt is not None else "text"


def _messages(value: Any, column: str) -> tuple[dict[str, Any], ...]:
    if not isinstance(value, list) or not value:
        raise TokstepError(f'"{column}" must be a non-empty list of messages')
    out = []
    for message in value:
        if isinstance(message, dict) and "from" in message and "value" in message and "role" not in message:
            role = SHAREGPT_ROLES.get(str(message["from"]), str(message["from"]))
            message = {"role": role, "content": message["value"]}
        out.append(message)
    return tuple(out)


def row_to_spec(record: Any, columns: Columns = Columns(), name: str = "row", **options: Any) -> SampleSpec:
    """Turn one record into a SampleSpec; `options` (bos, eos, truncate) pass through. Raises TokstepError."""
    if not isinstance(record, dict):
        raise TokstepError(f"the row is a JSON {type(record).__name__}, not an object with named columns")
    common = {"name": name, **options}
    messages_column = next((c for c in columns.messages if record.get(c) is not None), None)
    if messages_column is not None:
        return SampleSpec(chat=_messages(record[messages_column], messages_column), **common)
    if record.get(columns.input_ids) is not None:
        ids = {"input_ids": record[columns.input_ids]}
        if record.get(columns.labels) is not None:
            ids["labels"] = record[columns.labels]
        if record.get("attention_mask") is not None:
            ids["attention_mask"] = record["attention_mask"]
        return SampleSpec(ids=ids, **common)
    answer_column = next((c for c in columns.answer if record.get(c) is not None), None)
    if record.get(columns.prompt) is not None and answer_column is not None:
        prompt, answer = record[columns.prompt], record[answer_column]
        if isinstance(prompt, list) and isinstance(answer, list):  # TRL's conversational prompt-completion
            return SampleSpec(chat=_messages(prompt + answer, f"{columns.prompt}+{answer_column}"), **common)
        if not isinstance(prompt, str) or not isinstance(answer, str):
            raise TokstepError(f'"{columns.prompt}" and "{answer_column}" must both be strings')
        return SampleSpec(prompt=prompt, answer=answer, **common)
    if record.get(columns.text) is not None:
        if not isinstance(record[columns.text], str):
            raise TokstepError(f'"{columns.text}" must be a string')
        return SampleSpec(text=record[columns.text], **common)
    have = ", ".join(sorted(map(str, record))) or "none"
    raise TokstepError(
        f"no sample in this row: expected {columns.text}, {columns.prompt} + {'/'.join(columns.answer)}, "
        f"{'/'.join(columns.messages)} or {columns.input_ids} (it has: {have})"
    )


@dataclass
class DataFile:
    """Rows of a data file, read on demand. `len()` counts the rows indexed so far (see `complete`)."""

    path: Path
    format: str  # "jsonl" | "json" | "parquet"
    columns: Columns = field(default_factory=Columns)
    options: dict[str, Any] = field(default_factory=dict)  # bos / eos / truncate for every row

    def __len__(self) -> int:
        raise NotImplementedError

    @property
    def complete(self) -> bool:
        return True

    def index_more(self) -> bool:
        """Index another step of the file; True once the whole file is indexed."""
        return True

    def index_all(self) -> None:
        while not self.index_more():
            pass

    def _record(self, index: int) -> tuple[Any, int | None]:
        raise NotImplementedError

    def row(self, index: int) -> DataRow:
        """Row `index` (0-based), indexing further into the file if it is not reached yet."""
        while index >= len(self) and not self.complete:
            self.index_more()
        if not 0 <= index < len(self):
            raise IndexError(f"row {index} outside 0..{len(self) - 1}")
        try:
            record, line = self._record(index)
        except _BadRow as bad:
            return DataRow(index, bad.line, None, bad.message)
        name = f"{self.path.name}:{line}" if line is not None else f"{self.path.name}#{index + 1}"
        try:
            return DataRow(index, line, row_to_spec(record, self.columns, name, **self.options))
        except TokstepError as error:
            return DataRow(index, line, None, str(error))
        except RecursionError:
            return DataRow(index, line, None, NESTED_TOO_DEEPLY)
        except Exception as error:  # noqa: BLE001 - one odd row must never stop the others
            return DataRow(index, line, None, f"cannot read this row: {type(error).__name__}: {error}")

    def record(self, index: int) -> Any:
        """Row `index` as stored (the JSON object or Parquet row); None where it cannot be read."""
        while index >= len(self) and not self.complete:
            self.index_more()
        if not 0 <= index < len(self):
            return None
        try:
            return self._record(index)[0]
        except _BadRow:
            return None

    def rows(self, start: int = 0, stop: int | None = None) -> Iterator[DataRow]:
        """Rows start..stop (indexing further as needed; stop=None: to the end of the file)."""
        index = start
        while stop is None or index < stop:
            while index >= len(self) and not self.complete:
                self.index_more()
            if index >= len(self):
                return
            yield self.row(index)
            index += 1

    def close(self) -> None:
        pass

    def reopened(self) -> DataFile | None:
        """This reader with its own file handle, for another (forked) process to read rows from; None when the
        rows cannot be read that way (the caller then hands them over itself)."""
        return None

    @property
    def has_lines(self) -> bool:
        """Rows are numbered by their line in the file (JSON Lines, JSON), not by row (Arrow, Parquet)."""
        return self.format.startswith("json")

    def stamp(self) -> tuple[int, int]:
        """(bytes, mtime in ns) of what the rows come from: a changed data set is a different scan."""
        stat = self.path.stat()
        return stat.st_size, stat.st_mtime_ns


class _BadRow(Exception):
    def __init__(self, line: int | None, message: str) -> None:
        super().__init__(message)
        self.line, self.message = line, message


MAX_ROW_BYTES = (
    16 << 20
)  # one JSONL row; more is not a training sample (and would take gigabytes to tokenize)


class JsonlFile(DataFile):
    """JSON Lines: one object per line, indexed by byte offsets; blank lines are skipped."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, "jsonl", **kwargs)
        self._handle = path.open("rb")
        self._lock = threading.Lock()  # indexing (a worker) and reading rows share the handle
        self._size = path.stat().st_size
        self._starts = np.empty(1024, dtype=np.int64)  # (capacity,) byte offset of each row's line
        self._lines = np.empty(1024, dtype=np.int64)  # (capacity,) its 1-based line number
        self._count = 0
        self._scanned = 0  # bytes indexed so far
        self._line_start = 0  # where the line being scanned began
        self._line_number = 1

    def __len__(self) -> int:
        return self._count

    @property
    def complete(self) -> bool:
        return self._scanned >= self._size and self._line_start >= self._size

    @property
    def progress(self) -> float:
        return 1.0 if not self._size else min(self._scanned / self._size, 1.0)

    def _append(self, starts: np.ndarray, lines: np.ndarray) -> None:
        need = self._count + len(starts)
        if need > len(self._starts):
            capacity = max(need, 2 * len(self._starts))
            self._starts = np.resize(self._starts, capacity)
            self._lines = np.resize(self._lines, capacity)
        self._starts[self._count : need] = starts
        self._lines[self._count : need] = lines
        self._count = need

    def index_more(self) -> bool:
        if self.complete:
            return True
        with self._lock:
            self._handle.seek(self._scanned)
            chunk = self._handle.read(SCAN_BYTES)
        newlines = np.flatnonzero(np.frombuffer(chunk, dtype=np.uint8) == 0x0A) + self._scanned  # (n,)
        self._scanned += len(chunk)
        if len(newlines):
            starts = np.concatenate([[self._line_start], newlines[:-1] + 1])  # (n,) each line's first byte
            numbers = self._line_number + np.arange(len(newlines))
            keep = newlines - starts > 0  # skip empty lines
            keep &= ~self._whitespace_only(chunk, starts, newlines)  # and whitespace-only ones
            self._append(starts[keep], numbers[keep])
            self._line_start = int(newlines[-1]) + 1
            self._line_number += len(newlines)
        if self._scanned >= self._size and self._line_start < self._size:  # a last line without "\n"
            last = np.array([self._line_start])
            if not self._whitespace_only(chunk, last, np.array([self._size]))[0]:
                self._append(last, np.array([self._line_number]))
            self._line_start = self._size
        return self.complete

    def _whitespace_only(self, chunk: bytes, starts: np.ndarray, ends: np.ndarray) -> np.ndarray:
        """(n,) bool: which lines [start, end) hold only whitespace. Only lines that begin with whitespace
        are looked at (rare in JSONL), so a normal file costs one vectorised comparison."""
        base = self._scanned - len(chunk)  # file offset of chunk[0]
        out = np.zeros(len(starts), dtype=bool)
        if not len(starts):
            return out
        inside = starts >= base
        first = np.full(len(starts), 0x20, dtype=np.uint8)
        first[inside] = np.frombuffer(chunk, dtype=np.uint8)[starts[inside] - base]
        candidates = np.flatnonzero(np.isin(first, np.frombuffer(WHITESPACE, dtype=np.uint8)))
        for i in candidates:
            start, end = int(starts[i]), int(ends[i])
            if start >= base:
                out[i] = not chunk[start - base : end - base].strip(WHITESPACE)
            else:  # the line began in an earlier chunk: read it back piece by piece
                out[i] = self._blank_in_file(start, end)
        return out

    def _blank_in_file(self, start: int, end: int) -> bool:
        with self._lock:
            self._handle.seek(start)
            while start < end:
                piece = self._handle.read(min(1 << 20, end - start))
                if not piece or piece.strip(WHITESPACE):
                    return False
                start += len(piece)
        return True

    def _record(self, index: int) -> tuple[Any, int | None]:
        line = int(self._lines[index])
        with self._lock:
            self._handle.seek(int(self._starts[index]))
            raw = self._handle.readline(MAX_ROW_BYTES + 1)
        if len(raw) > MAX_ROW_BYTES:  # never read whole: that row alone is the error
            raise _BadRow(line, f"the row is larger than {MAX_ROW_BYTES >> 20} MiB: not read")
        try:
            text = raw.decode("utf-8").removeprefix("\ufeff")  # a byte-order mark (Windows editors)
        except UnicodeDecodeError:
            raise _BadRow(line, "not valid UTF-8") from None
        if not text.strip():
            raise _BadRow(line, "blank line")
        try:
            return json_text.loads(text), line
        except json.JSONDecodeError as error:
            raise _BadRow(line, f"not valid JSON: {error.msg} (column {error.colno})") from None
        except json_text.UnusableJson as error:
            raise _BadRow(line, f"the row {error}") from None
        except RecursionError:
            raise _BadRow(line, NESTED_TOO_DEEPLY) from None

    def reopened(self) -> JsonlFile | None:
        if type(self) is not JsonlFile:  # e.g. decompressed lines in an anonymous file: not reopened by path
            return None
        # the index so far is shared, not copied: entries below _count never change, and more indexing in
        # either writes the same offsets (of the same file) past it or grows into a new array of its own
        twin = copy.copy(self)
        twin._handle = self.path.open("rb")
        twin._lock = threading.Lock()
        return twin

    def close(self) -> None:
        with self._lock:
            self._handle.close()


class JsonArrayFile(DataFile):
    """A JSON array of rows (or one object), read whole; a broken element ends the list with an error row."""

    def __init__(self, path: Path, text: str, **kwargs: Any) -> None:
        super().__init__(path, "json", **kwargs)
        self._records: list[tuple[Any, int, str | None]] = []  # (record, line, error)
        decoder = json.JSONDecoder()
        stripped = text.lstrip()
        if not stripped.startswith("["):
            try:
                self._records.append((json_text.loads(text), 1, None))
            except json.JSONDecodeError as error:
                self._records.append(
                    (None, error.lineno, f"not valid JSON: {error.msg} (column {error.colno})")
                )
            except json_text.UnusableJson as error:
                self._records.append((None, 1, f"the row {error}"))
            except RecursionError:
                self._records.append((None, 1, NESTED_TOO_DEEPLY))
            return
        position, line, counted = text.index("[") + 1, 1, 0
        surrogates = json_text.may_hold_surrogates(text)
        while True:
            position = _skip_space(text, position)
            if position < len(text) and text[position] == "]":
                return
            line += text.count("\n", counted, position)
            counted = position
            try:
                record, position = decoder.raw_decode(text, position)
            except json.JSONDecodeError as error:
                message = f"not valid JSON: {error.msg} (the rest of the file is not read)"
                self._records.append((None, error.lineno, message))
                return
            except RecursionError:
                message = f"{NESTED_TOO_DEEPLY} (the rest of the file is not read)"
                self._records.append((None, line, message))
                return
            except ValueError as error:  # an integer of more than 4300 digits
                message = (
                    f"cannot read this row: {str(error).splitlines()[0]} (the rest of the file is not read)"
                )
                self._records.append((None, line, message))
                return
            try:
                if surrogates:
                    json_text.check_text(record, "the row")
                self._records.append((record, line, None))
            except json_text.UnusableJson as error:
                self._records.append((None, line, str(error)))
            position = _skip_space(text, position)
            if position < len(text) and text[position] == ",":
                position += 1
            elif position >= len(text) or text[position] != "]":
                lineno = text.count("\n", 0, position) + 1
                self._records.append((None, lineno, "not valid JSON: expected ',' or ']' between rows"))
                return

    def __len__(self) -> int:
        return len(self._records)

    def _record(self, index: int) -> tuple[Any, int | None]:
        record, line, error = self._records[index]
        if error is not None:
            raise _BadRow(line, error)
        return record, line


def _skip_space(text: str, position: int) -> int:
    while position < len(text) and text[position] in " \t\r\n":
        position += 1
    return position


class ParquetFile(DataFile):
    """Parquet via pyarrow, one row group in memory at a time."""

    def __init__(self, path: Path, **kwargs: Any) -> None:
        super().__init__(path, "parquet", **kwargs)
        try:
            # lazy: loads pyarrow
            import pyarrow.parquet as pq
        except ImportError:
            raise TokstepError("reading Parquet needs pyarrow: pip install pyarrow") from None
        try:
            self._file = pq.ParquetFile(path)
        except Exception as error:  # noqa: BLE001 - any pyarrow failure is one line
            raise TokstepError(f"cannot read Parquet file {path}: {error}") from None
        sizes = [self._file.metadata.row_group(g).num_rows for g in range(self._file.num_row_groups)]
        self._group_starts = np.cumsum([0, *sizes])  # (groups + 1,)
        self._cached: tuple[int, list[dict[str, Any]]] | None = None

    def __len__(self) -> int:
        return int(self._group_starts[-1])

    def _record(self, index: int) -> tuple[Any, int | None]:
        group = int(np.searchsorted(self._group_starts, index, side="right")) - 1
        if self._cached is None or self._cached[0] != group:
            try:
                self._cached = (group, self._file.read_row_group(group).to_pylist())
            except Exception as error:  # noqa: BLE001
                raise _BadRow(None, f"cannot read row group {group}: {error}") from None
        return self._cached[1][index - int(self._group_starts[group])], None


def open_data(path: str | Path, columns: Columns = Columns(), **options: Any) -> DataFile:
    """Open a data file by its extension (.jsonl/.ndjson, .json, .parquet). Errors are one line."""
    target = Path(path).expanduser()
    if not target.exists():
        raise TokstepError(f"data file not found: {path}")
    if target.is_dir():
        raise TokstepError(f"{path} is a folder: give a .jsonl, .json or .parquet file")
    if not target.is_file():  # /dev/zero (or a link to it), a FIFO: never read without end
        raise TokstepError(f"{path} is not a regular file: give a .jsonl, .json or .parquet file")
    suffix = target.suffix.lower()
    kwargs = {"columns": columns, "options": options}
    try:
        if suffix in (".jsonl", ".ndjson"):
            return JsonlFile(target, **kwargs)
        if suffix == ".parquet":
            return ParquetFile(target, **kwargs)
        if suffix == ".json":
            return _open_json(target, kwargs)
    except OSError as error:
        raise TokstepError(f"cannot read data file {path}: {error.strerror or error}") from None
    raise TokstepError(
        f"{path}: unsupported data format {suffix or '(no extension)'}: use .jsonl, .json or .parquet"
    )


def _open_json(path: Path, kwargs: dict[str, Any]) -> DataFile:
    """A .json file may hold an array, one object, or (as datasets' to_json writes it) JSON Lines."""
    with path.open("rb") as handle:
        head = handle.read(4096).lstrip()
    if path.stat().st_size > WHOLE_JSON_LIMIT and not head.startswith(b"["):
        return JsonlFile(path, **kwargs)
    try:
        text = path.read_text(encoding="utf-8")
    except UnicodeDecodeError:
        raise TokstepError(f"data file {path} is not valid UTF-8") from None
    if head.startswith(b"{"):
        try:
            json.loads(text)
        except json.JSONDecodeError as error:
            if error.msg == "Extra data":
                return JsonlFile(path, **kwargs)
        except (RecursionError, ValueError):
            pass  # JsonArrayFile turns it into an error row
    return JsonArrayFile(path, text, **kwargs)
