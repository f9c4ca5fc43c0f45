"""File readers: bytes on disk to raw records, each with where it came from.

One reader per file type, shared by `load_samples` (and so by `data inspect`, `filter`, `compress` and a run's
prepare stage). A reader never lets a library's own exception out: what is wrong with one record becomes a
`Problem` and the record is yielded as `None`; what makes the whole file unreadable becomes a `DataError` naming
file and line. What real exports contain is read as a user expects: a UTF-8 byte-order mark (Excel, Windows
editors), UTF-16/32 with a byte-order mark (Notepad's "Unicode", Excel's "Unicode text"), CRLF line ends, `;` as the
CSV delimiter (Excel in European locales, and its `sep=;` first line), quoted newlines, pandas' index columns and its
`orient="columns"|"index"|"split"|"table"` JSON, JSON Lines saved as `.json` (`datasets`' `to_json`), Parquet and
`save_to_disk` folders.
"""
from __future__ import annotations

import codecs
import csv
import io
import json
import math
import re
from collections.abc import Iterable, Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from damoc.errors import DataError

MAX_DEPTH = 64                       # nesting deeper than this is never a fine-tuning record (and would overflow
                                     # the recursion of every JSON writer downstream)
CSV_MAX_FIELD = 16 * 1024 * 1024     # csv's own limit is 128 KiB; long answers exceed it, 16 MiB bounds a runaway
CSV_LONG_FIELD = 128 * 1024          # above csv's default limit: read, with a warning (often an unclosed quote)
INT_MAX_DIGITS = 4300                # Python's int-from-string limit; longer digit runs are no record's value
PANDAS_INDEX = re.compile(r"^(Unnamed: \d+|__index_level_\d+__)$")
SNIFF_DELIMITERS = (",", ";", "\t", "|")
_BOMS = ((codecs.BOM_UTF32_LE, "utf-32"), (codecs.BOM_UTF32_BE, "utf-32"), (codecs.BOM_UTF8, "utf-8-sig"),
         (codecs.BOM_UTF16_LE, "utf-16"), (codecs.BOM_UTF16_BE, "utf-16"))


@dataclass
class Problem:
    line: int | None          # 1-based line where the record starts (JSONL/CSV/JSON arrays) or record number
                              # (Parquet, folders)
    field: str | None
    message: str
    severity: str = "error"   # error: the record was rejected; warning: kept (or left out by design), worth knowing
    hint: str | None = None
    record: int | None = None  # 1-based record number where it differs from `line` (JSON, Parquet, folders)

    def describe(self, path: str | Path = "") -> str:
        where = f"{path}:{self.line}" if self.line is not None else str(path)
        fld = f" field {self.field!r}" if self.field else ""
        hint = f" ({self.hint})" if self.hint else ""
        return f"{where}:{fld} {self.message}{hint}"

    def to_dict(self) -> dict[str, Any]:
        d: dict[str, Any] = {"line": self.line, "field": self.field, "message": self.message,
                             "severity": self.severity, "hint": self.hint}
        if self.record is not None:
            d["record"] = self.record
        return d


@dataclass
class Raw:
    """One record as read: `number` names it in generated ids (the line for JSONL/CSV, the position otherwise)."""
    number: int
    line: int | None
    data: dict[str, Any] | None              # None: unreadable, the reason is in `problems`
    problems: list[Problem] = field(default_factory=list)


# -- text ------------------------------------------------------------------------------------------------------

def encoding_of(head: bytes) -> str | None:
    """The encoding a byte-order mark announces, or None (then the file must be UTF-8)."""
    for bom, enc in _BOMS:
        if head.startswith(bom):
            return enc
    return None


def _utf8_problem(raw: bytes, start: int) -> tuple[str, str]:
    if raw.count(b"\x00") > len(raw) // 8:
        return ("looks like UTF-16 without a byte-order mark",
                "re-save the file as UTF-8 (or UTF-16 with a BOM)")
    return (f"not valid UTF-8 (byte {start}: {raw[start:start + 1]!r})",
            "re-encode the file as UTF-8, e.g. iconv -f cp1252 -t utf-8 (Excel: save as 'CSV UTF-8')")


