"""`damoc run --dry-run` sizes a pick before anything is downloaded (issue 17 item 10): it reads and checks the
dataset as `damoc data inspect` does (a bad line fails with its line and fix, rc 1), and plans catalog candidates that
are not on this machine with the downloads they need and the pre-flight, instead of stopping at "no candidate can
serve as the scoring model"."""
from __future__ import annotations

import json

import pytest
from click.testing import CliRunner

from damoc.cli import cli
from damoc.errors import DamocError

PICK = "Qwen2.5-7B,Llama-3.1-8B,gemma-2-9b"


def _run(args: list[str]):
    return CliRunner(env={"COLUMNS": "200"}).invoke(cli, ["run", "--dry-run", *args], catch_exceptions=False)


@pytest.fixture
def data(tmp_path):
    p = tmp_path / "train.jsonl"
    p.write_text("".join(json.dumps({"instruction": f"question {i}?", "output": f"answer {i}"}) + "\n"
                         for i in range(40)))
    return p


def test_catalog_candidates_not_downloaded_get_a_plan_downloads_and_preflight(settings, data):
    res = _run(["--dataset", str(data), "--candidates", PICK])
    assert res.exit_code == 0, res.output
    out = res.stdout
    assert "no candidate can serve" not in out and "cannot run" not in out
    assert "alpaca (jsonl): 40 samples" in out and "no problems found" in out
    assert "Qwen2.5-7B: download Chat Qwen/Qwen2.5-7B-Instruct and Base Qwen/Qwen2.5-7B" in out
    assert "compress damoc: model Qwen2.5-7B (its Chat, once downloaded)" in out      # what would be used
    assert "downloads needed before this runs: 3 candidates" in out
    assert "pre-flight" in out and "gemma-2-9b: download" in out and "memory calib" in out
    assert "sparse merge: not known before the download" in out
    # compression off: the same, per candidate (it used to say "cannot run" for each)
    off = _run(["--dataset", str(data), "--candidates", PICK, "--set", "compress.enabled=false"])
    assert off.exit_code == 0 and "cannot run" not in off.stdout and "prune, finetune-full-s0" in off.stdout


def test_dry_run_json_lists_the_downloads(settings, data):
    res = _run(["--dataset", str(data), "--candidates", "Qwen2.5-0.5B", "--json"])
    d = json.loads(res.stdout)
    assert d["ok"] is True and d["dataset"]["samples"] == 40
    assert [x["candidate"] for x in d["downloads"]] == ["Qwen2.5-0.5B"] and d["downloads"][0]["bytes"] > 0
    assert d["preflight"]["candidates"][0]["merge_check"]["checked"] == ""
    assert any(c["candidate"] == "Qwen2.5-0.5B" and c["kind"] == "finetune" for c in d["cells"])


def test_bad_dataset_fails_with_line_and_fix(settings, tmp_path):
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps({"instruction": "a", "output": "b"}) + "\n" + '{"instruction": "x", "outp\n')
    res = _run(["--dataset", str(bad), "--candidates", "Qwen2.5-0.5B"])
    assert res.exit_code == 1
    assert "line 2" in res.stdout and "invalid JSON" in res.stdout and "each line must be one" in res.stdout
    assert "the dataset has errors" in res.stderr
    assert _run(["--dataset", str(bad), "--candidates", "Qwen2.5-0.5B", "--json"]).exit_code == 1


def test_a_dry_runs_plan_never_starts(settings, data):
    from damoc.pipeline import api

    cfg = api.load_config(None, [], {"dataset.train": str(data), "candidates": "Qwen2.5-0.5B"})
    plan = api.plan_run(settings, cfg, assume_downloads=True)
    assert [c.name for c in plan.downloads] == ["Qwen2.5-0.5B"]
    with pytest.raises(DamocError, match="not downloaded yet"):
        api.start_run(settings, cfg, plan=plan)
