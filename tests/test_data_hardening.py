"""Issue 16, item 5: every input that crashed the loader is now a problem naming file, line and field, and what
real exports contain (spreadsheets, Windows editors, pandas and `datasets` dumps) reads as a user expects."""
from __future__ import annotations

import csv
import json

import pytest

from damoc.data import inspect_dataset, load_samples
from damoc.data import readers
from damoc.errors import DataError
from tests.helpers.cli import damoc


def lines(path, *recs: str | bytes):
    path.write_bytes(b"".join((r if isinstance(r, bytes) else r.encode()) + b"\n" for r in recs))
    return path


def only_problem(rep, severity="error"):
    probs = [p for p in rep["problems"] if p["severity"] == severity and p["line"] is not None]
    assert probs, rep["problems"]
    return probs[0]


# -- the crashes of the issue -----------------------------------------------------------------------------------

@pytest.mark.parametrize("depth", [100, 5000, 100_000])
def test_deep_nesting_is_a_problem_on_its_line(tmp_path, depth):
    p = lines(tmp_path / "deep.jsonl", '{"question": "q", "answer": "a"}',
              '{"question": ' + "[" * depth + "]" * depth + ', "answer": "x"}')
    with pytest.raises(DataError, match=r"deep.jsonl:2.*nested"):
        load_samples(p)
    res = load_samples(p, skip_bad=True)
    assert len(res.samples) == 1 and res.problems[0].line == 2


def test_deep_nesting_in_a_json_array(tmp_path):
    p = tmp_path / "deep.json"
    p.write_text('[\n{"question": "q", "answer": "a"},\n{"question": ' + "[" * 50_000 + "]" * 50_000 + "}\n]")
    with pytest.raises(DataError, match=r"deep.json:3.*nested"):
        load_samples(p, skip_bad=True)           # the parser cannot resynchronise: the file's line is named


def test_csv_field_over_128k_is_read_with_a_warning(tmp_path):
    p = tmp_path / "big.csv"
    p.write_text('question,answer\n"' + "w " * 70_000 + '",x\n')
    res = load_samples(p)
    assert len(res.samples[0].question) == 140_000
    warn = res.problems[0]
    assert (warn.severity, warn.line, warn.field) == ("warning", 2, "question") and "KiB" in warn.message
    assert inspect_dataset(p)["ok"]


def test_csv_field_over_the_bound_names_its_line(tmp_path, monkeypatch):
    monkeypatch.setattr(readers, "CSV_MAX_FIELD", 1000)
    monkeypatch.setattr(readers, "CSV_LONG_FIELD", 100)
    import csv as csv_mod
    before = csv_mod.field_size_limit()
    csv_mod.field_size_limit(1000)
    try:
        p = tmp_path / "runaway.csv"
        p.write_text('question,answer\nq1,a1\n"an unclosed quote,a2\nq3,' + "x" * 2000 + "\n")
        with pytest.raises(DataError, match=r"runaway.csv:3.*longer than") as e:
            load_samples(p)
        assert "unclosed quote" in e.value.hint
    finally:
        csv_mod.field_size_limit(before)


@pytest.mark.parametrize("answer", ["\u00b2", "\u0663", "\uff13", "\u2460", "1.5", "-1", "ß"])
def test_mc_answer_that_is_no_index_is_named(tmp_path, answer):
    p = lines(tmp_path / "mc.jsonl", json.dumps({"question": "q", "choices": ["a", "b", "c", "d"], "answer": answer}))
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert "mc.jsonl:1" in str(e.value) and e.value.field == "answer"


def test_mc_answers_pandas_writes(tmp_path):
    recs = [{"question": "q", "choices": ["a", "b"], "answer": 1.0},      # ints become floats next to a NaN
            {"question": "q2", "choices": ["a", "b"], "answer": " 0 "},
            {"question": "q3", "options": {"A": "x", "B": "y"}, "label": "b"}]
    res = load_samples(lines(tmp_path / "mc.jsonl", *map(json.dumps, recs)))
    assert [s.answer for s in res.samples] == ["b", "a", "y"]


