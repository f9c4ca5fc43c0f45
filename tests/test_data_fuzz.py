"""Property: whatever bytes a dataset file holds, `load_samples` and `inspect_dataset` either read it or raise
`DataError`; no other exception escapes (the loader is shared by `data inspect`, `filter`, `compress` and a run's
prepare stage, so this covers them all). Bounded to stay in the suite: ~150 examples a format, a few seconds each."""
from __future__ import annotations

import io
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from damoc.data import inspect_dataset, load_samples
from damoc.errors import DamocError

FUZZ = settings(max_examples=150, deadline=None, derandomize=True, database=None,
                suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow,
                                       HealthCheck.data_too_large])

_scalars = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=True, allow_infinity=True),
                     st.text(max_size=30))
_values = st.recursive(_scalars, lambda kids: st.one_of(st.lists(kids, max_size=4),
                                                        st.dictionaries(st.text(max_size=8), kids, max_size=4)),
                       max_leaves=12)
_KEYS = ["question", "answer", "instruction", "input", "output", "context", "choices", "options", "label", "id",
         "messages", "conversations", "role", "content", "from", "value", "chosen", "rejected", "prompt",
         "completion", "tools", "system", "type", "text"]
# records near the real shapes, with wrong types anywhere
_records = st.dictionaries(st.sampled_from(_KEYS) | st.text(max_size=6), _values, max_size=6)
_turn = st.fixed_dictionaries({"role": st.sampled_from(["user", "assistant", "system", "tool", "gpt", "x", 3]),
                               "content": _values})
_chats = st.fixed_dictionaries({"messages": st.lists(_turn | _values, max_size=4)},
                               optional={"chosen": _values, "rejected": _values, "label": _values,
                                         "tools": _values})
_mc = st.fixed_dictionaries({"question": _values, "choices": st.lists(_values, max_size=4) | _values,
                             "answer": _values | st.sampled_from(["\u00b2", "\u0663", "\uff13", "B", "ß", "1.0"])})
RECORDS = st.lists(_records | _chats | _mc, min_size=0, max_size=6)


def mangle(data: bytes, draw: st.DrawFn) -> bytes:
    """Damage a well-formed file the way disks, editors and bad exports do."""
    how = draw(st.sampled_from(["none", "truncate", "flip", "insert", "bom", "utf16", "nul", "deep", "huge"]))
    if how == "truncate" and data:
        return data[: draw(st.integers(0, len(data) - 1))]
    if how == "flip" and data:
        i = draw(st.integers(0, len(data) - 1))
        return data[:i] + bytes([data[i] ^ draw(st.integers(1, 255))]) + data[i + 1:]
    if how == "insert":
        i = draw(st.integers(0, len(data)))
        return data[:i] + draw(st.binary(min_size=1, max_size=12)) + data[i:]
    if how == "bom":
        return draw(st.sampled_from([b"\xef\xbb\xbf", b"\xff\xfe", b"\xfe\xff", b"\xff\xfe\x00\x00"])) + data
    if how == "utf16":
        return data.decode("utf-8", "replace").encode(draw(st.sampled_from(["utf-16", "utf-16-le", "utf-32"])))
    if how == "nul":
        return data.replace(b",", b"\x00,", 1)
    if how == "deep":
        n = draw(st.sampled_from([70, 999, 5000]))
        return b'{"question": ' + b"[" * n + b"]" * n + b', "answer": "x"}\n' + data
    if how == "huge":
        return data + b'"' + b"w" * draw(st.sampled_from([200_000, 17 * 2**20 // 16])) + b'",x\n'
    return data


def _jsonl(recs: list) -> bytes:
    return "".join(json.dumps(r, allow_nan=True) + "\n" for r in recs).encode()


def _json(recs: list) -> bytes:
    return json.dumps(recs, allow_nan=True, indent=1).encode()


def _csv(recs: list) -> bytes:
    import csv

    cols = sorted({k for r in recs for k in r})[:6] or ["question", "answer"]
    buf = io.StringIO()
    w = csv.writer(buf)
    w.writerow(cols)
    for r in recs:
        w.writerow([r.get(c) if not isinstance(r.get(c), (dict, list)) else json.dumps(r.get(c)) for c in cols])
    return buf.getvalue().encode()


def _parquet(recs: list) -> bytes:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        table = pa.Table.from_pylist([{k: json.dumps(v) if isinstance(v, (dict, list)) else v for k, v in r.items()}
                                      for r in recs] or [{"question": "q", "answer": "a"}])
    except (pa.ArrowException, TypeError, ValueError, OverflowError):  # mixed types per column: pyarrow refuses
        table = pa.Table.from_pylist([{"question": "q", "answer": "a"}])
    buf = pa.BufferOutputStream()
    pq.write_table(table, buf)
    return buf.getvalue().to_pybytes()


WRITERS = {"jsonl": _jsonl, "json": _json, "csv": _csv, "parquet": _parquet}


def _check(path: Path) -> None:
    for skip_bad in (False, True):
        try:
            load_samples(path, skip_bad=skip_bad)
        except DamocError:
            pass
    try:
        rep = inspect_dataset(path)
    except DamocError:
        return
    json.dumps(rep, allow_nan=False)            # the report is always valid JSON (data inspect --json prints it)


@pytest.mark.parametrize("kind", list(WRITERS))
def test_no_exception_but_data_error_escapes(kind, tmp_path):
    @FUZZ
    @given(recs=RECORDS, draw=st.data())
    def prop(recs: list, draw: st.DataObject) -> None:
        data = mangle(WRITERS[kind](recs), draw.draw)
        path = tmp_path / f"f.{kind}"
        path.write_bytes(data)
        _check(path)

    prop()


@FUZZ
@given(data=st.binary(max_size=300), suffix=st.sampled_from(["jsonl", "json", "csv", "tsv", "parquet", "dat"]))
def test_random_bytes_under_any_name(tmp_path_factory, data, suffix):
    path = tmp_path_factory.mktemp("bytes") / f"r.{suffix}"
    path.write_bytes(data)
    _check(path)


@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
@given(state=st.binary(max_size=60) | st.sampled_from([b"{}", b"[]", b'{"_data_files": 5}',
                                                      b'{"_data_files": [{"filename": "../x"}]}']),
       info=st.binary(max_size=60) | st.sampled_from([b"{}", b'{"features": 3}', b"null"]))
def test_junk_save_to_disk_folders(tmp_path_factory, state, info):
    folder = tmp_path_factory.mktemp("hf")
    (folder / "state.json").write_bytes(state)
    (folder / "dataset_info.json").write_bytes(info)
    _check(folder)