def read_text(path: Path) -> str:
    """The whole file as text: UTF-8 (a BOM is dropped), or UTF-16/32 when a BOM says so. CRLF stays (the JSON and
    CSV parsers read it); a decoding error names its line."""
    data = _read_bytes(path)
    enc = encoding_of(data[:4])
    if enc is None and data[:4096].count(b"\x00") > len(data[:4096]) // 8:
        msg, hint = _utf8_problem(data[:4096], 0)
        raise DataError(msg, hint, path=str(path), line=1)
    try:
        return data.decode(enc or "utf-8")
    except UnicodeDecodeError as e:
        line = data[: e.start].count(b"\n") + 1
        msg, hint = _utf8_problem(data[:4096], e.start) if enc is None else (f"not valid {enc}: {e.reason}",
                                                                             "re-save the file as UTF-8")
        raise DataError(msg, hint, path=str(path), line=line) from None


def _read_bytes(path: Path) -> bytes:
    try:
        return path.read_bytes()
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", "check the file's permissions", path=str(path)) from None


def read_head(path: Path, size: int) -> bytes:
    try:
        with open(path, "rb") as f:
            return f.read(size)
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", "check the file's permissions", path=str(path)) from None


def head_text(path: Path, size: int = 65536) -> str:
    """The start of a file decoded for sniffing only (undecodable bytes replaced)."""
    head = read_head(path, size)
    enc = encoding_of(head[:4])
    return head.decode(enc or "utf-8", errors="replace").lstrip("\ufeff")


# -- JSON ------------------------------------------------------------------------------------------------------

class _Bad:
    """Stands in for a JSON value that is not a value (NaN, Infinity, a 5000-digit integer) until the record's
    walk names its field."""
    __slots__ = ("text",)

    def __init__(self, text: str) -> None:
        self.text = text


class JsonParser:
    """`json` with the checks the stdlib leaves out: duplicate keys (the stdlib keeps the last one silently),
    NaN/Infinity (read as floats, then as the text "nan"), integers past Python's digit limit, and nesting deeper
    than `MAX_DEPTH` (or the interpreter's recursion limit)."""

    def __init__(self) -> None:
        self.duplicates: list[tuple[str, bool]] = []       # (key, same value both times)
        self.decoder = json.JSONDecoder(object_pairs_hook=self._pairs, parse_constant=_Bad,
                                        parse_float=self._float, parse_int=self._int)

    def _pairs(self, pairs: list[tuple[str, Any]]) -> dict[str, Any]:
        d: dict[str, Any] = {}
        for k, v in pairs:
            if k in d:
                self.duplicates.append((k, _same(d[k], v)))
            d[k] = v
        return d

    @staticmethod
    def _float(s: str) -> float | _Bad:
        v = float(s)
        return v if math.isfinite(v) else _Bad(s)

    @staticmethod
    def _int(s: str) -> int | _Bad:
        return int(s) if len(s.lstrip("-")) <= INT_MAX_DIGITS else _Bad(f"an integer of {len(s)} digits")

    def raw_decode(self, text: str, pos: int) -> tuple[Any, int]:
        """One value from `pos`: raises `json.JSONDecodeError`, or `DeepError` for nesting the parser cannot take."""
        try:
            return self.decoder.raw_decode(text, pos)
        except RecursionError:
            raise DeepError() from None


class DeepError(Exception):
    pass


def _same(a: Any, b: Any) -> bool:
    try:
        return bool(a == b)
    except RecursionError:
        return False


