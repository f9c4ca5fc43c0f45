"""Reading and writing datasets.

`load_samples` reads a file or a `save_to_disk` folder, detects the record shape, and normalises every record. By
default the first bad record raises a `DataError` naming file, line and field; with `skip_bad=True` bad records are
skipped and listed in `LoadResult.problems`.
"""
from __future__ import annotations

import csv
import io
import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.data import formats
from damoc.data.sample import Sample
from damoc.errors import DataError
from damoc.fsutil import atomic_write_text

MAX_LINE_BYTES = 32 * 1024 * 1024      # a single record larger than this is almost surely a broken file
FILE_TYPES = ("jsonl", "json", "csv", "tsv", "parquet", "hf-disk")


@dataclass
class Problem:
    line: int | None          # 1-based line (JSONL/CSV) or record number (JSON, Parquet, folders)
    field: str | None
    message: str
    severity: str = "error"   # error: the record was rejected; warning: kept, but worth knowing
    hint: str | None = None

    def describe(self, path: str | Path = "") -> str:
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        fld = f" field {self.field!r}" if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{fld} {self.message}{hint}".replace(": ", ": ", 1)

    def to_dict(self) -> dict[str, Any]:
        return {"line": self.line, "field": self.field, "message": self.message, "severity": self.severity,
                "hint": self.hint}


@dataclass
class LoadResult:
    path: Path
    file_type: str
    format: str
    samples: list[Sample]
    problems: list[Problem] = field(default_factory=list)
    records_read: int = 0

    @property
    def skipped(self) -> int:
        return sum(1 for p in self.problems if p.severity == "error")


def file_type_of(path: Path) -> str:
    if path.is_dir():
        if any((path / n).exists() for n in ("dataset_info.json", "state.json", "dataset_dict.json")):
            return "hf-disk"
        raise DataError("folder is not a dataset saved with `save_to_disk` (no dataset_info.json/state.json)",
                        "pass a JSONL/JSON/CSV/Parquet file or a save_to_disk folder", path=str(path))
    suffix = path.suffix.lower().lstrip(".")
    if suffix in ("jsonl", "ndjson"):
        return "jsonl"
    if suffix in ("json", "csv", "tsv", "parquet"):
        return suffix
    # unknown extension: sniff the first non-blank byte
    with open(path, "rb") as f:
        head = f.read(4096).lstrip()
    if head.startswith(b"PAR1"):
        return "parquet"
    if head.startswith(b"["):
        return "json"
    if head.startswith(b"{"):
        return "jsonl"
    raise DataError(f"cannot tell the file type from the name {path.name!r}",
                    "use one of .jsonl .json .csv .tsv .parquet", path=str(path))


def _iter_jsonl(path: Path, problems: list[Problem]) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    with open(path, "rb") as f:
        lineno = 0
        while True:
            raw = f.readline(MAX_LINE_BYTES + 1)
            if not raw:
                break
            lineno += 1
            if len(raw) > MAX_LINE_BYTES and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):     # swallow the rest of the oversized line
                    raw = f.readline(MAX_LINE_BYTES)
                problems.append(Problem(lineno, None, f"line longer than {MAX_LINE_BYTES // 2**20} MiB",
                                        hint="split the record or check the file is really JSON lines"))
                yield lineno, None
                continue
            try:
                text = raw.decode("utf-8")
            except UnicodeDecodeError as e:
                problems.append(Problem(lineno, None, f"not valid UTF-8 (byte {e.start}: {raw[e.start:e.start+1]!r})",
                                        hint="re-encode the file as UTF-8, e.g. iconv -f latin1 -t utf-8"))
                yield lineno, None
                continue
            if not text.strip():
                continue          # blank lines are allowed and counted in inspect
            try:
                obj = json.loads(text)
            except json.JSONDecodeError as e:
                problems.append(Problem(lineno, None, f"invalid JSON: {e.msg} at column {e.colno}",
                                        hint="each line must be one complete JSON object"))
                yield lineno, None
                continue
            if not isinstance(obj, dict):
                problems.append(Problem(lineno, None, f"expected a JSON object, got {type(obj).__name__}"))
                yield lineno, None
                continue
            yield lineno, obj


