"""Dataset I/O: formats, detection, and every kind of bad input the issue names."""
from __future__ import annotations

import json

import pytest

from damoc.data import inspect_dataset, load_samples, write_samples
from damoc.errors import DataError


def write_lines(path, lines):
    path.write_bytes(b"".join((l if isinstance(l, bytes) else l.encode()) + b"\n" for l in lines))
    return path


def test_alpaca_jsonl_normalises(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [json.dumps({"instruction": "Add", "input": "2 and 3", "output": "5"})])
    res = load_samples(p)
    assert res.format == "alpaca"
    s = res.samples[0]
    assert (s.instruction, s.context, s.answer) == ("Add", "2 and 3", "5")
    assert s.id == "a-1"              # generated from file stem + line
    assert "Add" in s.prompt and "2 and 3" in s.prompt


def test_sharegpt_and_messages(tmp_path):
    conv = {"id": "c1", "conversations": [{"from": "system", "value": "Be brief."}, {"from": "human", "value": "Hi?"},
                                          {"from": "gpt", "value": "Hello."}]}
    msgs = {"id": "m1", "messages": [{"role": "user", "content": "Q"}, {"role": "assistant", "content": "A"}]}
    a = load_samples(write_lines(tmp_path / "c.jsonl", [json.dumps(conv)])).samples[0]
    b = load_samples(write_lines(tmp_path / "m.jsonl", [json.dumps(msgs)])).samples[0]
    assert (a.instruction, a.question, a.answer) == ("Be brief.", "Hi?", "Hello.")
    assert (b.question, b.answer) == ("Q", "A")


def test_qa_with_context_csv(tmp_path):
    p = tmp_path / "q.csv"
    p.write_text("id,question,context,answer\nx1,Who?,Ann met Bob.,Bob\nx2,Where?,In Rome.,Rome\n")
    res = load_samples(p)
    assert res.format == "qa" and res.file_type == "csv"
    assert [s.context for s in res.samples] == ["Ann met Bob.", "In Rome."]


def test_json_list_and_parquet_and_save_to_disk(tmp_path):
    recs = [{"question": f"q{i}", "answer": f"a{i}"} for i in range(3)]
    (tmp_path / "d.json").write_text(json.dumps(recs))
    assert len(load_samples(tmp_path / "d.json").samples) == 3
    import pyarrow as pa
    import pyarrow.parquet as pq
    pq.write_table(pa.Table.from_pylist(recs), tmp_path / "d.parquet")
    assert [s.answer for s in load_samples(tmp_path / "d.parquet").samples] == ["a0", "a1", "a2"]
    import datasets
    datasets.Dataset.from_list(recs).save_to_disk(str(tmp_path / "hf"))
    res = load_samples(tmp_path / "hf")
    assert res.file_type == "hf-disk" and len(res.samples) == 3


def test_multiple_choice_letter_index_text(tmp_path):
    lines = [json.dumps({"question": "2+2?", "choices": ["3", "4"], "answer": 1}),
             json.dumps({"question": "1+1?", "choices": ["2", "3"], "answer": "A"}),
             json.dumps({"question": "0+1?", "choices": ["0", "1"], "answer": "1"})]
    res = load_samples(write_lines(tmp_path / "mc.jsonl", lines))
    assert res.format == "mc"
    assert [s.answer for s in res.samples] == ["4", "2", "1"]
    assert [s.extra["answer_index"] for s in res.samples] == [1, 0, 1]


def test_format_override(tmp_path):
    p = write_lines(tmp_path / "x.jsonl", [json.dumps({"instruction": "Say hi", "output": "hi"})])
    assert load_samples(p, format="qa").samples[0].answer == "hi"
    with pytest.raises(DataError, match="unknown format"):
        load_samples(p, format="nope")


def test_malformed_json_names_file_and_line(tmp_path):
    p = write_lines(tmp_path / "bad.jsonl", ['{"instruction":"a","output":"b"}', '{"instruction":"c","output":"d"}',
                                             '{"instruction": "e", "output"'])
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert "bad.jsonl:3" in str(e.value) and "invalid JSON" in str(e.value)
    assert "--skip-bad" in str(e.value)
    res = load_samples(p, skip_bad=True)
    assert len(res.samples) == 2 and res.problems[0].line == 3


def test_empty_file(tmp_path):
    p = tmp_path / "empty.jsonl"
    p.write_bytes(b"")
    with pytest.raises(DataError, match="is empty"):
        load_samples(p)
    rep = inspect_dataset(p)
    assert not rep["ok"] and rep["samples"] == 0


def test_non_utf8_bytes(tmp_path):
    p = write_lines(tmp_path / "latin.jsonl", ['{"instruction":"a","output":"b"}',
                                               b'{"instruction":"caf\xe9","output":"x"}'])
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert ":2" in str(e.value) and "UTF-8" in str(e.value)
    assert len(load_samples(p, skip_bad=True).samples) == 1