def check_record(rec: dict[str, Any], problems: list[Problem], line: int | None, record: int | None,
                 duplicates: Sequence[tuple[str, bool]] = ()) -> bool:
    """Walk a parsed record (iteratively: no recursion on hostile depth): non-values become None with a problem
    naming their field, too-deep nesting rejects the record. Returns False when the record is rejected."""
    ok = True
    for key, same in duplicates:
        if same:
            problems.append(Problem(line, key, f"key {key!r} appears twice (same value)", "warning",
                                    "remove the repeated key", record=record))
        else:
            problems.append(Problem(line, key, f"key {key!r} appears twice with different values",
                                    hint="keep one of them: JSON readers disagree on which one wins", record=record))
            ok = False
    stack: list[tuple[Any, str, int]] = [(rec, "", 0)]
    while stack:
        node, where, depth = stack.pop()
        if depth > MAX_DEPTH:
            problems.append(Problem(line, where or None, f"nested more than {MAX_DEPTH} levels deep",
                                    hint="a fine-tuning record holds text, not deep structures", record=record))
            return False
        items = node.items() if isinstance(node, dict) else enumerate(node) if isinstance(node, list) else ()
        for k, v in items:
            sub = f"{where}.{k}" if isinstance(k, str) and where else k if isinstance(k, str) else f"{where}[{k}]"
            bad = v.text if isinstance(v, _Bad) else (repr(v) if isinstance(v, float) and not math.isfinite(v)
                                                      else None)
            if bad is not None:
                node[k] = None
                problems.append(Problem(line, sub, f"{bad} is not a value",
                                        hint="write the value as text or a finite number (or null when missing)",
                                        record=record))
                ok = False
            elif isinstance(v, (dict, list)):
                stack.append((v, sub, depth + 1))
    return ok


def _deep_message() -> str:
    return "JSON nested too deeply to read (thousands of levels)"


def iter_jsonl(path: Path, max_line: int) -> Iterator[Raw]:
    """JSON Lines, streamed line by line (UTF-8; a UTF-16/32 file with a BOM is decoded whole first)."""
    enc = encoding_of(read_head(path, 4))
    if enc is not None and enc != "utf-8-sig":
        yield from _jsonl_lines(path, enumerate(io.StringIO(read_text(path)), 1))
        return
    yield from _jsonl_lines(path, _utf8_lines(path, max_line))


def _utf8_lines(path: Path, max_line: int) -> Iterator[tuple[int, str | Problem]]:
    try:
        f = open(path, "rb")
    except OSError as e:
        raise DataError(f"cannot read: {e.strerror or e}", "check the file's permissions", path=str(path)) from None
    with f:
        lineno = 0
        while True:
            raw = f.readline(max_line + 1)
            if not raw:
                break
            lineno += 1
            if lineno == 1 and raw.startswith(codecs.BOM_UTF8):
                raw = raw[len(codecs.BOM_UTF8):]
            if len(raw) > max_line and not raw.endswith(b"\n"):
                while raw and not raw.endswith(b"\n"):     # swallow the rest of the oversized line
                    raw = f.readline(max_line)
                yield lineno, Problem(lineno, None, f"line longer than {max_line / 2**20:g} MiB",
                                      hint="split the record or check the file is really JSON lines")
                continue
            try:
                yield lineno, raw.decode("utf-8")
            except UnicodeDecodeError as e:
                msg, hint = _utf8_problem(raw, e.start)
                yield lineno, Problem(lineno, None, msg, hint=hint)


def _jsonl_lines(path: Path, lines: Iterable[tuple[int, str | Problem]]) -> Iterator[Raw]:
    parser = JsonParser()
    for lineno, text in lines:
        if isinstance(text, Problem):
            yield Raw(lineno, lineno, None, [text])
            continue
        if not text.strip():
            continue          # blank lines are allowed (and counted in line numbers)
        parser.duplicates = []
        text = text.rstrip("\r\n")      # a column past the line's end would read as column 1 of a next line
        try:
            obj, end = parser.raw_decode(text, len(text) - len(text.lstrip()))
            if text[end:].strip():
                raise json.JSONDecodeError("extra data after the object", text, end)
        except json.JSONDecodeError as e:
            yield Raw(lineno, lineno, None, [Problem(lineno, None, json_problem(e),
                                                     hint="each line must be one complete JSON object")])
            continue
        except DeepError:
            yield Raw(lineno, lineno, None, [Problem(lineno, None, _deep_message(),
                                                     hint="a fine-tuning record holds text, not deep structures")])
            continue
        yield _checked(obj, lineno, lineno, None, parser.duplicates)


