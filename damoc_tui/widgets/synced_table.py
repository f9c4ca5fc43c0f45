"""A DataTable that is kept in sync with a list of rows by updating only the cells that changed.

Live views call `sync(rows)` on every batch of events; the table is never cleared and refilled (a full redraw per
tick flickers over SSH and loses the cursor), rows are added or removed by key and re-ordered only when the order
changed.
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any

from textual.widgets import DataTable


class SyncedTable(DataTable[Any]):
    """`columns`: (key, label, width or None). Rows are dicts keyed by column key, plus the row key."""

    def __init__(self, columns: Sequence[tuple[str, str, int | None]], *, row_key: str = "key", **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._columns_spec = list(columns)
        self._row_key = row_key
        self._values: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self.cell_updates = 0          # counted for tests and the latency benchmark: proof of in-place updates

    def on_mount(self) -> None:
        for key, label, width in self._columns_spec:
            self.add_column(label, key=key, width=width)

    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    def value(self, row: str, column: str) -> Any:
        return self._values.get(row, {}).get(column)

    def sync(self, rows: Sequence[dict[str, Any]]) -> None:
        if not self.columns:               # not mounted yet: columns come in on_mount
            for key, label, width in self._columns_spec:
                self.add_column(label, key=key, width=width)
        wanted = [str(r[self._row_key]) for r in rows]
        for gone in [k for k in self._order if k not in set(wanted)]:
            self.remove_row(gone)
            self._values.pop(gone, None)
            self._order.remove(gone)
        for r in rows:
            key = str(r[self._row_key])
            cells = {c: r.get(c, "") for c, _, _ in self._columns_spec}
            old = self._values.get(key)
            if old is None:
                self.add_row(*cells.values(), key=key)
                self._order.append(key)
            else:
                for col, val in cells.items():
                    if old.get(col) != val:
                        self.update_cell(key, col, val)
                        self.cell_updates += 1
            self._values[key] = cells
        if wanted != self._order:
            cursor_key = self._cursor_key()
            self._put_in_order(wanted)
            self._order = wanted
            if cursor_key is not None and cursor_key in wanted:
                self.move_cursor(row=wanted.index(cursor_key), animate=False)

    def _put_in_order(self, keys: list[str]) -> None:
        """Re-order rows without touching cells: what `DataTable.sort` does, with our order instead of a cell key."""
        from textual._two_way_dict import TwoWayDict
        from textual.widgets._data_table import RowKey

        self._row_locations = TwoWayDict({RowKey(k): i for i, k in enumerate(keys)})
        self._update_count += 1
        self.refresh()

    def _cursor_key(self) -> str | None:
        if not self.row_count:
            return None
        try:
            return str(self.coordinate_to_cell_key(self.cursor_coordinate).row_key.value)
        except Exception:  # cursor out of range while rows change
            return None

    @property
    def highlighted_key(self) -> str | None:
        return self._cursor_key()