def _iter_json(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    try:
        data = json.loads(path.read_bytes().decode("utf-8"))
    except UnicodeDecodeError as e:
        raise DataError(f"not valid UTF-8 at byte {e.start}", "re-encode the file as UTF-8", path=str(path)) from e
    except json.JSONDecodeError as e:
        raise DataError(f"invalid JSON: {e.msg}", "fix the JSON syntax", path=str(path), line=e.lineno) from e
    if isinstance(data, dict):
        for key in ("data", "train", "examples", "rows"):
            if isinstance(data.get(key), list):
                data = data[key]
                break
    if not isinstance(data, list):
        raise DataError("expected a JSON list of records (or an object with a 'data' list)", path=str(path))
    for i, rec in enumerate(data, 1):
        yield i, rec if isinstance(rec, dict) else None


def _iter_csv(path: Path, delimiter: str) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    try:
        text = path.read_bytes().decode("utf-8-sig")
    except UnicodeDecodeError as e:
        line = path.read_bytes()[: e.start].count(b"\n") + 1
        raise DataError("not valid UTF-8", "re-encode the file as UTF-8", path=str(path), line=line) from e
    reader = csv.DictReader(io.StringIO(text, newline=""), delimiter=delimiter)
    for row in reader:
        if not any((v or "").strip() for v in row.values() if isinstance(v, str)):
            continue
        yield reader.line_num, {k: v for k, v in row.items() if k is not None}


def _iter_parquet(path: Path) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    import pyarrow.parquet as pq

    try:
        table = pq.read_table(path)
    except Exception as e:  # pyarrow raises several types for broken files
        raise DataError(f"cannot read Parquet: {e}", path=str(path)) from e
    for i, rec in enumerate(table.to_pylist(), 1):
        yield i, rec


def _iter_hf_disk(path: Path, split: str) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    import datasets

    ds = datasets.load_from_disk(str(path))
    if isinstance(ds, datasets.DatasetDict):
        if split not in ds:
            raise DataError(f"no split {split!r}; the folder has {', '.join(ds)}", "pass --split NAME", path=str(path))
        ds = ds[split]
    for i, rec in enumerate(ds, 1):
        yield i, rec


def iter_records(path: Path, file_type: str, problems: list[Problem], split: str = "train"
                 ) -> Iterator[tuple[int, Mapping[str, Any] | None]]:
    if file_type == "jsonl":
        return _iter_jsonl(path, problems)
    if file_type == "json":
        return _iter_json(path)
    if file_type in ("csv", "tsv"):
        return _iter_csv(path, "\t" if file_type == "tsv" else ",")
    if file_type == "parquet":
        return _iter_parquet(path)
    return _iter_hf_disk(path, split)


def load_samples(path: str | Path, *, format: str = "auto", skip_bad: bool = False, split: str = "train",
                 limit: int | None = None, allow_empty: bool = False) -> LoadResult:
    """Load and normalise a dataset. Raises `DataError` on the first bad record unless `skip_bad`."""
    path = Path(path)
    if not path.exists():
        raise DataError("no such file or folder", "check the path", path=str(path))
    ftype = file_type_of(path)
    if format != "auto" and format not in formats.FORMATS:
        raise DataError(f"unknown format {format!r}", f"use auto or one of {', '.join(formats.FORMATS)}")
    problems: list[Problem] = []
    samples: list[Sample] = []
    seen_ids: dict[str, int] = {}
    fmt: str | None = None if format == "auto" else format
    pending: list[tuple[int, Mapping[str, Any]]] = []
    records = 0

    def fail(p: Problem) -> None:
        hint = p.hint or "fix the record"
        if "--skip-bad" not in hint:
            hint += "; or pass --skip-bad to skip bad records and report them"
        raise DataError(p.message, hint, path=str(path), line=p.line, field=p.field)

    def take(lineno: int, rec: Mapping[str, Any]) -> None:
        assert fmt is not None
        rid = rec.get("id")
        idx = str(rid) if rid not in (None, "") else f"{path.stem}-{lineno}"
        try:
            s = formats.FORMATS[fmt](rec, idx)
        except formats.FieldProblem as e:
            p = Problem(lineno, e.field, e.message, hint=e.hint)
            problems.append(p)
            if not skip_bad:
                fail(p)
            return
        if idx in seen_ids:
            p = Problem(lineno, "id", f"duplicate id {idx!r} (first on line {seen_ids[idx]})",
                        hint="ids must be unique; pass --skip-bad to keep only the first")
            problems.append(p)
            if not skip_bad:
                fail(p)
            return
        seen_ids[idx] = lineno
        samples.append(s)

    for lineno, rec in iter_records(path, ftype, problems, split):
        records += 1
        if rec is None:
            if not problems or problems[-1].line != lineno:
                problems.append(Problem(lineno, None, "record is not an object"))
            if not skip_bad:
                fail(problems[-1])
            continue
        if fmt is None:
            pending.append((lineno, rec))
            if len(pending) < 20:
                continue
            fmt = _detect_or_fail(pending, path)
            for ln, r in pending:
                take(ln, r)
            pending = []
        else:
            take(lineno, rec)
        if limit is not None and len(samples) >= limit:
            break
    if pending:
        fmt = _detect_or_fail(pending, path)
        for ln, r in pending:
            take(ln, r)
    if limit is not None:
        del samples[limit:]          # the detection buffer may have normalised a few records past the limit
    if not samples and not allow_empty:
        what = "is empty" if records == 0 else f"has no usable sample ({len(problems)} problems)"
        raise DataError(what, "give a file with at least one record" if records == 0 else
                        "see `damoc data inspect` for the problems", path=str(path))
    return LoadResult(path=path, file_type=ftype, format=fmt or (format if format != "auto" else "unknown"),
                      samples=samples, problems=problems, records_read=records)


def _detect_or_fail(pending: list[tuple[int, Mapping[str, Any]]], path: Path) -> str:
    fmt = formats.detect([r for _, r in pending])
    if fmt is None:
        keys = sorted(set().union(*(set(r) for _, r in pending)))[:12]
        raise DataError(f"cannot recognise the record shape (keys: {', '.join(keys)})",
                        "expected " + "; ".join(f"{k}: {v}" for k, v in formats.FORMAT_HELP.items())
                        + " (or pass --format)", path=str(path), line=pending[0][0])
    return fmt


def write_samples(samples: Iterable[Sample], path: str | Path, *, original: bool = False,
                  extra_fields: Mapping[str, Mapping[str, Any]] | None = None) -> int:
    """Write samples as JSONL (atomically). `original=True` writes each source record untouched."""
    lines = []
    for s in samples:
        rec = dict(s.raw) if original and s.raw is not None else s.to_record()
        if extra_fields and s.id in extra_fields:
            rec.update(extra_fields[s.id])
        lines.append(json.dumps(rec, ensure_ascii=False, default=str))
    atomic_write_text(Path(path), "\n".join(lines) + ("\n" if lines else ""))
    return len(lines)