@pytest.mark.parametrize("value", ["NaN", "Infinity", "-Infinity", "1e999", "1" * 5000])
def test_non_values_are_rejected_with_line_and_field(tmp_path, value):
    p = lines(tmp_path / "n.jsonl", '{"question": "q", "answer": "a"}', '{"question": "q2", "answer": %s}' % value)
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert (e.value.line, e.value.field) == (2, "answer") and "not a value" in str(e.value)
    res = load_samples(p, skip_bad=True)
    assert [s.answer for s in res.samples] == ["a"]


def test_non_values_in_parquet_are_named(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.table({"question": ["q", "q2"], "answer": [1.5, float("nan")]}), tmp_path / "n.parquet")
    res = load_samples(tmp_path / "n.parquet", skip_bad=True)
    assert [s.answer for s in res.samples] == ["1.5"] and res.problems[0].field == "answer"


def test_duplicate_keys_are_named(tmp_path):
    p = lines(tmp_path / "d.jsonl", '{"question": "q", "answer": "a", "answer": "b"}',
              '{"question": "q2", "answer": "c", "answer": "c"}')
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert (e.value.line, e.value.field) == (1, "answer") and "twice" in str(e.value)
    res = load_samples(p, skip_bad=True)
    assert [s.answer for s in res.samples] == ["c"]                     # same value twice: kept, with a warning
    assert [(x.line, x.severity) for x in res.problems] == [(1, "error"), (2, "warning")]


def test_duplicate_keys_in_a_json_array_name_the_line(tmp_path):
    p = tmp_path / "d.json"
    p.write_text('[\n  {"question": "q", "answer": "a"},\n  {"question": "q",\n   "answer": "a", "answer": "b"}\n]')
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert (e.value.line, e.value.field) == (3, "answer")


@pytest.mark.parametrize("state,info", [(b"{junk", b"{}"), (b"[]", b"{}"), (b'{"_data_files": 5}', b"{}"),
                                        (None, b"\xff\xfe junk"), (b'{"_data_files": [{"filename": "no.arrow"}]}',
                                                                   b'{"features": 3}')])
def test_broken_save_to_disk_folder(tmp_path, state, info):
    d = tmp_path / "hf"
    d.mkdir()
    if state is not None:
        (d / "state.json").write_bytes(state)
    (d / "dataset_info.json").write_bytes(info)
    with pytest.raises(DataError) as e:
        load_samples(d)
    assert "save_to_disk" in str(e.value) or "save it again" in (e.value.hint or "")


def test_broken_arrow_shard(tmp_path):
    import datasets
    datasets.Dataset.from_list([{"question": "q", "answer": "a"}]).save_to_disk(str(tmp_path / "hf"))
    shard = next((tmp_path / "hf").glob("*.arrow"))
    shard.write_bytes(shard.read_bytes()[:50])
    with pytest.raises(DataError, match="save_to_disk"):
        load_samples(tmp_path / "hf")


def test_wholly_bad_file_inspect_json_prints_an_error_object(tmp_path):
    p = tmp_path / "bad.json"
    p.write_text('[{"question": "q", "answer": "a"},\n {"question": ')
    r = damoc("data", "inspect", str(p), "--json")
    assert r.returncode == 2 and "Traceback" not in r.stderr
    out = json.loads(r.stdout)
    assert out["ok"] is False and out["error"]["line"] == 2 and out["error"]["path"] == str(p)
    assert out["problems"][0]["severity"] == "error"
    r = damoc("data", "inspect", str(tmp_path / "missing.jsonl"), "--json")
    assert r.returncode == 2 and json.loads(r.stdout)["error"]["message"].endswith("no such file or folder")


CLI_CASES = {"deep": '{"question": ' + "[" * 100_000 + "]" * 100_000 + ', "answer": "x"}',
             "unicode-digit": '{"question":"q","choices":["a","b"],"answer":"\u00b2"}'}


@pytest.mark.parametrize("case", list(CLI_CASES))
def test_inspect_cli_names_the_line_without_traceback(tmp_path, case):
    p = tmp_path / "x.jsonl"
    p.write_text(CLI_CASES[case] + "\n", encoding="utf-8")
    r = damoc("data", "inspect", str(p), "--json")
    assert r.returncode == 1 and "Traceback" not in r.stderr
    rep = json.loads(r.stdout)
    assert rep["problems"][0]["line"] == 1


