"""A DataTable that is kept in sync with a list of rows by updating only the cells that changed, and whose columns
use the width there is.

Live views call `sync(rows)` on every batch of events; the table is never cleared and refilled (a full redraw per
tick flickers over SSH and loses the cursor), rows are added or removed by key and re-ordered only when the order
changed.

Widths: every column is as wide as its widest value (never less than its spec width), so numbers are never cut;
the `flex` column (a name) takes what is left and abbreviates its values with `…` (screens show the full name in
their detail pane). When even the flex column's minimum does not fit, the `optional` columns are dropped, in that
order (their values stay in the rows; they come back when the terminal grows).
"""
from __future__ import annotations

from collections.abc import Sequence
from typing import Any, ClassVar

from rich.text import Text
from textual import events
from textual.binding import Binding, BindingType
from textual.widgets import DataTable
from textual.widgets._data_table import ColumnKey

Column = tuple[str, str, int | None]


def cell_width(value: Any) -> int:
    if isinstance(value, Text):
        return value.cell_len
    if isinstance(value, str):
        return Text.from_markup(value).cell_len if "[" in value else Text(value).cell_len
    return len(str(value))


class SyncedTable(DataTable[Any]):
    """`columns`: (key, label, minimum width or None). Rows are dicts keyed by column key, plus the row key.

    Every list of the app is one of these, so each moves the same way: arrows, j/k, Home/End (first/last row;
    a row table has no columns to scroll to), pgup/pgdn."""

    BINDINGS: ClassVar[list[BindingType]] = [
        Binding("j", "cursor_down", "Down", show=False),
        Binding("k", "cursor_up", "Up", show=False),
        Binding("home", "scroll_top", "First", show=False),
        Binding("end", "scroll_bottom", "Last", show=False),
    ]

    def __init__(self, columns: Sequence[Column], *, row_key: str = "key", flex: str | None = None,
                 flex_min: int = 12, optional: Sequence[str] = (), **kwargs: Any) -> None:
        kwargs.setdefault("cursor_type", "row")
        kwargs.setdefault("zebra_stripes", False)
        super().__init__(**kwargs)
        self._columns_spec = list(columns)
        self._row_key = row_key
        self._flex = flex
        self._flex_min = flex_min
        self._optional = list(optional)
        self._hidden: set[str] = set()                             # columns with nothing to show (`hide`)
        self._shown: list[str] = [k for k, _, _ in columns]       # the columns on screen, in spec order
        self._widths: dict[str, int] = {}
        self._values: dict[str, dict[str, Any]] = {}
        self._order: list[str] = []
        self.cell_updates = 0          # counted for tests and the latency benchmark: proof of in-place updates

    # -- columns -------------------------------------------------------------------------------------------
    def on_mount(self) -> None:
        self._ensure_columns()
        self._fit()

    def on_resize(self, event: events.Resize) -> None:
        self._fit()

    def _ensure_columns(self) -> None:
        if not self.columns:
            for key, label, width in self._columns_spec:
                if key in self._shown:
                    self.add_column(label, key=key, width=self._widths.get(key) or width or len(label))

    def hide(self, columns: set[str]) -> None:
        """Leave these columns off (e.g. win% on a run whose leaderboard has no P(best)); a change re-fits."""
        if set(columns) != self._hidden:
            self._hidden = set(columns)
            self._fit()

    @property
    def shown_columns(self) -> list[str]:
        return list(self._shown)

    def column_width(self, key: str) -> int | None:
        col = self.columns.get(ColumnKey(key))
        return col.width if col is not None else None

    def _needed(self, key: str, label: str, width: int | None) -> int:
        return max([width or 0, cell_width(label)] + [cell_width(v.get(key, "")) for v in self._values.values()])

    def _fit(self) -> None:
        """Give every column its widest value, the flex column the rest (dropping optional columns if needed)."""
        if not self.is_mounted or self.size.width == 0:
            return
        avail = self.size.width - (self.styles.scrollbar_size_vertical or 0)
        pad = 2 * self.cell_padding
        need = {k: self._needed(k, label, w) for k, label, w in self._columns_spec}
        shown = [k for k, _, _ in self._columns_spec if k not in self._hidden]
        optional = list(self._optional)

        def flex_room(cols: list[str]) -> int:
            return avail - sum(need[k] + pad for k in cols if k != self._flex) - pad

        while self._flex and flex_room(shown) < min(self._flex_min, need[self._flex]) and optional:
            gone = optional.pop(0)
            if gone in shown:
                shown.remove(gone)
        widths = {k: need[k] for k in shown}
        if self._flex and self._flex in widths:
            widths[self._flex] = max(min(self._flex_min, need[self._flex]), flex_room(shown))
        if shown != self._shown:
            self._shown, self._widths = shown, widths
            self._rebuild()
            return
        changed = False
        for key, w in widths.items():
            col = self.columns.get(ColumnKey(key))
            if col is not None and (col.width != w or col.auto_width):
                col.width, col.auto_width = w, False
                changed = True
        self._widths = widths
        if changed:
            self._require_update_dimensions = True
            self.refresh()

    def _rebuild(self) -> None:
        """Another set of columns: re-add them and the rows (a resize, never a live tick)."""
        cursor = self._cursor_key()
        self.clear(columns=True)
        self._ensure_columns()
        for key in self._order:
            self.add_row(*[self._shown_value(c, self._values[key].get(c, "")) for c in self._shown], key=key)
        if cursor in self._order:
            self.move_cursor(row=self._order.index(cursor), animate=False)

    def _shown_value(self, column: str, value: Any) -> Any:
        """The flex column's values are abbreviated with `…` to the column's width, never wrapped or cut bare."""
        if column != self._flex:
            return value
        text = value.copy() if isinstance(value, Text) else (
            Text.from_markup(value) if isinstance(value, str) and "[" in value else Text(str(value)))
        text.no_wrap, text.overflow = True, "ellipsis"
        return text

    # -- rows ----------------------------------------------------------------------------------------------------
    @property
    def row_keys(self) -> list[str]:
        return list(self._order)

    def value(self, row: str, column: str) -> Any:
        return self._values.get(row, {}).get(column)

    def sync(self, rows: Sequence[dict[str, Any]]) -> None:
        self._ensure_columns()
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
                self.add_row(*[self._shown_value(c, cells[c]) for c in self._shown], key=key)
                self._order.append(key)
            else:
                for col in self._shown:
                    if old.get(col) != cells[col]:
                        self.update_cell(key, col, self._shown_value(col, cells[col]))
                        self.cell_updates += 1
            self._values[key] = cells
        if wanted != self._order:
            cursor_key = self._cursor_key()
            self._put_in_order(wanted)
            self._order = wanted
            if cursor_key is not None and cursor_key in wanted:
                self.move_cursor(row=wanted.index(cursor_key), animate=False)
        if any(self._needed(k, label, w) > self._widths.get(k, 0) for k, label, w in self._columns_spec
               if k in self._shown and k != self._flex) or not self._widths:
            self._fit()

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