def _checked(obj: Any, number: int, line: int | None, record: int | None,
             duplicates: list[tuple[str, bool]]) -> Raw:
    if not isinstance(obj, dict):
        what = "a list" if isinstance(obj, list) else type(obj).__name__ if not isinstance(obj, _Bad) else obj.text
        return Raw(number, line, None, [Problem(line, None, f"expected a JSON object, got {what}", record=record)])
    problems: list[Problem] = []
    ok = check_record(obj, problems, line, record, duplicates)
    return Raw(number, line, obj if ok else None, problems)


def looks_like_jsonl(path: Path) -> bool:
    """A `.json` file that holds one object per line (what `datasets`' `Dataset.to_json` writes by default)."""
    head = head_text(path)
    first, _, rest = head.lstrip().partition("\n")
    if not first.startswith("{") or not rest.strip():
        return False
    try:
        json.loads(first)
    except (ValueError, RecursionError):
        return False
    return rest.lstrip().startswith("{")


def json_problem(e: json.JSONDecodeError) -> str:
    """`invalid JSON: ...` for a decode error, in words that fit its position: json's own messages end in "at"
    ("Unterminated string starting at"), so the column is said once; a line that stops inside a value says
    where it stops (a record cut short), not only where the broken value began."""
    msg = e.msg.removesuffix(" at").rstrip()
    line_start = e.doc.rfind("\n", 0, e.pos) + 1
    line_end = e.doc.find("\n", e.pos)
    text = e.doc[line_start:line_end if line_end >= 0 else len(e.doc)].rstrip()
    cut = e.msg.startswith(("Unterminated string", "Invalid control character")) or e.pos >= line_start + len(text)
    where = f"column {e.colno}"
    if cut and len(text) + 1 != e.colno:
        where += f"; the line stops at column {len(text)}, inside that value (cut short?)"
    elif cut:
        where += " (the end of the line: the record stops early, cut short?)"
    return f"invalid JSON: {msg} at {where}"


def _decode(parser: JsonParser, text: str, pos: int, path: Path, *, line: int) -> tuple[Any, int]:
    """One JSON value at `pos`; a DataError naming the line for bad syntax or a structure nested too deeply."""
    try:
        return parser.raw_decode(text, pos)
    except json.JSONDecodeError as e:
        raise DataError(json_problem(e), "fix the JSON syntax", path=str(path), line=e.lineno) from None
    except DeepError:
        raise DataError(_deep_message(), "a fine-tuning record holds text, not deep structures", path=str(path),
                        line=line) from None


def iter_json(path: Path) -> Iterator[Raw]:
    """A JSON document: a list of records, an object wrapping one (`data`, `train`, ...), or a pandas
    `to_json` layout (`columns`, `index`, `split`, `table`)."""
    text = read_text(path).lstrip("\ufeff")
    start = len(text) - len(text.lstrip())
    parser = JsonParser()
    if text.startswith("[", start):
        yield from _json_array(path, text, start, parser)
        return
    data, end = _decode(parser, text, start, path, line=1)
    if text[end:].strip():
        line = text.count("\n", 0, end) + 1
        raise DataError("invalid JSON: extra data after the first value", "one JSON document per .json file "
                        "(JSON Lines go in .jsonl)", path=str(path), line=line)
    if not isinstance(data, dict):
        raise DataError(f"expected a JSON list of records, got {type(data).__name__}", path=str(path))
    dup_top = list(parser.duplicates)
    rows = _unwrap(data, path)
    for i, rec in enumerate(rows, 1):
        yield _checked(rec, i, None, i, dup_top if i == 1 else [])


