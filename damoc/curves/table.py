"""Read a table of fine-tuning curves in AtS's format (Lin et al. 2024, repository linhaowei1/Fine-tuning-Scaling-Law,
`benchmark/*.csv`):

    config name,0,200,400,...,1638400,size,family
    gpt2,4.86,4.39,...,1.79,124439808,GPT2

The first column names the model; every all-digits header is a training-set size whose cells are the test loss
after fine-tuning on that many examples (`0` = zero-shot); `size` (parameters) and `family` are optional. An empty
cell is a size that model was not measured at. Every problem is a DataError naming the line and the column.
"""
from __future__ import annotations

import csv
import math
from dataclasses import dataclass
from pathlib import Path

from damoc.curves.base import Curve
from damoc.errors import DataError

SIDE_COLUMNS = ("size", "family")


@dataclass(frozen=True)
class CurveTable:
    """The curves of a table, cut at the budget, and the sizes its header names (all of them, for --target)."""

    path: str
    curves: tuple[Curve, ...]
    header_sizes: tuple[int, ...]
    budget: int | None


def _number(cell: str, path: str, line: int, field: str) -> float | None:
    cell = cell.strip()
    if not cell:
        return None
    try:
        v = float(cell)
    except ValueError:
        raise DataError(f"{cell!r} is not a number", "cells under a size column hold losses; leave a cell empty "
                        "when the model was not measured there", path=path, line=line, field=field) from None
    if not math.isfinite(v):
        raise DataError(f"{cell!r} is not a finite number", "leave the cell empty instead", path=path, line=line,
                        field=field)
    return v


def read_table(path: str | Path, budget: int | None = None, *, min_points: int = 2) -> CurveTable:
    """Parse `path`; keep only the size columns <= `budget` (all when None). Each model needs `min_points` measured
    sizes above 0 within the budget."""
    p = str(path)
    try:
        with open(p, newline="", encoding="utf-8-sig") as f:
            rows = [(rd.line_num, row) for rd in [csv.reader(f)] for row in rd]
    except OSError as e:
        raise DataError(f"cannot read the table: {e.strerror or e}", path=p) from None
    except (UnicodeDecodeError, csv.Error) as e:
        raise DataError(f"not a CSV text file ({e})", "save the table as UTF-8 CSV", path=p) from None
    rows = [(n, r) for n, r in rows if any(cell.strip() for cell in r)]
    if not rows:
        raise DataError("the table is empty", "first row: model column, then one column per training-set size "
                        "(0 = zero-shot), optional size and family", path=p)
    hline, header = rows[0]
    header = [h.strip() for h in header]
    sizes: dict[int, int] = {}          # column index -> training-set size
    side: dict[str, int] = {}
    for j, h in enumerate(header[1:], 1):
        if header.index(h) != j or (h.isdigit() and int(h) in sizes.values()):
            raise DataError(f"column {h!r} appears twice", path=p, line=hline, field=h)
        if h.isdigit():
            sizes[j] = int(h)
        elif h.lower() in SIDE_COLUMNS:
            side[h.lower()] = j
        else:
            raise DataError(f"column {h!r} is neither a training-set size nor one of {', '.join(SIDE_COLUMNS)}",
                            "size columns are whole numbers of examples, e.g. 200 or 1638400", path=p,
                            line=hline, field=h or f"#{j + 1}")
    nonzero = sorted(s for s in sizes.values() if s > 0)
    if not nonzero:
        raise DataError("no training-set size columns (whole numbers such as 200, 400, ...)", path=p, line=hline)
    if budget is not None and budget < nonzero[0]:
        raise DataError(f"budget {budget} is below every training-set size in the table (smallest {nonzero[0]})",
                        f"pick --budget of at least {nonzero[0]}", path=p, field="--budget")
    if len(rows) < 2:
        raise DataError("the table has a header but no models", path=p, line=hline)
    model_col = header[0] or "model"
    zero_col = next((j for j, s in sizes.items() if s == 0), None)
    kept = sorted((s, j) for j, s in sizes.items() if s > 0 and (budget is None or s <= budget))
    curves: list[Curve] = []
    seen: dict[str, int] = {}
    for line, row in rows[1:]:
        if len(row) != len(header):
            raise DataError(f"the row has {len(row)} cells, the header {len(header)}",
                            "every row needs a cell for every column (an empty cell is fine)", path=p, line=line)
        name = row[0].strip()
        if not name:
            raise DataError("the model name is empty", path=p, line=line, field=model_col)
        if name in seen:
            raise DataError(f"model {name!r} is already on line {seen[name]}", "give each model one row", path=p,
                            line=line, field=model_col)
        seen[name] = line
        cells = [(s, _number(row[j], p, line, header[j])) for s, j in kept]
        points = [(s, v) for s, v in cells if v is not None]
        if len(points) < min_points:
            empty = [str(s) for s, v in cells if v is None]
            raise DataError(f"model {name!r} has {len(points)} measured size(s) within the budget, at least "
                            f"{min_points} are needed" + (f" (empty: {', '.join(empty)})" if empty else ""),
                            "fill in more cells or raise --budget", path=p, line=line,
                            field=empty[0] if empty else None)
        for s, v in points:
            if v <= 0:      # type: ignore[operator]
                raise DataError(f"loss {v} is not positive", "losses are fitted on a log scale", path=p,
                                line=line, field=str(s))
        zero = _number(row[zero_col], p, line, "0") if zero_col is not None else None
        msize = _number(row[side["size"]], p, line, header[side["size"]]) if "size" in side else None
        family = (row[side["family"]].strip() or None) if "family" in side else None
        curves.append(Curve(name, tuple(float(s) for s, _ in points), tuple(v for _, v in points),  # type: ignore[misc]
                            zero, msize, family))
    return CurveTable(p, tuple(curves), tuple(sorted(sizes.values())), budget)
