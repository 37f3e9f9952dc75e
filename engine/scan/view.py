"""A finished scan as a data source the browser pages through, queried in place with DuckDB over the
Parquet shards: sorting and filtering act on ALL rows (not a page), and nothing but the shown page (and, under
a filter, the matching rows' sort keys) is read into memory, so a 10M-row scan opens in under a second and
stays well under 500 MB (`python -m bench.scan_browser`).

A page is read in two steps: where its rows are, in order (`page_keys`: a shard and a position in it, from
the sort key and the filter's columns only), then those rows' columns (`records_of`: one query a shard, by
`file_row_number`, which DuckDB prunes by row group and vector); the second costs in proportion to the rows
asked for, so a browser reads a screenful first and the rest of its window after. Under a filter,
where the matching rows are goes once into a temporary table (`hits`, at most `HITS_CAP` rows, with `row` and
the sort keys asked for so far): the count, every later sort and every page's keys then read that small table. A page past the middle is read in the
reverse order from the end, so the last page is as quick as the first. One lock serialises the queries: a
browser's worker thread and its UI thread may share a view.

No torch here (duckdb + numpy): a screen may hold a `ScanView`.

Filters are words joined by spaces (all must hold): `loss>3`, `max_ce>=10`, `tokens<512`, `form=chat`,
`lint:eos-masked` (that lint fired), `lint` (any error/warning lint), `error` (the row could not be
scored), `ok` (no error), `!lint:no-eos` (negated). Any column of the shards may be compared (a column a
later scan adds too): numbers with < <= > >= = !=, other columns with = and !=. A number that is null or
NaN matches no comparison but `!=`, as before.
"""

from __future__ import annotations

import json
import re
import threading
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from tokstep.engine.errors import TokstepError
from tokstep.engine.inputs.data import Columns
from tokstep.engine.inputs.data_sources import open_source
from tokstep.engine.scan.files import MANIFEST, PARAMETERS

SORTABLE = ("row", "loss", "max_ce", "lints", "tokens", "supervised")
NUMBER_TYPES = ("TINYINT", "SMALLINT", "INTEGER", "BIGINT", "HUGEINT", "FLOAT", "DOUBLE", "DECIMAL", "U")
COMPARISON = re.compile(r"^(?P<column>[a-z_][a-z0-9_]*)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.+)$")
FILTER_HELP = "use e.g. loss>3, tokens<512, form=chat, lint:no-eos, lint, error, ok"
MEMORY_LIMIT = "256MB"  # DuckDB spills past this; the browser stays far under 500 MB at 10M rows
HITS_CAP = 1_000_000  # rows of a filter kept in `hits` (at most 9 columns x 8 bytes: 72 MB)
PAGE_SKIPS = ("findings", "row_hash")  # heavy, and shown by no page; `records()` (exports) keep them
RowKey = tuple[int, int]  # (shard index, position in that shard): where a row is


@dataclass(frozen=True)
class Filter:
    text: str
    where: str  # a SQL condition over the shards' columns
    parameters: tuple[Any, ...]


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


def _literal(text: str) -> str:
    return "'" + text.replace("'", "''") + "'"


