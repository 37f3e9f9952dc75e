"""Small DataTable helpers the row-list screens share."""

from __future__ import annotations

from textual.widgets import DataTable


def highlighted_index(table: DataTable) -> int | None:
    """The integer key of the highlighted row (rows are keyed by their index), None with no cursor yet."""
    if not table.row_count:
        return None
    try:
        key = table.coordinate_to_cell_key(table.cursor_coordinate).row_key
    except Exception:  # noqa: BLE001 - no cursor yet
        return None
    return None if key.value is None else int(key.value)
