"""Whole runs on the test zoo, in real driver and worker subprocesses: DaMoC and ground truth end to end, one
candidate failing on purpose, cancel / kill / resume without redoing finished cells, and the CLI contract.

Step counts are tiny (`FAST`): these tests check orchestration and bookkeeping, not ranking quality (that is the
benchmark's job, bench/bench_selection.py).
"""
from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest

from damoc.events import CandidateScored, RunFinished, RunStarted, StageStarted
from tests.helpers.cache import cache_dir
from tests.helpers.cli import damoc
from tests.helpers.runs import FAST, run_config as _config, wait_run as _wait, wait_for as _wait_for


def _broken_candidate(env, tmp_path) -> Path:
    """A copy of a zoo Chat model whose weights file is garbage: loading it fails inside the worker."""
    src = Path(env["no_base"].chat_path)
    dst = tmp_path / "broken-model"
    shutil.copytree(src, dst)
    for w in dst.glob("*.safetensors"):
        w.write_bytes(b"not a safetensors file")
    return dst


def test_damoc_then_ground_truth_end_to_end(zoo_env, tmp_path):
    from damoc.pipeline import api
    from damoc.pipeline.compare import kendall_tau_b

    s = zoo_env["settings"]
    broken = _broken_candidate(zoo_env, tmp_path)
    names = zoo_env["names"]
    cfg = _config(zoo_env, names=names + [str(broken)])
    h = api.start_run(s, cfg)
    assert _wait(s, h.run_id) == "finished"
    rd = api.open_run(s, h.run_id)
    lb = api.leaderboard(rd)
    rows = {r.candidate: r for r in lb.rows}
    # the three zoo candidates are scored and ranked; the broken one failed with its reason, the others went on
    assert sorted(r["name"] for r in lb.ranking) == sorted(names)
    ranks = [r["rank"] for r in lb.ranking]
    assert ranks[0] == 1 and ranks == sorted(ranks)
    assert rows["broken-model"].status == "failed" and rows["broken-model"].reason
    assert (rd.cell("broken-model", "finetune-full-s0").path / "error.log").is_file()
    for n in names:
        assert rows[n].status == "done" and rows[n].times["finetune"] > 0 and rows[n].times["evaluate"] > 0
    # the data stages ran once, shared: GraphCut kept a quarter, compression shortened the samples
    filt = rd.cell("_data", "filter").result()
    comp = rd.cell("_data", "compress").result()
    assert filt["n_out"] == 16 and filt["n_in"] == 64
    assert comp["n_out"] == 16 and comp["tokens_out"] < comp["tokens_in"]
    # recipe: the candidate without a Base was not pruned, with the reason shown; the others went through prune
    assert rows[zoo_env["no_base"].name].merge.startswith("skipped:")
    assert rd.cell(zoo_env["deep"].name, "prune").done
    assert rows[zoo_env["deep"].name].layers_before == zoo_env["deep"].layers
    # events: one run_started, one run_finished, a score per zoo candidate; cell markers agree with the rows
    evs = rd.events()
    assert sum(isinstance(e, RunStarted) for e in evs) == 1 and isinstance(evs[-1], RunFinished)
    scored = {e.candidate: e.score for e in evs if isinstance(e, CandidateScored)}
    assert scored == {n: rows[n].score for n in names}
    assert (rd.path / "leaderboard.json").is_file() and (rd.path / "leaderboard.md").is_file()
    assert json.loads((rd.path / "leaderboard.json").read_text())["winner"] == lb.winner
    hand = rd.path / "handoff"
    assert lb.winner in (hand / "llamafactory_sft.yaml").read_text()
    assert zoo_env["task"].train_path in (hand / "llamafactory_dataset_info.json").read_text()

    # ground truth over the same candidates, then compare the two runs
    g = api.start_run(s, _config(zoo_env, mode="ground-truth"))
    assert _wait(s, g.run_id) == "finished"
    glb = api.leaderboard(api.open_run(s, g.run_id))
    assert all(r.status == "done" and r.layers_before is None for r in glb.rows)   # no pruning in ground truth
    c = api.compare_runs(s, h.run_id, g.run_id)
    da = {r["name"]: -r["rank"] for r in lb.ranking}          # tau over the leaderboards' rank positions
    gb = {r["name"]: -r["rank"] for r in glb.ranking}
    assert c.common == sorted(names) and c.only_a == [] and c.only_b == []
    assert c.kendall_tau == pytest.approx(kendall_tau_b([da[n] for n in sorted(names)], [gb[n] for n in sorted(names)]))
    assert c.top1_agree == (lb.winner == glb.winner)
    assert c.time_ratio == pytest.approx(c.seconds_b / c.seconds_a) and c.seconds_a > 0
    # ground truth trains on four times the data the proxies saw
    assert glb.rows[0].times["finetune"] > 0
    # the compute estimate: 6 x parameters (after pruning) x tokens actually fed, summed into the leaderboard
    cell = rd.cell(zoo_env["deep"].name, "finetune-full-s0").result()
    assert cell["tokens_seen"] > 0
    assert cell["train_flops"] == pytest.approx(6.0 * cell["parameters"] * cell["tokens_seen"])
    assert rows[zoo_env["deep"].name].train_flops == pytest.approx(cell["train_flops"])
    assert glb.train_flops() > lb.train_flops() > 0
    assert {r.candidate: r.steps for r in glb.rows}[names[0]] > rows[names[0]].steps