class ScanView:
    """The rows of a scan folder, with a current sort and filter; `page(start, count)` gives records."""

    def __init__(self, folder: str | Path) -> None:
        try:
            # lazy: loads duckdb
            import duckdb
        except ImportError:
            raise TokstepError("reading a scan needs duckdb: pip install 'tokstep[data]'") from None

        self.folder = Path(folder).expanduser()
        manifest = self.folder / MANIFEST
        if not manifest.is_file():
            if (self.folder / PARAMETERS).is_file():
                raise TokstepError(
                    f"{folder}: this scan is not finished: rerun the same `tokstep scan` command to complete it"
                )
            raise TokstepError(f"{folder} is not a tokstep scan (no {MANIFEST})")
        try:
            self.manifest: dict[str, Any] = json.loads(manifest.read_text(encoding="utf-8"))
            self._shards = [_literal(str(self.folder / s)) for s in self.manifest["shards"]]
            self._source = f"read_parquet([{', '.join(self._shards)}])"  # with filename, file_row_number
            self._db = duckdb.connect(config={"threads": 2, "memory_limit": MEMORY_LIMIT})
            self._db.execute("SET enable_progress_bar = false")  # never print to the terminal under the TUI
            self._db.execute(f"CREATE VIEW scan AS SELECT * FROM {self._source}")
            described = self._db.sql("DESCRIBE scan").fetchall()
            self.total = int(self._db.sql("SELECT count(*) FROM scan").fetchall()[0][0])
        except Exception as error:  # noqa: BLE001 - a damaged scan is one line
            raise TokstepError(f"cannot read the scan in {folder}: {error}") from None
        self.types: dict[str, str] = {name: kind for name, kind, *_ in described}
        # lint code -> its bit in `lint_bits` (scans before format 3 have neither: lists are searched)
        codes = self.manifest.get("lint_bits", []) if "lint_bits" in self.types else []
        self._lint_bit = {code: 1 << i for i, code in enumerate(codes) if i < 63}
        self.sort_by, self.descending = "row", False
        self.filter: Filter | None = None
        self._shown = self.total
        self._hits = False  # the filter's matching keys are in the temporary table `hits`
        self._hits_columns: list[str] = []  # which columns `hits` holds beside where each row is
        self._lock = threading.Lock()  # one query at a time on this connection
        self._has_nan: dict[str, bool] = {}  # float column -> holds a NaN (then sorting maps NaN to null)

    # -- what the scan was -------------------------------------------------------------------------------

    @property
    def identity(self) -> dict[str, Any]:
        return self.manifest.get("identity", {})

    @property
    def model(self) -> str | None:
        return self.identity.get("model")

    def __len__(self) -> int:
        return self._shown

    def is_number(self, column: str) -> bool:
        kind = self.types.get(column, "")
        return kind.startswith(NUMBER_TYPES) and not kind.endswith("]")

    def column(self, name: str) -> np.ndarray:
        """A numeric column over every row in file order, as float64 (NaN where null)."""
        if not self.is_number(name):
            raise TokstepError(f"no numeric column {name!r} in this scan")
        query = f"SELECT coalesce(CAST({_quote(name)} AS DOUBLE), 'NaN'::DOUBLE) FROM scan ORDER BY row"
        with self._lock:
            values = self._db.sql(query).fetchnumpy()
        return np.asarray(next(iter(values.values())), dtype=np.float64)

    # -- sort and filter over every row ------------------------------------------------------------------

    def sort(self, by: str, descending: bool | None = None) -> None:
        if by not in SORTABLE:
            raise TokstepError(f"cannot sort by {by}: one of {', '.join(SORTABLE)}")
        self.sort_by = by
        self.descending = (by != "row") if descending is None else descending

    def set_filter(self, text: str) -> int:
        """Keep the rows matching `text` (empty: all); returns how many. Bad syntax: TokstepError."""
        chosen = self.parse_filter(text)
        with self._lock:
            self.filter = chosen
            self._drop_hits()
            if chosen is None:
                self._shown = self.total
                return len(self)
            self._keep_hits(chosen, ["row", *self._sort_columns()])
            self._shown = self._count("SELECT count(*) FROM hits")
            self._hits = self._shown <= HITS_CAP
            if not self._hits:  # too many to keep: count them, and read pages from the shards
                self._drop_hits()
                self._shown = self._count(
                    f"SELECT count(*) FROM scan WHERE {chosen.where}", chosen.parameters
                )
        return len(self)

    def _keep_hits(self, chosen: Filter, columns: list[str]) -> None:
        """The rows matching `chosen` (at most HITS_CAP + 1) into `hits`: where each is, and `columns`
        (`row` and the sort keys asked for so far: each more column costs a read of it over every row)."""
        self._hits_columns = [c for c in dict.fromkeys(columns) if c in self.types]
        keys = ", ".join([self._where_columns(), *map(_quote, self._hits_columns)])
        self._db.execute("DROP TABLE IF EXISTS hits")
        self._db.execute(
            f"CREATE TEMP TABLE hits AS SELECT {keys} FROM {self._source} WHERE {chosen.where} "
            f"LIMIT {HITS_CAP + 1}",
            list(chosen.parameters),
        )

    def _sort_columns(self) -> list[str]:
        """The columns the current order reads (beside `row`)."""
        if self.sort_by == "lints":
            return ["lint_errors", "lint_warnings"]
        return [] if self.sort_by == "row" else [self.sort_by]

    def _count(self, query: str, parameters: tuple[Any, ...] = ()) -> int:
        return int(self._db.sql(query, params=list(parameters)).fetchall()[0][0])

    def _drop_hits(self) -> None:
        self._db.execute("DROP TABLE IF EXISTS hits")
        self._hits = False

    def parse_filter(self, text: str) -> Filter | None:
        """The SQL condition of a filter text (None: no filter); bad syntax: TokstepError."""
        text = text.strip()
        if not text:
            return None
        conditions: list[str] = []
        parameters: list[Any] = []
        for word in text.split():
            negate = word.startswith("!")
            condition, values = self._condition(word.lstrip("!"))
            condition = f"coalesce({condition}, false)"  # null (or NaN) matches nothing; `!` keeps it
            conditions.append(f"NOT {condition}" if negate else condition)
            parameters += values
        return Filter(text, " AND ".join(f"({c})" for c in conditions), tuple(parameters))

    def _condition(self, word: str) -> tuple[str, list[Any]]:
        if word in ("error", "ok"):
            return ("error IS NOT NULL" if word == "error" else "error IS NULL"), []
        if word == "lint":
            return "lint_errors + lint_warnings > 0", []
        if word.startswith("lint:"):
            if word[5:] in self._lint_bit:  # an integer test, not a search of every row's list of strings
                return "(lint_bits & ?) != 0", [self._lint_bit[word[5:]]]
            return "list_contains(lints, ?)", [word[5:]]
        match = COMPARISON.match(word)
        if match is None:
            raise TokstepError(f"filter {word!r}: {FILTER_HELP}")
        column, op, value = match["column"], match["op"], match["value"]
        if column not in self.types:
            raise TokstepError(f"filter {word!r}: no column {column!r} to compare that way")
        quoted = _quote(column)
        if self.is_number(column):
            try:
                number = float(value)
            except ValueError:
                raise TokstepError(f"filter {word!r}: {value!r} is not a number") from None
            number_of = f"CAST({quoted} AS DOUBLE)"
            known = f"{number_of} {'=' if op == '!=' else op} ? AND NOT isnan({number_of})"
            if op == "!=":  # like NumPy's NaN != x: a missing number differs from every number
                return f"NOT coalesce({known}, false)", [number]
            return known, [number]
        if op not in ("=", "!="):
            raise TokstepError(f"filter {word!r}: no column {column!r} to compare that way")
        same = f"coalesce(CAST({quoted} AS VARCHAR) = ?, false)"
        return (same if op == "=" else f"NOT {same}"), [value]

    def _order(self, reverse: bool = False) -> str:
        """ORDER BY for the current sort: rows with no value (not scored, NaN) last, ties in file order;
        `reverse`: exactly the reverse of that order (to read the last pages from the end)."""
        descending = self.descending != reverse
        if self.sort_by == "lints":  # errors first, then warnings: two plain columns keep DuckDB's top-N fast
            keys = ["lint_errors", "lint_warnings"]
        elif self._holds_nan(self.sort_by):  # NaN sorts like a missing value (last), as unscored rows do
            keys = [f"CASE WHEN isnan({_quote(self.sort_by)}) THEN NULL ELSE {_quote(self.sort_by)} END"]
        else:
            keys = [_quote(self.sort_by)]
        nulls = "NULLS FIRST" if reverse else "NULLS LAST"
        direction = "DESC" if descending else "ASC"
        return ", ".join(f"{k} {direction} {nulls}" for k in keys) + (
            ", row DESC" if reverse else ", row ASC"
        )

    def _holds_nan(self, column: str) -> bool:
        """Whether a float column holds a NaN; a plain column key lets DuckDB skip row groups in a top-N."""
        if self.types.get(column) not in ("DOUBLE", "FLOAT"):
            return False
        if column not in self._has_nan:
            # an aggregate, not WHERE isnan(): the Parquet row-group statistics leave NaN out, and a pushed-down
            # filter skips the groups that hold them (DuckDB 2.0)
            query = f"SELECT coalesce(sum(isnan({_quote(column)})::INTEGER), 0) FROM scan"
            self._has_nan[column] = self._db.sql(query).fetchall()[0][0] > 0
        return self._has_nan[column]

    def _select(
        self, tail: str = "", columns: str = "*", reverse: bool = False
    ) -> tuple[str, tuple[Any, ...]]:
        """A query over the shown rows in the current order."""
        where, parameters = self._where()
        return f"SELECT {columns} FROM scan {where} ORDER BY {self._order(reverse)} {tail}", parameters

    def _where(self) -> tuple[str, tuple[Any, ...]]:
        """The current filter's WHERE clause ("" when none) and its parameters."""
        if self.filter is None:
            return "", ()
        return f"WHERE {self.filter.where}", self.filter.parameters

    def _where_columns(self) -> str:
        """The columns that say where a row is (its `RowKey`), from the shards' virtual columns."""
        shard = " ".join(f"WHEN {path} THEN {i}" for i, path in enumerate(self._shards))
        return f"CASE filename {shard} END AS shard, file_row_number AS position"

    # -- pages and rows ----------------------------------------------------------------------------------

    def page(self, start: int, count: int) -> list[dict[str, Any]]:
        """Records of the shown rows start..start+count in the current order: every column but `PAGE_SKIPS`."""
        return self.records_of(self.page_keys(start, count))

    def page_keys(self, start: int, count: int) -> list[RowKey]:
        """Where the shown rows start..start+count are, in the current order."""
        with self._lock:
            start, count = max(int(start), 0), max(min(int(count), len(self) - int(start)), 0)
            if count == 0:
                return []
            reverse = start > len(self) // 2  # past the middle: the same rows, read from the end
            offset = len(self) - start - count if reverse else start
            tail = f"ORDER BY {self._order(reverse)} LIMIT {count} OFFSET {offset}"
            if (
                self._hits
                and self.filter is not None
                and not set(self._sort_columns()) <= set(self._hits_columns)
            ):
                self._keep_hits(self.filter, [*self._hits_columns, *self._sort_columns()])  # a new sort key
            if self._hits:
                query, parameters = f"SELECT shard, position FROM hits {tail}", ()
            else:
                where, parameters = self._where()
                query = f"SELECT {self._where_columns()} FROM {self._source} {where} {tail}"
            keys = [(int(s), int(p)) for s, p in self._db.sql(query, params=list(parameters)).fetchall()]
        return keys[::-1] if reverse else keys

    def records_of(self, keys: list[RowKey]) -> list[dict[str, Any]]:
        """The records of the rows at these keys (every column but `PAGE_SKIPS`), in the order given."""
        found: dict[RowKey, dict[str, Any]] = {}
        for shard in sorted({s for s, _ in keys}):
            positions = ", ".join(
                str(p) for s, p in keys if s == shard
            )  # ints: a literal list DuckDB prunes by
            query = (
                f"SELECT file_row_number AS position_, {self._page_columns()} "
                f"FROM read_parquet([{self._shards[shard]}]) WHERE file_row_number IN ({positions})"
            )
            with self._lock:
                fetched = self._db.sql(query).to_arrow_table()
            for record in fetched.to_pylist():
                found[(shard, record.pop("position_"))] = record
        return [found[key] for key in keys]

    def _page_columns(self) -> str:
        skipped = [_quote(c) for c in PAGE_SKIPS if c in self.types]
        return f"* EXCLUDE ({', '.join(skipped)})" if skipped else "*"

    def records(self, batch: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every shown record (every column) in the current order, read a batch at a time."""
        with self._lock:
            query, parameters = self._select()
            cursor = self._db.cursor()  # its own: an open reader holds its connection
        for chunk in cursor.sql(query, params=list(parameters)).to_arrow_reader(batch):
            yield from chunk.to_pylist()

    def open_data(self) -> Any:
        """The scanned data file, with the scan's columns and options (to read a row's sample back)."""
        identity = self.identity
        columns = {k: tuple(v) if isinstance(v, list) else v for k, v in identity.get("columns", {}).items()}
        try:
            return open_source(identity["data"], Columns(**columns), **identity.get("options", {}))
        except KeyError:
            raise TokstepError(f"{self.folder}: the manifest does not name its data file") from None

    def close(self) -> None:
        with self._lock:
            self._db.close()
