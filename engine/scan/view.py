"""A finished scan as a data source the browser pages through, queried in place with DuckDB over the
Parquet shards: sorting and filtering act on ALL rows (not a page), and nothing but the shown page is read
into memory, so a 10M-row scan opens in about a second and stays well under 500 MB.

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


@dataclass(frozen=True)
class Filter:
    text: str
    where: str  # a SQL condition over the shards' columns
    parameters: tuple[Any, ...]


def _quote(column: str) -> str:
    return '"' + column.replace('"', '""') + '"'


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
            shards = ", ".join(
                "'" + str(self.folder / s).replace("'", "''") + "'" for s in self.manifest["shards"]
            )
            self._db = duckdb.connect(config={"threads": 2, "memory_limit": MEMORY_LIMIT})
            self._db.execute("SET enable_progress_bar = false")  # never print to the terminal under the TUI
            self._db.execute(f"CREATE VIEW scan AS SELECT * FROM read_parquet([{shards}])")
            described = self._db.sql("DESCRIBE scan").fetchall()
            self.total = int(self._db.sql("SELECT count(*) FROM scan").fetchall()[0][0])
        except Exception as error:  # noqa: BLE001 - a damaged scan is one line
            raise TokstepError(f"cannot read the scan in {folder}: {error}") from None
        self.types: dict[str, str] = {name: kind for name, kind, *_ in described}
        self.sort_by, self.descending = "row", False
        self.filter: Filter | None = None
        self._shown = self.total
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
        self.filter = self.parse_filter(text)
        if self.filter is None:
            self._shown = self.total
        else:
            query = f"SELECT count(*) FROM scan WHERE {self.filter.where}"
            self._shown = int(self._db.sql(query, params=list(self.filter.parameters)).fetchall()[0][0])
        return len(self)

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

    def _order(self) -> str:
        """ORDER BY for the current sort: rows with no value (not scored, NaN) last, ties in file order."""
        if self.sort_by == "lints":
            key = "(lint_errors * 1000 + lint_warnings)"
        elif self._holds_nan(self.sort_by):  # NaN sorts like a missing value (last), as unscored rows do
            key = f"CASE WHEN isnan({_quote(self.sort_by)}) THEN NULL ELSE {_quote(self.sort_by)} END"
        else:
            key = _quote(self.sort_by)
        return f"{key} {'DESC' if self.descending else 'ASC'} NULLS LAST, row ASC"

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

    def _select(self, tail: str = "", columns: str = "*") -> tuple[str, tuple[Any, ...]]:
        where = f"WHERE {self.filter.where}" if self.filter is not None else ""
        parameters = self.filter.parameters if self.filter is not None else ()
        return f"SELECT {columns} FROM scan {where} ORDER BY {self._order()} {tail}", parameters

    # -- pages and rows ----------------------------------------------------------------------------------

    def page(self, start: int, count: int) -> list[dict[str, Any]]:
        """Records of the shown rows start..start+count in the current order."""
        query, parameters = self._select(f"LIMIT {int(count)} OFFSET {int(start)}", columns="row")
        rows = [row for (row,) in self._db.sql(query, params=list(parameters)).fetchall()]
        if not rows:
            return []
        # then every column of those rows only (the sort reads just its key and the filter's columns)
        fetched = self._db.sql("SELECT * FROM scan WHERE row IN (SELECT unnest(?::BIGINT[]))", params=[rows])
        by_row = {record["row"]: record for record in fetched.to_arrow_table().to_pylist()}
        return [by_row[row] for row in rows]

    def records(self, batch: int = 10_000) -> Iterator[dict[str, Any]]:
        """Every shown record in the current order, read a batch at a time."""
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
        self._db.close()