def test_cancel_kill_and_resume_never_redo_finished_cells(zoo_env):
    """One run through four sessions: cancel (SIGTERM) -> resume -> a worker dies (kill -9: only its cell fails,
    the driver serves the rest with a new worker) -> the whole process group is killed (interrupted) -> resume to
    the end. Finished cells are never redone."""
    from damoc.events import StageFinished
    from damoc.pipeline import api

    s = zoo_env["settings"]
    cfg = _config(zoo_env, "seeds=[0, 1]", "filter.enabled=false", "compress.enabled=false", "prune.enabled=false")
    h = api.start_run(s, cfg)
    rd = api.open_run(s, h.run_id)
    fts = [rd.cell(n, f"finetune-full-s{i}") for n in zoo_env["names"] for i in (0, 1)]
    ever_done: dict[str, int] = {}

    def snapshot() -> None:
        for c in fts:
            if c.done:
                ever_done.setdefault(c.key, c.marker.stat().st_mtime_ns)

    # 1) cancel: the running cell is marked cancelled, the run ends cancelled
    _wait_for(lambda: sum(c.done for c in fts) >= 1)
    api.cancel_run(s, h.run_id)
    assert _wait(s, h.run_id) == "cancelled"
    snapshot()
    prepare_mtime = rd.cell("_data", "prepare").marker.stat().st_mtime_ns
    # 2) resume; kill -9 the worker in the middle of a cell: that cell fails, the others go on
    api.resume_run(s, h.run_id)
    _wait_for(lambda: any(c.running_marker.is_file() and c.key not in ever_done for c in fts))
    victim = next(c for c in fts if c.running_marker.is_file() and c.key not in ever_done)
    os.kill(json.loads(victim.running_marker.read_text())["pid"], signal.SIGKILL)
    _wait_for(lambda: victim.state == "failed", timeout=60)
    assert "worker process died" in victim.failure()["reason"]
    # 3) then kill -9 the whole process group (a killed terminal session, an OOM kill of everything)
    _wait_for(lambda: sum(c.done for c in fts) > len(ever_done) or not rd.is_alive())
    snapshot()
    assert rd.is_alive() and not all(c.done for c in fts)
    os.killpg(int(rd.meta["pid"]), signal.SIGKILL)
    _wait_for(lambda: not rd.is_alive(), timeout=30)
    assert rd.status() == "interrupted"
    snapshot()
    # 4) resume to the end: every cell done, including the one whose worker died
    api.resume_run(s, h.run_id)
    assert _wait(s, h.run_id) == "finished"
    assert all(c.done for c in fts)
    for key, mtime in ever_done.items():
        assert rd.cell(*key.split("/", 1)).marker.stat().st_mtime_ns == mtime, f"{key} was redone"
    assert rd.cell("_data", "prepare").marker.stat().st_mtime_ns == prepare_mtime
    evs = rd.events()
    starts = [i for i, e in enumerate(evs) if isinstance(e, RunStarted)]
    assert [evs[i].resumed for i in starts] == [False, True, True]
    # never started again once it finished (with two workers one cancel stops two cells: both rightly start again)
    for key in ever_done:
        done_at = next(i for i, e in enumerate(evs) if isinstance(e, StageFinished) and e.cell == key
                       and e.status == "ok")
        assert not any(isinstance(e, StageStarted) and e.cell == key for e in evs[done_at + 1:]), f"{key} was redone"
    assert any(isinstance(e, StageFinished) and e.cell == victim.key and e.status == "failed" for e in evs)
    lb = api.leaderboard(rd)
    assert len(lb.ranking) == 3 and all(r.status == "done" and r.seed_spread is not None for r in lb.rows)


