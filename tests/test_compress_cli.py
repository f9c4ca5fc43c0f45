"""`damoc compress`: the command contract (JSON stats on stdout, the compressed file, clear errors)."""
from __future__ import annotations

import json

import pytest

from tests.helpers.cli import damoc


@pytest.fixture
def qa_file(tmp_path):
    rows = [
        {"id": "1", "question": "Which town hosts the river market every spring?",
         "context": "The river market is held in Dunny. Traders come from the hills.\nIt opens at dawn.",
         "answer": "The river market is held in Dunny every spring morning at dawn."},
        {"id": "2", "question": "Who repaired the old mill wheel?",
         "answer": "The miller's daughter repaired the old mill wheel last summer with oak boards."},
        {"id": "3", "question": "Was the harbour flag changed after the storm?", "answer": "No"},
    ]
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return p


def test_compress_json_stats_and_output(small_zoo, qa_file, tmp_path):
    from damoc.registry import register_zoo
    from damoc.settings import Settings

    register_zoo(Settings.load(), [small_zoo])
    out = tmp_path / "out.jsonl"
    # the model by registry name through --compressor, as the command line does
    p = damoc("compress", str(qa_file), "--rate", "0.5", "--compressor", small_zoo.name, "--rewriter", small_zoo.name,
              "--out", str(out), "--json")
    assert p.returncode == 0, p.stderr
    st = json.loads(p.stdout)                                 # stdout is the JSON object alone
    for k in ("keep_rate", "passed_direct", "rewritten_round_1", "rewritten_round_2", "fell_back", "samples",
              "keep_rate_by_field", "bertscore", "gate", "tokens_per_second"):
        assert k in st
    assert st["samples"] == 3 and st["compressor"] == "damoc"
    assert st["passed_direct"] + st["rewritten_round_1"] + st["rewritten_round_2"] + st["fell_back"] == 3
    assert st["gate"]["rescaled"] is False and st["gate"]["threshold_source"] == "paper-equivalent"
    assert 0.3 < st["keep_rate"] < 0.8
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert [r["id"] for r in rows] == ["1", "2", "3"]
    assert rows[1]["original"]["answer"].startswith("The miller's daughter")
    assert rows[2]["answer"] == "No" and rows[0]["compression"]["status"] in ("direct", "fell_back")
    # the compressed file loads again as a dataset
    from damoc.data import load_samples
    assert len(load_samples(out).samples) == 3


def test_compress_table_and_baseline(small_zoo, qa_file, tmp_path):
    out = tmp_path / "o.jsonl"
    p = damoc("compress", str(qa_file), "--compressor", "longllmlingua", "--model", small_zoo.chat_path,
              "--field-rate", "answer=0.6", "--out", str(out))
    assert p.returncode == 0, p.stderr
    assert "keep rate" in p.stdout and "gate: off" in p.stdout and f"wrote 3 samples to {out}" in p.stdout


def test_compress_errors_and_listing(qa_file, tmp_path):
    p = damoc("compress", "--list", "--json")
    assert p.returncode == 0 and {r["name"] for r in json.loads(p.stdout)} >= {"damoc", "llmlingua", "longllmlingua"}
    p = damoc("compress", str(qa_file), "--out", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "no compressor model" in p.stderr and "hint" in p.stderr
    p = damoc("compress", str(qa_file), "--model", str(tmp_path), "--rate", "1.5", "--out", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "rate 1.5" in p.stderr
    p = damoc("compress", str(qa_file), "--compressor", "no-such-model", "--out", str(tmp_path / "o.jsonl"))
    assert p.returncode == 2 and "no-such-model" in p.stderr
    p = damoc("compress", str(qa_file), "--model", "x", "--field-rate", "answer", "--out", str(tmp_path / "o.jsonl"))
    assert p.returncode != 0 and "FIELD=RATE" in p.stderr