def _json_array(path: Path, text: str, start: int, parser: JsonParser) -> Iterator[Raw]:
    pos, n, line, counted = start + 1, 0, 1, 0
    ws = re.compile(r"\s*")

    def line_at(p: int) -> int:
        nonlocal line, counted
        line += text.count("\n", counted, p)
        counted = p
        return line

    while True:
        pos = ws.match(text, pos).end()   # type: ignore[union-attr]
        if text.startswith("]", pos):
            break
        if n:
            if not text.startswith(",", pos):
                raise DataError("invalid JSON: expected ',' or ']' between records", "fix the JSON syntax",
                                path=str(path), line=line_at(pos))
            pos = ws.match(text, pos + 1).end()   # type: ignore[union-attr]
        n += 1
        at = line_at(pos)
        parser.duplicates = []
        obj, pos = _decode(parser, text, pos, path, line=at)
        if n == 1 and isinstance(obj, list):
            raise DataError("a list of lists has no column names (pandas to_json(orient='values'))",
                            "write records: df.to_json(path, orient='records')", path=str(path), line=at)
        yield _checked(obj, n, at, n, parser.duplicates)
    if text[pos + 1:].strip():
        raise DataError("invalid JSON: extra data after the list", "fix the JSON syntax", path=str(path),
                        line=line_at(pos + 1))


def _unwrap(data: dict[str, Any], path: Path) -> list[Any]:
    """The records of a JSON object: a wrapped list, or one of pandas' `to_json` orientations."""
    for key in ("data", "train", "examples", "rows", "instances"):
        v = data.get(key)
        if isinstance(v, list):
            if key == "data" and isinstance(data.get("columns"), list):        # orient="split"
                cols = [str(c) for c in data["columns"]]
                return [dict(zip(cols, r)) if isinstance(r, list) and len(r) == len(cols) else r for r in v]
            schema = data.get("schema")                                        # orient="table": drop the index
            pk = schema.get("primaryKey") if isinstance(schema, dict) else None
            if isinstance(pk, list):
                return [{k: x for k, x in r.items() if k not in pk} if isinstance(r, dict) else r for r in v]
            return v
    if data and all(isinstance(v, dict) for v in data.values()):
        inner = [set(v) for v in data.values()]
        if all(k.lstrip("-").isdigit() for s in inner for k in s):                # orient="columns"
            index = sorted(set().union(*inner), key=lambda k: int(k))
            return [{c: col.get(i) for c, col in data.items()} for i in index]
        if all(k.lstrip("-").isdigit() for k in data):                            # orient="index"
            return list(data.values())
    if data and not any(isinstance(v, (dict, list)) and k in ("data", "train") for k, v in data.items()):
        return [data]                      # a file holding a single record
    raise DataError("expected a JSON list of records (or an object with a 'data' list)",
                    "write a list: [{...}, {...}], or JSON lines (.jsonl)", path=str(path))


# -- CSV -------------------------------------------------------------------------------------------------------

def _sniff_delimiter(first_line: str, default: str) -> str:
    """The delimiter that splits the header into the most columns (Excel writes `;` in locales with a decimal
    comma); the file type's own delimiter when none splits it."""
    best, cols = default, 1
    for d in SNIFF_DELIMITERS:
        try:
            n = len(next(csv.reader([first_line.rstrip("\r\n")], delimiter=d), []))
        except csv.Error:         # a header csv cannot split: the reader below reports it with its line
            continue
        if n > cols:
            best, cols = d, n
    return best