def test_blank_lines_are_fine(tmp_path):
    p = write_lines(tmp_path / "b.jsonl", ['{"question":"a","answer":"b"}', "", "   ", '{"question":"c","answer":"d"}'])
    res = load_samples(p)
    assert len(res.samples) == 2 and not res.problems
    assert res.samples[1].id == "b-4"      # line numbers count blank lines


def test_duplicate_ids(tmp_path):
    p = write_lines(tmp_path / "d.jsonl", ['{"id":"1","question":"a","answer":"b"}',
                                           '{"id":"1","question":"c","answer":"d"}'])
    with pytest.raises(DataError, match="duplicate id '1'"):
        load_samples(p)
    res = load_samples(p, skip_bad=True)
    assert [s.answer for s in res.samples] == ["b"] and res.problems[0].field == "id"


def test_missing_and_empty_answers(tmp_path):
    p = write_lines(tmp_path / "m.jsonl", ['{"instruction":"a","output":"b"}', '{"instruction":"c","output":""}',
                                           '{"instruction":"e"}'])
    with pytest.raises(DataError) as e:
        load_samples(p)
    assert "m.jsonl:2" in str(e.value) and "output" in str(e.value)
    res = load_samples(p, skip_bad=True)
    assert len(res.samples) == 1 and [pr.line for pr in res.problems] == [2, 3]


def test_huge_line(tmp_path, monkeypatch):
    import damoc.data.io as io_mod
    monkeypatch.setattr(io_mod, "MAX_LINE_BYTES", 1000)
    big = json.dumps({"instruction": "x" * 5000, "output": "y"})
    p = write_lines(tmp_path / "h.jsonl", ['{"instruction":"a","output":"b"}', big, '{"instruction":"c","output":"d"}'])
    with pytest.raises(DataError, match="h.jsonl:2.*longer than"):
        load_samples(p)
    res = load_samples(p, skip_bad=True)
    assert [s.answer for s in res.samples] == ["b", "d"]


def test_unrecognised_shape(tmp_path):
    p = write_lines(tmp_path / "u.jsonl", ['{"foo": 1, "bar": 2}'])
    with pytest.raises(DataError, match="cannot recognise"):
        load_samples(p)


def test_write_roundtrip_original_and_normalised(tmp_path):
    p = write_lines(tmp_path / "a.jsonl", [json.dumps({"id": "k", "instruction": "I", "input": "C", "output": "O",
                                                        "meta": 7})])
    s = load_samples(p).samples
    write_samples(s, tmp_path / "orig.jsonl", original=True)
    assert json.loads((tmp_path / "orig.jsonl").read_text()) == {"id": "k", "instruction": "I", "input": "C",
                                                                  "output": "O", "meta": 7}
    write_samples(s, tmp_path / "norm.jsonl")
    again = load_samples(tmp_path / "norm.jsonl").samples[0]
    assert (again.id, again.instruction, again.context, again.answer, again.extra["meta"]) == ("k", "I", "C", "O", 7)


def test_inspect_counts_and_token_stats(tmp_path):
    p = write_lines(tmp_path / "t.jsonl", [json.dumps({"question": "one two three", "answer": "four five"}),
                                           json.dumps({"question": "six", "answer": "seven"}), "{oops"])
    rep = inspect_dataset(p)
    assert rep["samples"] == 2 and rep["records"] == 3 and rep["skipped"] == 1 and not rep["ok"]
    assert rep["token_lengths"]["question"]["max"] == 3 and rep["token_lengths"]["answer"]["mean"] == 1.5
    assert rep["problems"][0]["line"] == 3


@pytest.mark.parametrize("name,fmt,count", [("pubmedqa/train.jsonl", "qa", 500), ("billsum/train.jsonl", "alpaca", 326),
                                            ("squad/test.jsonl", "qa", 2494), ("mmlu/dev.jsonl", "mc", 285),
                                            ("alpaca/train.jsonl", "alpaca", 3964)])
def test_inspect_shared_datasets(shared_data, name, fmt, count):
    rep = inspect_dataset(shared_data / name)
    assert rep["format"] == fmt and rep["samples"] == count


def test_squad_references_include_all_answers(shared_data):
    s = load_samples(shared_data / "squad/test.jsonl", limit=5).samples[0]
    assert s.answer in s.references and len(s.references) >= 1


def test_limit_is_exact_even_below_the_detection_buffer(tmp_path):
    p = write_lines(tmp_path / "l.jsonl", [json.dumps({"question": f"q{i}", "answer": "a"}) for i in range(50)])
    assert len(load_samples(p, limit=5).samples) == 5
