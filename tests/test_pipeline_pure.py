"""Run config, recipes, leaderboard, compare and hand-off: pure code, checked against hand-computed values."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from damoc.errors import ConfigError, UnknownNameError
from damoc.pipeline.compare import average_ranks, compare_scores, kendall_tau_b, spearman_rho
from damoc.pipeline.config import RunConfig, load_config, save_config
from damoc.pipeline.handoff import Winner, handoff_files
from damoc.pipeline.leaderboard import build_leaderboard
from damoc.pipeline.recipes import CandidateFacts, candidate_stages, data_stages, recipe_overrides


# -- config -------------------------------------------------------------------------------------------

def test_defaults_are_the_papers():
    c = RunConfig()
    assert (c.filter.method, c.filter.ratio) == ("graphcut", 0.1)
    assert (c.prune.threshold, c.prune.sparsity) == (0.85, 0.2)
    assert (c.finetune.full.lr, c.finetune.full.effective_batch, c.finetune.full.epochs) == (1e-5, 64, 3.0)
    assert c.compress.rate == 0.5 and c.compress.method == "damoc"


def test_overrides_are_typed_and_checked(tmp_path):
    c = load_config(overrides=["filter.ratio=0.2", "candidates=a,b", "finetune.full.lr=1e-3", "seeds=[0, 1]",
                               "prune.enabled=false", "filter.params.k=5"])
    assert c.filter.ratio == 0.2 and c.candidates == ["a", "b"] and c.finetune.full.lr == 1e-3
    assert c.seeds == [0, 1] and c.prune.enabled is False and c.filter.params == {"k": 5}
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["filter.ratoi=0.1"])
    assert "ratoi" in str(e.value) and "did you mean ratio" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["fliter.ratio=0.1"])
    assert "did you mean filter" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["mode=dmoc"])
    assert "did you mean 'damoc'" in str(e.value)
    with pytest.raises(ConfigError) as e:
        load_config(overrides=["filter.ratio=2"])
    assert "filter.ratio" in str(e.value)
    with pytest.raises(ConfigError):
        load_config(overrides=["no-equals-sign"])


@pytest.mark.parametrize("suffix", [".yaml", ".toml", ".json"])
def test_config_file_round_trip(tmp_path, suffix):
    c = load_config(overrides=["mode=ground-truth", "ft=both", "seeds=[1, 2]", "compress.params.x=1",
                               "dataset.test=t.jsonl"])
    p = tmp_path / f"run{suffix}"
    save_config(c, p)
    assert load_config(p) == c
    # a file value, then a --set on top of it
    assert load_config(p, ["ft=lora"]).ft == "lora"


def test_config_file_errors_name_the_file(tmp_path):
    p = tmp_path / "bad.yaml"
    p.write_text("filter:\n  methd: graphcut\n")
    with pytest.raises(ConfigError) as e:
        load_config(p)
    assert "bad.yaml" in str(e.value) and "did you mean method" in str(e.value)
    p.write_text("- a list\n")
    with pytest.raises(ConfigError):
        load_config(p)
    with pytest.raises(ConfigError):
        load_config(tmp_path / "missing.yaml")


# -- recipes ------------------------------------------------------------------------------------------

def test_recipe_follows_the_paper():
    cfg = RunConfig()
    with_base = candidate_stages(cfg, CandidateFacts("a", has_base=True, merge_supported=True))
    assert [(d.stage, d.enabled) for d in with_base] == [("prune", True), ("finetune", True), ("evaluate", True)]
    no_base = candidate_stages(cfg, CandidateFacts("b", has_base=False, merge_reason="no Base released"))
    assert not no_base[0].enabled and "no Base released" in no_base[0].reason
    drop = candidate_stages(cfg.replace(prune={"allow_no_base": True}), CandidateFacts("b", has_base=False))
    assert drop[0].enabled and "without merging" in drop[0].reason
    base = candidate_stages(cfg.replace(variant="base"), CandidateFacts("a", has_base=True, merge_supported=True))
    assert not base[0].enabled and "Base candidates are not pruned" in base[0].reason
    assert [d.stage for d in data_stages(cfg) if d.enabled] == ["prepare", "filter", "compress"]
    assert [d.stage for d in data_stages(cfg.replace(mode="ground-truth")) if d.enabled] == ["prepare"]
    zs = candidate_stages(cfg.replace(mode="zero-shot"), CandidateFacts("a", True, True))
    assert [d.stage for d in zs if d.enabled] == ["evaluate"]
    assert recipe_overrides("filter-only") == ["compress.enabled=false", "prune.enabled=false"]
    with pytest.raises(UnknownNameError):
        recipe_overrides("filter-olny")


def test_plan_cells_for_each_mode(tmp_path, settings):
    from damoc.pipeline.plan import make_plan

    data = tmp_path / "d.jsonl"
    data.write_text('{"instruction": "q", "output": "a"}\n')
    m1, m2 = tmp_path / "m1", tmp_path / "m2"
    for m in (m1, m2):
        m.mkdir()
        (m / "config.json").write_text("{}")
    base = {"dataset.train": str(data), "candidates": [str(m1), str(m2)]}
    # the default select trains each proxy on three nested shares (adaptive); one share per cell here
    assert [c.stage for c in make_plan(settings, load_config(None, [], base), with_preflight=False).cells_of("m1")] \
        == ["finetune-full-s0-p25", "finetune-full-s0-p50", "finetune-full-s0"]
    plan = make_plan(settings, load_config(None, ["ft=both", "seeds=[0, 1]", "select.sizes=[1.0]"], base),
                     with_preflight=False)
    keys = [c.key for c in plan.cells]
    assert keys[:3] == ["_data/prepare", "_data/filter", "_data/compress"]
    # ad-hoc folders have no Base: no prune cell, four proxy cells each, trained on the compressed data
    assert [c.stage for c in plan.cells_of("m1")] == ["finetune-full-s0", "finetune-full-s1", "finetune-lora-s0",
                                                      "finetune-lora-s1"]
    assert all("_data/compress" in c.needs for c in plan.cells_of("m1"))
    assert any(s["stage"] == "prune" and "no Base" in s["reason"] for s in plan.skipped)
    gt = make_plan(settings, load_config(None, ["mode=ground-truth"], base), with_preflight=False)
    assert [c.key for c in gt.cells] == ["_data/prepare", "m1/finetune-full-s0", "m2/finetune-full-s0"]
    assert gt.cells[1].params["min_steps"] == 0          # the ground truth has no proxy step floor
    zs = make_plan(settings, load_config(None, ["mode=few-shot"], base), with_preflight=False)
    assert [c.stage for c in zs.cells_of("m2")] == ["eval-few-shot"] and zs.cells[1].params["few_shot"] == 3
    # LM-based filters get a scorer: filter.scorer, else the smallest candidate (GraphCut needs none)
    assert "scorer_path" not in plan.cells[1].params
    sf = make_plan(settings, load_config(None, ["filter.method=superfiltering", f"filter.scorer={m2}"], base),
                   with_preflight=False)
    assert sf.cells[1].stage == "filter" and sf.cells[1].params["scorer_path"] == str(m2.resolve())
    sf = make_plan(settings, load_config(None, ["filter.method=cherry"], base), with_preflight=False)
    assert sf.cells[1].params["scorer_path"] in (str(m1.resolve()), str(m2.resolve()))
    with pytest.raises(ConfigError, match="filter.scorer: "):         # the error names the setting at fault
        make_plan(settings, load_config(None, ["filter.method=cherry", "filter.scorer=nosuch"], base),
                  with_preflight=False)
    with pytest.raises(ConfigError):
        make_plan(settings, load_config(None, [], {"candidates": [str(m1)]}))          # no dataset
    with pytest.raises(ConfigError):
        make_plan(settings, load_config(None, [], {"dataset.train": str(data)}))        # no candidates


# -- leaderboard --------------------------------------------------------------------------------------

def _done(**r):
    return {"state": "done", "result": r}


def test_leaderboard_against_hand_computed_values():
    cells = {
        "_data/prepare": _done(seconds=1.0), "_data/filter": _done(seconds=4.0), "_data/compress": _done(seconds=6.0),
        "A/prune": _done(layers_before=8, layers_after=6, pruned=[3, 5], merge_rule="ties", seconds=2.0),
        "A/finetune-full-s0": _done(method="full", seed=0, score=60.0, stderr=1.0, train_seconds=10.0,
                                    eval_seconds=3.0),
        "A/finetune-full-s1": _done(method="full", seed=1, score=62.0, stderr=3.0, train_seconds=12.0,
                                    eval_seconds=3.0),
        "B/finetune-full-s0": _done(method="full", seed=0, score=59.5, stderr=1.0, train_seconds=9.0,
                                    eval_seconds=2.0),
        "B/finetune-full-s1": _done(method="full", seed=1, score=61.5, stderr=1.0, train_seconds=9.0,
                                    eval_seconds=2.0),
        "C/finetune-full-s0": _done(method="full", seed=0, score=50.0, train_seconds=5.0),
        "C/finetune-full-s1": _done(method="full", seed=1, score=52.0, train_seconds=5.0),
        "D/prune": {"state": "failed", "result": {"reason": "CUDA out of memory"}},
        "D/finetune-full-s0": {"state": "skipped", "result": {"reason": "needs D/prune, which is failed"}},
    }
    lb = build_leaderboard(run_id="r", mode="damoc", candidates=["D", "C", "B", "A"], methods=["full"],
                           seeds=[0, 1], cells=cells, run_status="finished", metric="squad_f1",
                           prune_skips={"B": "no Base", "C": "no Base"})
    rows = {r.candidate: r for r in lb.rows}
    assert [r.candidate for r in lb.rows] == ["A", "B", "C", "D"]
    assert [rows[c].rank for c in "ABCD"] == [1, 2, 3, None]
    assert rows["A"].score == 61.0 and rows["A"].stderr == 2.0 and rows["A"].seed_spread == 2.0
    assert rows["B"].score == 60.5 and rows["B"].gap == pytest.approx(0.5)
    assert rows["C"].gap == pytest.approx(10.0)
    # B is within the seed-to-seed spread (2.0) of A: too close to call; C is not
    assert rows["A"].too_close and rows["B"].too_close and not rows["C"].too_close
    assert rows["A"].layers == "2/8" and rows["A"].merge == "applied (ties)"
    assert rows["B"].merge == "skipped: no Base"
    assert rows["A"].times == {"prune": 2.0, "finetune": 22.0, "evaluate": 6.0}
    assert rows["D"].status == "failed" and "CUDA out of memory" in rows["D"].reason
    assert lb.shared_times == {"prepare": 1.0, "filter": 4.0, "compress": 6.0}
    assert lb.winner == "A" and lb.train_seconds() == pytest.approx(22 + 18 + 10)
    assert lb.ranking == [{"name": "A", "score": 61.0, "rank": 1}, {"name": "B", "score": 60.5, "rank": 2},
                          {"name": "C", "score": 51.0, "rank": 3}]
    # exports carry the same figures
    d = json.loads(lb.to_json())
    assert d["winner"] == "A" and d["rows"][0]["layers"] == "2/8" and d["too_close_to_call"] is True
    csv_lines = lb.to_csv().strip().splitlines()
    assert csv_lines[0].startswith("rank,candidate,score,stderr,gap")
    assert csv_lines[1].startswith("1,A,61.0000,2.0000,0.0000,full,2/8,applied (ties)")
    assert csv_lines[4].startswith(",D,,,,,,")
    md = lb.to_markdown()
    assert "| 1 | A | 61.0000 ± 2.0000 (too close to call) |" in md and "failed: prune: CUDA out of memory" in md


def test_leaderboard_tolerance_with_one_seed_and_method_choice():
    cells = {
        "A/finetune-full-s0": _done(method="full", score=70.0), "A/finetune-lora-s0": _done(method="lora", score=72.0),
        "B/finetune-full-s0": _done(method="full", score=71.5), "B/finetune-lora-s0": _done(method="lora", score=60.0),
        "C/finetune-full-s0": {"state": "running", "result": {}},
    }
    lb = build_leaderboard(run_id="r", mode="damoc", candidates=["A", "B", "C"], methods=["full", "lora"],
                           seeds=[0], cells=cells, tolerance=1.0, run_status="running")
    rows = {r.candidate: r for r in lb.rows}
    assert rows["A"].method == "lora" and rows["A"].score == 72.0 and rows["B"].method == "full"
    assert rows["B"].gap == pytest.approx(0.5) and rows["B"].too_close        # within tolerance 1.0
    assert lb.method_winners() == {"A": "lora", "B": "full"}
    assert rows["C"].status == "running" and rows["C"].rank is None
    far = build_leaderboard(run_id="r", mode="damoc", candidates=["A", "B"], methods=["full", "lora"], seeds=[0],
                            cells=cells, tolerance=0.4)
    assert not any(r.too_close for r in far.rows)


def test_equal_scores_are_ordered_by_answer_loglik():
    cells = {"A/finetune-full-s0": _done(method="full", score=0.0, secondary={"answer_loglik": -2.0}),
             "B/finetune-full-s0": _done(method="full", score=0.0, secondary={"answer_loglik": -1.0}),
             "C/finetune-full-s0": _done(method="full", score=0.0),
             "D/finetune-full-s0": _done(method="full", score=0.0)}
    lb = build_leaderboard(run_id="r", mode="damoc", candidates=list("ABCD"), methods=["full"], seeds=[0],
                           cells=cells)
    assert [(r.candidate, r.rank) for r in lb.rows] == [("B", 1), ("A", 2), ("C", 3), ("D", 3)]


# -- compare ------------------------------------------------------------------------------------------

def test_rank_correlations_against_hand_computed_values():
    a = {"a": 4.0, "b": 3.0, "c": 2.0, "d": 1.0}
    b = {"a": 3.0, "b": 4.0, "c": 2.0, "d": 1.0, "e": 9.0}
    c = compare_scores(a, b, run_a="dm", run_b="gt", seconds_a=10.0, seconds_b=150.0, train_seconds_a=2.0,
                       train_seconds_b=40.0)
    # 6 pairs, only (a, b) discordant: tau = (5 - 1) / 6; Spearman: d^2 = 1 + 1 -> 1 - 6*2 / (4*15) = 0.8
    assert c.kendall_tau == pytest.approx(4 / 6)
    assert c.spearman_rho == pytest.approx(0.8)
    assert c.top1_a == "a" and c.top1_b == "b" and c.top1_agree is False
    assert c.time_ratio == pytest.approx(15.0) and c.train_time_ratio == pytest.approx(20.0)
    assert c.common == ["a", "b", "c", "d"] and c.only_b == ["e"]
    same = compare_scores(a, a)
    assert same.top1_agree and same.kendall_tau == pytest.approx(1.0) and same.spearman_rho == pytest.approx(1.0)
    assert same.time_ratio is None                         # no time recorded: no ratio, not a division by zero


def test_ties_match_scipy():
    from scipy import stats

    # hand: pairs (0,1) tied in x, (0,2) and (1,2) concordant -> 2 / sqrt((3-1)(3-0))
    assert kendall_tau_b([1, 1, 2], [1, 2, 3]) == pytest.approx(2 / (2 * 3) ** 0.5)
    assert average_ranks([5.0, 7.0, 7.0, 1.0]) == [3.0, 1.5, 1.5, 4.0]
    import random
    rng = random.Random(3)
    for _ in range(20):
        x = [rng.choice([1, 2, 3, 4]) for _ in range(7)]
        y = [rng.choice([1, 2, 3]) for _ in range(7)]
        ref_tau = stats.kendalltau(x, y).statistic
        ref_rho = stats.spearmanr(x, y).statistic
        got_tau, got_rho = kendall_tau_b(x, y), spearman_rho(x, y)
        if ref_tau != ref_tau:                     # NaN: undefined (a constant list)
            assert got_tau is None
        else:
            assert got_tau == pytest.approx(ref_tau)
            assert got_rho == pytest.approx(ref_rho)
    assert kendall_tau_b([1.0], [2.0]) is None and spearman_rho([1, 1], [1, 2]) is None


# -- hand-off -----------------------------------------------------------------------------------------

def test_handoff_uses_the_dataset_path_and_paper_hyperparameters(tmp_path):
    import yaml

    data = tmp_path / "my data.jsonl"
    data.write_text(json.dumps({"instruction": "Summarize", "input": "text", "output": "sum"}) + "\n")
    files = handoff_files(Winner("qwen2.5-7b", "Qwen/Qwen2.5-7B-Instruct", family="qwen"), str(data), run_id="r1")
    lf = yaml.safe_load(files["llamafactory_sft.yaml"])
    assert lf["model_name_or_path"] == "Qwen/Qwen2.5-7B-Instruct" and lf["finetuning_type"] == "full"
    assert lf["learning_rate"] == pytest.approx(1e-5) and lf["num_train_epochs"] == 3.0
    assert lf["per_device_train_batch_size"] * lf["gradient_accumulation_steps"] * 8 == 64
    assert lf["template"] == "qwen" and lf["stage"] == "sft"
    info = json.loads(files["llamafactory_dataset_info.json"])
    entry = info[lf["dataset"]]
    assert entry["file_name"] == str(data.resolve())
    assert entry["columns"] == {"prompt": "instruction", "query": "input", "response": "output"}
    sh = files["swift_sft.sh"]
    assert "--model Qwen/Qwen2.5-7B-Instruct" in sh and "--tuner_type full" in sh
    assert f"--dataset '{data.resolve()}'" in sh and "--learning_rate 1e-05" in sh and "--num_train_epochs 3" in sh
    # a question/answer file maps its own columns; a LoRA winner gets LoRA settings
    qa = tmp_path / "qa.jsonl"
    qa.write_text(json.dumps({"question": "q", "context": "c", "answer": "a"}) + "\n")
    files = handoff_files(Winner("m", "/models/m", method="lora", architecture="llama"), str(qa))
    assert json.loads(files["llamafactory_dataset_info.json"])["damoc_qa"]["columns"] == {
        "prompt": "question", "query": "context", "response": "answer"}
    assert "finetuning_type: lora" in files["llamafactory_sft.yaml"] and "--tuner_type lora" in files["swift_sft.sh"]
    assert "--check_model false" in files["swift_sft.sh"]
    assert '--columns \'{"question": "instruction", "answer": "output", "context": "input"}\'' in files["swift_sft.sh"]


# -- executor -----------------------------------------------------------------------------------------

def test_local_executor_places_one_job_per_gpu(tmp_path, monkeypatch):
    """Two visible GPUs: two jobs run at once, each with its own CUDA_VISIBLE_DEVICES; the third waits for a free
    slot. (Real subprocesses; the 'worker' is a stand-in that records its device and time span.)"""
    import sys

    from damoc.pipeline.executor import LocalExecutor, WorkerJob, visible_gpus

    class Probe(WorkerJob):
        def argv(self, run_dir, python=sys.executable):
            code = ("import os, time, json; t0 = time.time(); time.sleep(1.0); "
                    "print(json.dumps([os.environ.get('CUDA_VISIBLE_DEVICES'), t0, time.time()]))")
            return [python, "-c", code]

    done = []
    ex = LocalExecutor(tmp_path, gpus=["0", "1"], poll=0.05)
    results = ex.run([Probe(f"j{i}", [f"c{i}"]) for i in range(3)], on_done=done.append)
    assert [r.returncode for r in results] == [0, 0, 0] and len(done) == 3
    spans = {r.job.name: json.loads(Path(r.log).read_text().strip().splitlines()[-1]) for r in results}
    assert {spans["j0"][0], spans["j1"][0]} == {"0", "1"}            # one job per GPU
    assert spans["j0"][1] < spans["j1"][2] and spans["j1"][1] < spans["j0"][2]   # j0 and j1 overlapped
    assert spans["j2"][1] >= min(spans["j0"][2], spans["j1"][2]) - 0.05        # j2 waited for a free GPU
    # CPU only: one at a time, no device set
    seq = LocalExecutor(tmp_path / "cpu", gpus=[], poll=0.05).run([Probe("a", ["a"]), Probe("b", ["b"])])
    sa, sb = (json.loads(Path(r.log).read_text().strip().splitlines()[-1]) for r in seq)
    assert sa[0] is None and sb[1] >= sa[2] - 0.05
    # device discovery never imports torch
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,3")
    assert visible_gpus("auto") == ["2", "3"] and visible_gpus("auto", device="cpu") == []
    assert visible_gpus("0,1") == ["0", "1"] and visible_gpus("none") == []
    assert visible_gpus("auto", device="cuda:1") == []
