"""The scan browser's in-memory reference: every shard's columns in one pyarrow table, sorted and filtered
with NumPy (tokstep's ScanView before it moved onto DuckDB). Tests check the query engine against it."""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq

from tokstep.engine.errors import TokstepError

SORTABLE = ("row", "loss", "max_ce", "lints", "tokens", "supervised")
NUMERIC = (
    "row",
    "line",
    "tokens",
    "supervised",
    "loss",
    "max_ce",
    "lint_errors",
    "lint_warnings",
    "lint_infos",
)
COMPARISON = re.compile(r"^(?P<column>[a-z_]+)\s*(?P<op><=|>=|!=|=|<|>)\s*(?P<value>.+)$")


@dataclass(frozen=True)
class Filter:
    text: str
    mask: np.ndarray  # (rows,) bool


class MemoryScanView:
    """The rows of a scan folder, with a current sort and filter; `page(start, count)` gives records."""

    def __init__(self, folder: str | Path) -> None:
        folder = Path(folder)
        manifest = json.loads((folder / "manifest.json").read_text(encoding="utf-8"))
        self.table = pa.concat_tables([pq.read_table(folder / s) for s in manifest["shards"]]).sort_by("row")
        self._columns: dict[str, np.ndarray] = {}
        self.sort_by, self.descending = "row", False
        self.filter: Filter | None = None
        self.order = np.arange(self.table.num_rows)  # (shown,) indices into the table

    @property
    def total(self) -> int:
        return self.table.num_rows

    def __len__(self) -> int:
        return len(self.order)

    def column(self, name: str) -> np.ndarray:
        """A numeric column as float64 (NaN where null), or an object array for the others."""
        if name not in self._columns:
            if name == "lint_score":  # the "lints" sort key: errors first, then warnings
                values = self.column("lint_errors") * 1000 + self.column("lint_warnings")
            elif name in NUMERIC:
                values = self.table.column(name).to_numpy(zero_copy_only=False).astype(np.float64)
            else:
                values = np.asarray(self.table.column(name).to_pylist(), dtype=object)
            self._columns[name] = values
        return self._columns[name]

    # -- sort and filter over every row ------------------------------------------------------------------

    def sort(self, by: str, descending: bool | None = None) -> None:
        if by not in SORTABLE:
            raise TokstepError(f"cannot sort by {by}: one of {', '.join(SORTABLE)}")
        self.sort_by = by
        self.descending = (by != "row") if descending is None else descending
        self._apply()

    def set_filter(self, text: str) -> int:
        """Keep the rows matching `text` (empty: all); returns how many. Bad syntax: TokstepError."""
        text = text.strip()
        if not text:
            self.filter = None
        else:
            mask = np.ones(self.total, dtype=bool)
            for word in text.split():
                mask &= self._match(word)
            self.filter = Filter(text, mask)
        self._apply()
        return len(self)

    def _match(self, word: str) -> np.ndarray:
        negate = word.startswith("!")
        word = word.lstrip("!")
        import pyarrow.compute as pc

        if word in ("error", "ok"):
            mask = self.table.column("error").is_valid().to_numpy(zero_copy_only=False)
            mask = mask if word == "error" else ~mask
        elif word == "lint":
            mask = (self.column("lint_errors") + self.column("lint_warnings")) > 0
        elif word.startswith("lint:"):
            lints = self.table.column("lints").combine_chunks()
            hits = pc.equal(pc.list_flatten(lints), word[5:]).fill_null(False)
            rows = pc.list_parent_indices(lints).to_numpy()[hits.to_numpy(zero_copy_only=False)]
            mask = np.zeros(self.total, dtype=bool)
            mask[rows] = True
        else:
            match = COMPARISON.match(word)
            if match is None:
                raise TokstepError(
                    f"filter {word!r}: use e.g. loss>3, tokens<512, form=chat, lint:no-eos, lint, error, ok"
                )
            column, op, value = match["column"], match["op"], match["value"]
            if column in NUMERIC:
                try:
                    number = float(value)
                except ValueError:
                    raise TokstepError(f"filter {word!r}: {value!r} is not a number") from None
                values = self.column(column)
                with np.errstate(invalid="ignore"):
                    mask = {
                        "<": values < number,
                        "<=": values <= number,
                        ">": values > number,
                        ">=": values >= number,
                        "=": values == number,
                        "!=": values != number,
                    }[op]
            elif column in self.table.column_names and op in ("=", "!="):
                same = pc.equal(pc.cast(self.table.column(column), "string"), value).fill_null(False)
                mask = same.to_numpy(zero_copy_only=False)
                mask = ~mask if op == "!=" else mask
            else:
                raise TokstepError(f"filter {word!r}: no column {column!r} to compare that way")
        return ~mask if negate else mask

    def _apply(self) -> None:
        keys = self.column("lint_score" if self.sort_by == "lints" else self.sort_by)
        rows = np.arange(self.total) if self.filter is None else np.flatnonzero(self.filter.mask)
        values = keys[rows]
        missing = np.isnan(values)  # rows with no value (not scored) always go last
        primary = np.where(missing, 0.0, -values if self.descending else values)
        self.order = rows[np.lexsort((rows, primary, missing))]

    # -- pages and rows ----------------------------------------------------------------------------------

    def page(self, start: int, count: int) -> list[dict[str, Any]]:
        """Records of the shown rows start..start+count in the current order."""
        import pyarrow as pa

        picked = self.order[start : start + count]
        return self.table.take(pa.array(picked, type=pa.int64())).to_pylist()