def test_cli_contract(zoo_env, isolated_home):
    task, names = zoo_env["task"], zoo_env["names"][:2]
    common = ["--dataset", task.train_path, "--test", task.test_path, "--candidates", ",".join(names)]
    sets = [a for kv in FAST + ["compress.enabled=false"] for a in ("--set", kv)]
    dry = damoc("run", *common, "--dry-run", "--json", *sets)
    assert dry.returncode == 0, dry.stderr
    plan = json.loads(dry.stdout)
    assert [c["stage"] for c in plan["cells"] if c["candidate"] == "_data"] == ["prepare", "filter"]
    assert plan["preflight"] is not None
    human = damoc("run", *common, "--dry-run", *sets, "--set", "filter.method=superfiltering")
    assert human.returncode == 0, human.stderr
    assert "filter superfiltering: scorer " in human.stdout.replace("\n", " ")
    bad = damoc("run", *common, "--set", "filter.ratoi=0.1")
    assert bad.returncode == 2 and "did you mean ratio" in bad.stderr
    unknown = damoc("run", *common[:4], "--candidates", "nosuch-model")
    assert unknown.returncode == 2 and "nosuch-model" in unknown.stderr

    r = damoc("run", *common, "--mode", "zero-shot", "--json", *sets)
    assert r.returncode == 0, r.stderr[-2000:]
    out = json.loads(r.stdout)
    assert out["mode"] == "zero-shot" and out["seconds"] > 0 and out["run_id"]
    assert sorted(x["name"] for x in out["ranking"]) == sorted(names)
    assert out["ranking"][0]["rank"] == 1 and all("score" in x for x in out["ranking"])
    assert "scored" in r.stderr                 # live progress went to stderr

    r2 = damoc("run", *common, "--mode", "few-shot", "--detach", "--json", *sets)
    assert r2.returncode == 0, r2.stderr
    rid = json.loads(r2.stdout)["run_id"]
    att = damoc("attach", rid, "--json")
    assert att.returncode == 0, att.stderr[-2000:]
    assert json.loads(att.stdout)["run_id"] == rid

    cmp = damoc("compare", out["run_id"], rid, "--json")
    assert cmp.returncode == 0, cmp.stderr
    c = json.loads(cmp.stdout)
    assert {"top1_agree", "kendall_tau", "spearman_rho", "time_ratio"} <= set(c)
    # two candidates: full agreement or reversal
    assert c["kendall_tau"] in (-1.0, 1.0, None)              # None: both shared one rank
    assert c["top1_agree"] == (c["ranking_a"][0] == c["ranking_b"][0])
    # closing the terminal (SIGHUP to the CLI that started and follows the run) does not stop the run
    from damoc.pipeline import api
    s = zoo_env["settings"]
    before = {r.run_id for r in api.list_runs(s)}
    # a DaMoC run (filter, fine-tunes): long enough that the CLI is still following it when the signal comes (a
    # zero-shot run of two tiny models could finish first under a light load)
    # SIGHUP at its default action, as in a terminal (a suite started under nohup would hand down SIG_IGN)
    cli = subprocess.Popen([sys.executable, "-m", "damoc", "run", *common, *sets],
                           stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, env=os.environ.copy(),
                           preexec_fn=lambda: signal.signal(signal.SIGHUP, signal.SIG_DFL))
    _wait_for(lambda: {r.run_id for r in api.list_runs(s)} - before, timeout=120, poll=0.05)
    hup_id = ({r.run_id for r in api.list_runs(s)} - before).pop()
    assert cli.poll() is None, "the run finished before the test could close its terminal"
    cli.send_signal(signal.SIGHUP)
    assert cli.wait(timeout=30) != 0                      # the CLI is gone ...
    assert _wait(s, hup_id) == "finished"                 # ... the run went on to the end
    lst = damoc("runs", "--json")
    runs = {x["run_id"]: x for x in json.loads(lst.stdout)}
    assert runs[rid]["mode"] == "few-shot" and runs[out["run_id"]]["status"] == "finished"