def test_a_bad_tokenizer_is_a_clean_error(tmp_path):
    p = lines(tmp_path / "a.jsonl", '{"question": "q", "answer": "a"}')
    r = damoc("data", "inspect", str(p), "--tokenizer", str(tmp_path / "no-such-tokenizer"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "tokenizer" in r.stderr


# -- what real exports contain -----------------------------------------------------------------------------------

def _df():
    import pandas as pd
    return pd.DataFrame({"question": ["Who?", "Where?\nreally", "x;y"], "answer": ["Bob", "Rome, Italy", 'z "q"'],
                         "n": [1.0, None, 3.0]})


EXPECTED = [("Who?", "Bob"), ("Where?\nreally", "Rome, Italy"), ("x;y", 'z "q"')]


def _pairs(res):
    return [(s.question.replace("\r\n", "\n"), s.answer) for s in res.samples]


@pytest.mark.parametrize("orient", ["records", "columns", "index", "split", "table"])
def test_pandas_to_json_orients(tmp_path, orient):
    p = tmp_path / "pd.json"
    _df().to_json(p, orient=orient)
    res = load_samples(p)
    assert _pairs(res) == EXPECTED and "index" not in res.samples[0].extra


def test_pandas_values_orient_says_it_has_no_column_names(tmp_path):
    _df().to_json(tmp_path / "v.json", orient="values")
    with pytest.raises(DataError, match="no column names"):
        load_samples(tmp_path / "v.json")


@pytest.mark.parametrize("write", [
    lambda df, p: df.to_json(p.with_suffix(".jsonl"), orient="records", lines=True),
    lambda df, p: df.to_csv(p.with_suffix(".csv")),                                     # the index, unnamed
    lambda df, p: __import__("pandas").read_csv(_tmp_csv(df, p)).to_csv(p.with_suffix(".csv"), index=False),
    lambda df, p: df.to_csv(p.with_suffix(".csv"), sep=";", index=False, encoding="utf-8-sig", lineterminator="\r\n"),
    lambda df, p: df.to_csv(p.with_suffix(".tsv"), sep="\t", index=False, encoding="utf-16"),
    lambda df, p: df.to_csv(p.with_suffix(".csv"), index=False, encoding="utf-16"),
    lambda df, p: df.to_parquet(p.with_suffix(".parquet")),
    lambda df, p: df.set_index("n").to_parquet(p.with_suffix(".parquet")),
], ids=["jsonl", "csv-index", "csv-unnamed-0", "excel-eu", "utf16-tsv", "utf16-csv", "parquet", "parquet-index"])
def test_pandas_dumps(tmp_path, write):
    write(_df(), tmp_path / "out")
    path = next(p for p in tmp_path.iterdir() if p.name.startswith("out"))
    res = load_samples(path)
    assert _pairs(res) == EXPECTED
    assert not {k for k in res.samples[0].extra if k.startswith(("Unnamed", "__index"))} and "" not in \
        res.samples[0].extra


def _tmp_csv(df, p):
    df.to_csv(p.with_name("tmp.csv.txt"))
    return p.with_name("tmp.csv.txt")


def test_datasets_dumps(tmp_path):
    import datasets
    ds = datasets.Dataset.from_pandas(_df())
    ds.to_json(str(tmp_path / "lines.json"))                  # JSON lines, although named .json
    ds.to_json(str(tmp_path / "array.json"), lines=False)
    ds.to_parquet(str(tmp_path / "d.parquet"))
    ds.save_to_disk(str(tmp_path / "disk"))
    datasets.DatasetDict({"train": ds, "test": ds.select([0])}).save_to_disk(str(tmp_path / "dict"))
    for name in ("lines.json", "array.json", "d.parquet", "disk", "dict"):
        assert _pairs(load_samples(tmp_path / name)) == EXPECTED, name
    assert len(load_samples(tmp_path / "dict", split="test").samples) == 1
    with pytest.raises(DataError, match="no split 'dev'"):
        load_samples(tmp_path / "dict", split="dev")


def test_windows_editor_files(tmp_path):
    recs = ['{"question": "q1", "answer": "a1"}', '{"question": "q2", "answer": "a2"}']
    (tmp_path / "bom.jsonl").write_bytes(b"\xef\xbb\xbf" + "\r\n".join(recs).encode() + b"\r\n")
    (tmp_path / "u16.jsonl").write_bytes("\r\n".join(recs).encode("utf-16"))
    (tmp_path / "u16be.json").write_bytes(("[" + ",\r\n".join(recs) + "]").encode("utf-16-be")
                                          .join([b"\xfe\xff", b""]))
    (tmp_path / "u32.jsonl").write_bytes("\n".join(recs).encode("utf-32"))
    for name in ("bom.jsonl", "u16.jsonl", "u16be.json", "u32.jsonl"):
        assert [s.answer for s in load_samples(tmp_path / name).samples] == ["a1", "a2"], name


def test_utf16_without_bom_and_cp1252_say_how_to_fix(tmp_path):
    (tmp_path / "nobom.csv").write_bytes("question,answer\nq,a\n".encode("utf-16-le"))
    with pytest.raises(DataError, match="UTF-16 without a byte-order mark"):
        load_samples(tmp_path / "nobom.csv")
    (tmp_path / "cp.csv").write_bytes("question,answer\nq,caf\u00e9\n".encode("cp1252"))
    with pytest.raises(DataError) as e:
        load_samples(tmp_path / "cp.csv")
    assert e.value.line == 2 and "CSV UTF-8" in e.value.hint


def test_spreadsheet_csvs(tmp_path):
    (tmp_path / "sep.csv").write_bytes(b"sep=;\r\nquestion;answer\r\nq1;a;1\r\nq2;a2\r\n")
    res = load_samples(tmp_path / "sep.csv", skip_bad=True)
    assert res.problems[0].line == 3 and "fields" in res.problems[0].message     # 3 fields, header 2
    assert [s.answer for s in res.samples] == ["a2"]
    (tmp_path / "excel.csv").write_bytes('\ufeffQuestion ,Answer\r\n"multi\r\nline",";"\r\nq2,a2,,\r\n'
                                         .lower().encode())
    res = load_samples(tmp_path / "excel.csv")
    assert [(s.question, s.answer) for s in res.samples] == [("multi\r\nline", ";"), ("q2", "a2")]
    assert [s.id for s in res.samples] == ["excel-2", "excel-4"]          # a record's id is the line it starts on
    (tmp_path / "dup.csv").write_text("question,answer,answer\nq,a,b\n")
    with pytest.raises(DataError, match="'answer' appears twice"):
        load_samples(tmp_path / "dup.csv")


def test_json_lines_and_json_swapped_extensions(tmp_path):
    (tmp_path / "a.jsonl").write_text('[{"question": "q", "answer": "a"}]')
    (tmp_path / "b.json").write_text('{"question": "q", "answer": "a"}\n{"question": "q2", "answer": "b"}\n')
    (tmp_path / "c.json").write_text('{"question": "q", "answer": "a"}')                  # one record
    assert [len(load_samples(tmp_path / n).samples) for n in ("a.jsonl", "b.json", "c.json")] == [1, 2, 1]


def test_shared_reader_in_filter_and_prepare(tmp_path):
    """The filter command and a run's prepare stage read through load_samples: the same clean error."""
    from damoc.pipeline.cells.data import run_prepare

    p = lines(tmp_path / "mc.jsonl", *[json.dumps({"question": f"q{i}", "choices": ["a", "b"], "answer": "\u00b2"})
                                       for i in range(3)])
    r = damoc("filter", str(p), "--method", "random", "--ratio", "0.5", "--out", str(tmp_path / "o.jsonl"))
    assert r.returncode == 2 and "Traceback" not in r.stderr and "mc.jsonl:1" in r.stderr
    with pytest.raises(DataError, match="mc.jsonl:1"):
        run_prepare({"train": str(p)}, tmp_path)


def test_csv_reader_leaves_the_field_limit_raised_only(tmp_path):
    csv.field_size_limit(10 * readers.CSV_MAX_FIELD)
    try:
        (tmp_path / "a.csv").write_text("question,answer\nq,a\n")
        load_samples(tmp_path / "a.csv")
        assert csv.field_size_limit() == 10 * readers.CSV_MAX_FIELD       # never lowered for other readers
    finally:
        csv.field_size_limit(readers.CSV_MAX_FIELD)


@pytest.mark.parametrize("ref", ["a\x00b.jsonl", "x" * 5000 + ".jsonl", "/proc/self/mem/x.jsonl", "/dev/null"])
def test_unusable_paths_are_data_errors(ref):
    with pytest.raises(DataError):
        load_samples(ref)
