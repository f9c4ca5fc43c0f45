"""Reading and writing datasets.

`load_samples` reads a file or a `save_to_disk` folder, detects the record shape, and normalises every record. By
default the first bad record raises a `DataError` naming file, line and field; with `skip_bad=True` bad records are
skipped and listed in `LoadResult.problems`.
"""
from __future__ import annotations

import json
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.data import formats, llamafactory, readers
from damoc.data.readers import Problem, Raw
from damoc.data.sample import Sample
from damoc.errors import DataError
from damoc.fsutil import atomic_write_text

MAX_LINE_BYTES = 32 * 1024 * 1024      # a single record larger than this is almost surely a broken file
FILE_TYPES = ("jsonl", "json", "csv", "tsv", "parquet", "hf-disk")
HF_DISK_FILES = ("state.json", "dataset_info.json", "dataset_dict.json")

__all__ = ["FILE_TYPES", "LoadResult", "MAX_LINE_BYTES", "Problem", "Source", "file_type_of", "iter_records",
           "load_samples", "resolve_source", "write_samples"]


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


@dataclass(frozen=True)
class Source:
    """What a dataset reference names: a file or folder, or an entry of a LLaMA-Factory `dataset_info.json`
    (`path/to/dataset_info.json:NAME`), whose records are mapped as LLaMA-Factory reads them."""
    path: Path
    entry: llamafactory.Entry | None = None

    @property
    def label(self) -> str:
        return self.entry.label if self.entry else str(self.path)


def resolve_source(ref: str | Path) -> Source:
    """The data a `--dataset` value names; a DataError when there is none (the same check wherever a dataset
    path is accepted)."""
    try:
        return _resolve(ref)
    except (OSError, ValueError) as e:         # a NUL byte, a name too long for the file system, a dead mount
        raise DataError(f"not a usable path: {e}", "check the path", path=repr(str(ref))[1:-1]) from None


def _resolve(ref: str | Path) -> Source:
    path, name = llamafactory.split_ref(ref)
    if name is not None:
        if not path.is_file():
            raise DataError("no such file", "check the path to dataset_info.json", path=str(path))
        entry = llamafactory.entry(path, name)
        return Source(path=entry.file, entry=entry)
    if not path.exists():
        raise DataError("no such file or folder", "check the path", path=str(path))
    # a LLaMA-Factory data folder (or its dataset_info.json) holds many datasets: say how to name one
    info = path / llamafactory.INFO_NAME if path.is_dir() else path
    is_hf_folder = path.is_dir() and any((path / n).exists() for n in ("state.json", "dataset_dict.json"))
    if info.name == llamafactory.INFO_NAME and info.is_file() and not is_hf_folder:
        data = _maybe_info(info)
        if data is not None:
            raise llamafactory.not_a_dataset(info, data)
    return Source(path=path)