def iter_csv(path: Path, delimiter: str) -> Iterator[Raw]:
    text = read_text(path).lstrip("\ufeff")
    first, _, rest = text.partition("\n")
    skip = 0
    m = re.fullmatch(r"\s*sep=(.)\s*", first)              # Excel's delimiter hint line
    if m:
        delimiter, text, skip = m.group(1), rest, 1
    elif delimiter == ",":
        delimiter = _sniff_delimiter(first, delimiter)
    # csv's limit is process-wide; raising it (never lowering it) is harmless to other readers
    csv.field_size_limit(max(csv.field_size_limit(), CSV_MAX_FIELD))
    reader = csv.reader(io.StringIO(text, newline=""), delimiter=delimiter)
    try:
        header = next(reader, None)
    except csv.Error as e:
        raise DataError(f"cannot read the CSV header: {e}", path=str(path), line=1 + skip) from None
    if header is None:
        return
    names = [h.strip() for h in header]
    seen: set[str] = set()
    for h in names:
        if h in seen and h:
            raise DataError(f"column {h!r} appears twice in the header", "give each column its own name",
                            path=str(path), line=1 + skip)
        seen.add(h)
    keep = [i for i, h in enumerate(names) if h and not PANDAS_INDEX.match(h)]   # drop pandas' index column
    last = reader.line_num
    number = 0
    while True:
        start = last + 1 + skip
        try:
            row = next(reader)
        except StopIteration:
            break
        except csv.Error as e:
            msg = str(e)
            if "field larger than field limit" in msg:
                msg = f"a field is longer than {CSV_MAX_FIELD // 2**20} MiB"
                hint = "check for an unclosed quote: a quoted field runs on to the next quote"
            else:
                hint = "fix the quoting of this row"
            raise DataError(f"cannot read CSV: {msg}", hint, path=str(path), line=start) from None
        last = reader.line_num
        if not any(v.strip() for v in row):
            continue
        number = start
        problems: list[Problem] = []
        if len(row) > len(names) and any(v.strip() for v in row[len(names):]):
            yield Raw(number, start, None, [Problem(start, None, f"row has {len(row)} fields, the header "
                                                    f"{len(names)}", hint=f"check the quoting (delimiter "
                                                    f"{delimiter!r})")])
            continue
        rec = {names[i]: (row[i] if i < len(row) else None) for i in keep}
        for k, v in rec.items():
            if v is not None and len(v) > CSV_LONG_FIELD:
                problems.append(Problem(start, k, f"field is {len(v) // 1024} KiB long", "warning",
                                        "fine if intended; otherwise look for an unclosed quote"))
        yield Raw(number, start, rec, problems)


# -- Parquet and save_to_disk folders ---------------------------------------------------------------------------

def iter_parquet(path: Path) -> Iterator[Raw]:
    import pyarrow.parquet as pq

    try:
        rows = pq.read_table(path).to_pylist()
    except Exception as e:  # pyarrow raises ArrowInvalid, OSError, ValueError... for a broken file
        raise DataError(f"cannot read Parquet: {e}", "check the file is a complete Parquet file",
                        path=str(path)) from None
    yield from _rows(rows)


def _rows(rows: list[Any]) -> Iterator[Raw]:
    for i, rec in enumerate(rows, 1):
        if isinstance(rec, dict):
            rec = {k: v for k, v in rec.items() if not (isinstance(k, str) and PANDAS_INDEX.match(k))}
        yield _checked(rec, i, i, i, [])


def _hf_json(path: Path, name: str) -> None:
    f = path / name
    if not f.exists():
        return
    try:
        data = json.loads(f.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, ValueError, RecursionError) as e:
        raise DataError(f"{name} is not readable JSON ({type(e).__name__})",
                        "the folder is not a complete `save_to_disk` output: save it again", path=str(f)) from None
    if not isinstance(data, dict):
        raise DataError(f"{name} is not a JSON object", "the folder is not a complete `save_to_disk` output: "
                        "save it again", path=str(f))


def iter_hf_disk(path: Path, split: str) -> Iterator[Raw]:
    for name in ("state.json", "dataset_info.json", "dataset_dict.json"):
        _hf_json(path, name)
    import datasets

    try:
        ds = datasets.load_from_disk(str(path))
        if isinstance(ds, datasets.DatasetDict):
            if split not in ds:
                raise DataError(f"no split {split!r}; the folder has {', '.join(ds)}", "pass --split NAME",
                                path=str(path))
            ds = ds[split]
        rows = ds.to_list()
    except DataError:
        raise
    except Exception as e:  # datasets/pyarrow raise many types for a broken folder; none is the user's bug
        raise DataError(f"cannot read the save_to_disk folder: {type(e).__name__}: {e}"[:300],
                        "the folder is not a complete `save_to_disk` output: save it again", path=str(path)) from None
    yield from _rows(rows)