def test_demo_verify_json_contract(zoo_env, isolated_home):
    """`damoc demo --verify --json` on the test zoo (two candidates, tiny steps): the keys the selection check reads,
    and figures that agree with each other."""
    isolated_home.mkdir(parents=True, exist_ok=True)
    (isolated_home / "zoo").symlink_to(cache_dir() / "zoo")       # the cached test zoo, not a rebuild
    names = zoo_env["names"][:2]
    sets = [a for kv in ["dataset.max_test=8", "dataset.max_train=48", "evaluate.max_new_tokens=6",
                         "compress.enabled=false"] for a in ("--set", kv)]
    r = damoc("demo", "--size", "test", "--verify", "--json", "--no-diagnose", "--candidates", ",".join(names),
               *sets)
    assert r.returncode == 0, r.stderr[-3000:]
    d = json.loads(r.stdout)
    for k in ("task", "damoc_ranking", "ground_truth_ranking", "top1_agree", "kendall_tau", "damoc_seconds",
              "ground_truth_seconds", "speedup", "train_speedup"):
        assert k in d, k
    assert d["speedup"] == pytest.approx(d["ground_truth_seconds"] / d["damoc_seconds"])
    top = lambda rk: rk[0]["name"]  # noqa: E731
    assert d["top1_agree"] == (top(d["damoc_ranking"]) == top(d["ground_truth_ranking"]))
    assert sorted(x["name"] for x in d["damoc_ranking"]) == sorted(names)
    assert d["train_speedup"] is not None and d["train_speedup"] > 0
    # the ground truth trains on all 48 samples, the proxies on GraphCut's 10%: more compute, by the 6·N·D estimate
    assert d["train_flops_ratio"] is not None and d["train_flops_ratio"] > 1
    # the proxies trained on a fifth of the data: fewer optimizer steps than the ground truth, for every candidate
    from damoc.pipeline import api
    s = zoo_env["settings"]
    dm = {r.candidate: r.steps for r in api.leaderboard(api.open_run(s, d["runs"]["damoc"])).rows}
    gt = {r.candidate: r.steps for r in api.leaderboard(api.open_run(s, d["runs"]["ground_truth"])).rows}
    assert all(gt[n] > dm[n] for n in names), (dm, gt)


def test_filter_stage_runs_an_lm_based_method_with_the_plans_scorer(zoo_env, tmp_path):
    """The shared filter stage hands the plan's scorer (default: the smallest candidate) to LM-based methods."""
    from damoc.data import load_samples
    from damoc.events import NullReporter
    from damoc.pipeline.plan import make_plan
    from damoc.pipeline.cells.data import run_filter
    from damoc.pipeline.cells.samples import TRAIN_FILE, read_samples_jsonl

    s = zoo_env["settings"]
    plan = make_plan(s, _config(zoo_env, "filter.method=superfiltering"), with_preflight=False)
    cell = next(c for c in plan.cells if c.stage == "filter")
    smallest = min((c for c in zoo_env["zoo"] if c.name in zoo_env["names"]), key=lambda c: c.parameters)
    assert Path(cell.params["scorer_path"]) == Path(smallest.chat_path).resolve()
    samples = load_samples(zoo_env["task"].train_path).samples[:40]
    res = run_filter(cell.params, samples, tmp_path, NullReporter(), s)
    assert res["method"] == "superfiltering" and res["n_out"] == 10
    kept = read_samples_jsonl(tmp_path / TRAIN_FILE)
    assert len(kept) == 10 and {k.id for k in kept} <= {x.id for x in samples}


def test_a_signal_while_a_run_starts_waits_until_its_driver_is_recorded(zoo_env, monkeypatch):
    """A terminal closed (or Ctrl-C) between the run directory's creation and the driver's spawn used to leave a run
    "created" for ever (the CI rehearsal hit it under load). start_run now defers the signal until the driver's pid
    is recorded, and the run goes on to the end."""
    from damoc.pipeline import api

    s = zoo_env["settings"]
    cfg = _config(zoo_env, "compress.enabled=false", "prune.enabled=false", names=zoo_env["names"][:1],
                  mode="zero-shot")
    made, seen = [], []
    real_spawn = api._spawn_driver

    def spawn_after_a_signal(settings, rd, *, resume):
        made.append(rd)
        os.kill(os.getpid(), signal.SIGTERM)               # arrives inside the window
        seen.append("sent")
        return real_spawn(settings, rd, resume=resume)

    def on_term(signum, frame):
        seen.append(("delivered, driver pid recorded", bool(api.open_run(s, made[0].run_id).meta.get("pid"))))

    monkeypatch.setattr(api, "_spawn_driver", spawn_after_a_signal)
    old = signal.signal(signal.SIGTERM, on_term)
    try:
        h = api.start_run(s, cfg)
    finally:
        signal.signal(signal.SIGTERM, old)
    assert seen == ["sent", ("delivered, driver pid recorded", True)]
    assert _wait(s, h.run_id) == "finished"