def _maybe_info(info: Path) -> dict[str, Any] | None:
    try:
        data = json.loads(info.read_text(encoding="utf-8-sig"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError):
        return None
    return data if llamafactory.is_info(data) else None


def file_type_of(path: Path) -> str:
    if path.is_dir():
        if any((path / n).exists() for n in HF_DISK_FILES):
            return "hf-disk"
        raise DataError("folder is not a dataset saved with `save_to_disk` (no dataset_info.json/state.json)",
                        "pass a JSONL/JSON/CSV/Parquet file or a save_to_disk folder", path=str(path))
    if not path.is_file():
        raise DataError("not a regular file", "pass a JSONL/JSON/CSV/Parquet file or a save_to_disk folder",
                        path=str(path))
    suffix = path.suffix.lower().lstrip(".")
    head = readers.head_text(path, 4096).lstrip()
    if suffix in ("jsonl", "ndjson"):
        return "json" if head.startswith("[") else "jsonl"
    if suffix == "json":
        return "jsonl" if readers.looks_like_jsonl(path) else "json"
    if suffix in ("csv", "tsv", "parquet"):
        return suffix
    # unknown extension: sniff the first non-blank bytes
    if readers.read_head(path, 4) == b"PAR1":
        return "parquet"
    if head.startswith("["):
        return "json"
    if head.startswith("{"):
        return "jsonl" if readers.looks_like_jsonl(path) or "\n" not in head.strip() else "json"
    raise DataError(f"cannot tell the file type from the name {path.name!r}",
                    "use one of .jsonl .json .csv .tsv .parquet", path=str(path))


def iter_records(path: Path, file_type: str, split: str = "train") -> Iterator[Raw]:
    """Every record of a file, with where it starts; the one reader behind every stage."""
    if file_type == "jsonl":
        return readers.iter_jsonl(path, MAX_LINE_BYTES)
    if file_type == "json":
        return readers.iter_json(path)
    if file_type in ("csv", "tsv"):
        return readers.iter_csv(path, "\t" if file_type == "tsv" else ",")
    if file_type == "parquet":
        return readers.iter_parquet(path)
    return readers.iter_hf_disk(path, split)


def load_samples(path: str | Path, *, format: str = "auto", skip_bad: bool = False, split: str = "train",
                 limit: int | None = None, allow_empty: bool = False) -> LoadResult:
    """Load and normalise a dataset (a file, a `save_to_disk` folder, or `dataset_info.json:NAME`). Raises
    `DataError` on the first bad record unless `skip_bad`; nothing else escapes for any file content."""
    if format != "auto" and format not in formats.FORMATS:
        raise DataError(f"unknown format {format!r}", f"use auto or one of {', '.join(formats.FORMATS)}")
    src = resolve_source(path)
    where = src.label
    ftype = file_type_of(src.path)
    problems: list[Problem] = []
    samples: list[Sample] = []
    seen_ids: dict[str, int] = {}
    fmt: str | None = (format if format != "auto" else src.entry.format if src.entry else None)
    pending: list[tuple[Raw, dict[str, Any]]] = []
    excluded: dict[str, int] = {}
    records = 0
    stem = Path(src.path).stem if src.entry is None else src.entry.name

    def fail(p: Problem) -> None:
        hint = p.hint or "fix the record"
        if "--skip-bad" not in hint:
            hint += "; or pass --skip-bad to skip bad records and report them"
        msg = p.message if p.line is not None or p.record is None else f"record {p.record}: {p.message}"
        raise DataError(msg, hint, path=where, line=p.line, field=p.field)

    def add(p: Problem) -> None:
        problems.append(p)
        if p.severity == "error" and not skip_bad:
            fail(p)

    def take(raw: Raw, rec: dict[str, Any]) -> None:
        assert fmt is not None
        pos = raw.line if raw.line is not None else raw.number
        rid = rec.get("id")
        scalar_id = isinstance(rid, (str, int, float)) and not isinstance(rid, bool) and rid != ""
        idx = str(rid) if scalar_id else f"{stem}-{raw.number}"
        try:
            s = formats.FORMATS[fmt](rec, idx)
        except formats.FieldProblem as e:
            add(Problem(pos, e.field, e.message, hint=e.hint, record=_record_no(raw)))
            return
        except formats.Excluded as e:
            excluded[e.reason] = excluded.get(e.reason, 0) + 1
            return
        if idx in seen_ids:
            add(Problem(pos, "id", f"duplicate id {idx!r} (first on line {seen_ids[idx]})",
                        hint="ids must be unique; pass --skip-bad to keep only the first", record=_record_no(raw)))
            return
        seen_ids[idx] = pos
        if src.entry is not None:
            s.raw = dict(raw.data or {})          # written back in the user's own shape
        samples.append(s)

    for raw in iter_records(src.path, ftype, split):
        records += 1
        for p in raw.problems:
            add(p)
        if raw.data is None:
            if not any(p.severity == "error" for p in raw.problems):
                add(Problem(raw.line if raw.line is not None else raw.number, None, "record is not an object",
                            record=_record_no(raw)))
            continue
        rec = src.entry.map(raw.data) if src.entry is not None else raw.data
        if fmt is None:
            pending.append((raw, rec))
            if len(pending) < 20:
                continue
            fmt = _detect_or_fail(pending, where)
            for r, m in pending:
                take(r, m)
            pending = []
        else:
            take(raw, rec)
        if limit is not None and len(samples) >= limit:
            break
    if pending:
        fmt = _detect_or_fail(pending, where)
        for r, m in pending:
            take(r, m)
    if limit is not None:
        del samples[limit:]          # the detection buffer may have normalised a few records past the limit
    if fmt in formats.FORMAT_NOTES:
        problems.append(Problem(None, None, formats.FORMAT_NOTES[fmt], "info"))
    for reason, n in excluded.items():
        problems.append(Problem(None, None, f"{n} record(s) left out: {reason}", "info"))
    if not samples and not allow_empty:
        what = "is empty" if records == 0 else f"has no usable sample ({len(problems)} problems)"
        if records and excluded and not any(p.severity == "error" for p in problems):
            what = "has no usable sample: " + "; ".join(excluded)
        raise DataError(what, "give a file with at least one record" if records == 0 else
                        "see `damoc data inspect` for the problems", path=where)
    return LoadResult(path=src.path, file_type=ftype, format=fmt or (format if format != "auto" else "unknown"),
                      samples=samples, problems=problems, records_read=records)


def _record_no(raw: Raw) -> int | None:
    return raw.number if raw.line != raw.number else None


def _detect_or_fail(pending: list[tuple[Raw, dict[str, Any]]], where: str) -> str:
    fmt = formats.detect([r for _, r in pending])
    if fmt is None:
        keys = sorted(set().union(*(set(r) for _, r in pending)))[:12]
        first = pending[0][0]
        raise DataError(f"cannot recognise the record shape (keys: {', '.join(map(str, keys))})",
                        "expected " + "; ".join(f"{k}: {v}" for k, v in formats.FORMAT_HELP.items())
                        + " (or pass --format)", path=where, line=first.line if first.line is not None
                        else first.number)
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
